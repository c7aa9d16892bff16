"""``direct`` (Frobenius / ridge) estimator with linear attention: closed form (THEORY.md T12).

Re-derivation (T7–T9, T13). Square loss ℓ = ‖H − Y‖²_F and linear σ: the output prox is
Ĥ = (Ω + 2V·Y)/(1 + 2V), f = 2(Y − Ω)/(1 + 2V). Over the K_T = T(T+1)/2 Frobenius coordinates,
V̂ = −2α E div_Ω f = 2ᾱ/(1+2V), M̂ = 2α E div_{H*} f = 2ᾱ/(1+2V), and, since
E‖Y − Ω‖²_F = T(T+1)(mse + Δ/2) (T1), Q̂ = α E‖f‖² = 4ᾱ(mse + Δ/2)/(1+2V)², ᾱ = αT(T+1).
The ridge prior (T13) V = 1/(2λ + V̂) with ν = 2V gives λν² + (λ + ᾱ − 1)ν − 1 = 0 (positive root),
M = Q0 M̂V = Q0 a, a = ᾱν/(1+ν); Q = Q0 a² + b (mse + Δ/2), b = ᾱν²/(1+ν)², so
mse = Q0 − 2M + Q = [Q0(1 − a)² + bΔ/2]/(1 − b).
Train: Ĥ − Y = (Ω − Y)/(1+ν) ⇒ train = test/(1+ν)². Objective L/d² = α·train + λQ (λd‖Ŝ‖²_F/d²).
τ̂ = Tr Ŝ/d = τ0 M̂ V = √κ0 · a.

λ = 0: for ᾱ > 1, ν = 1/(ᾱ − 1) (OLS, mse = (Δ/2)/(ᾱ − 1) + 0·Q0); for ᾱ < 1 the λ → 0⁺ limit
(minimum-norm interpolator): ν → ∞, a = b = ᾱ, mse = [Q0(1−ᾱ)² + ᾱΔ/2]/(1−ᾱ), train = 0,
V = ∞; ᾱ = 1 exactly diverges (flagged).
"""

from __future__ import annotations

import math
import time

from ..config import Config
from ..states import PretrainState

__all__ = ["solve_linear", "ridge_nu"]


def ridge_nu(alpha_bar: float, lam: float) -> float:
    """ν = 2V: the positive root of λν² + (λ + ᾱ − 1)ν − 1 = 0 (T12); ∞ for λ = 0, ᾱ ≤ 1."""
    B = lam + alpha_bar - 1.0
    if B > 0:
        return 2.0 / (B + math.sqrt(B * B + 4.0 * lam))  # cancellation-free form
    if lam == 0.0:
        return math.inf
    return (-B + math.sqrt(B * B + 4.0 * lam)) / (2.0 * lam)


def solve_linear(cfg: Config) -> PretrainState:
    """Closed-form pre-training fixed point for ``direct`` + linear attention (T12)."""
    start = time.perf_counter()
    if cfg.model.attention != "linear" or cfg.pretrain.estimator != "direct":
        raise ValueError("direct.solve_linear needs model.attention = 'linear' and "
                         "pretrain.estimator = 'direct'")
    T = cfg.model.T
    pt = cfg.pretrain
    K = T * (T + 1)
    ab = pt.alpha * K
    lam, Delta = pt.lam, pt.delta
    Q0 = 1.0 + pt.kappa0
    tau0 = math.sqrt(pt.kappa0)
    nu = ridge_nu(ab, lam)
    flags = []
    if math.isinf(nu):
        a = b = ab
        shrink = 0.0  # 1/(1+ν)
    else:
        a = ab * nu / (1.0 + nu)
        b = ab * (nu / (1.0 + nu)) ** 2      # (ν/(1+ν))²: no overflow of ν² at λ → 0
        shrink = 1.0 / (1.0 + nu)
    if b >= 1.0:
        mse = math.inf
        flags.append(f"interpolation peak: alpha_bar = alpha*T(T+1) = {ab:g} = 1 at lam = 0 "
                     f"(mse diverges)")
    else:
        mse = (Q0 * (1.0 - a) ** 2 + b * Delta / 2.0) / (1.0 - b)
    M = Q0 * a
    Q = mse - Q0 + 2.0 * M
    test = K * (mse + Delta / 2.0)
    clean = K * mse
    train = test * shrink ** 2 if math.isfinite(test) else math.nan
    objective = pt.alpha * train + lam * Q
    V = nu / 2.0
    Mhat = Vhat = 2.0 * ab * shrink
    Qhat = 4.0 * ab * (mse + Delta / 2.0) * shrink ** 2
    metrics = {"test_error": test, "test_error_clean": clean, "train_error": train,
               "objective": objective, "Q": Q, "M": M, "Q0": Q0, "mse": mse}
    return PretrainState(
        Q=Q, M=M, Q0=Q0, V=V, Qhat=Qhat, Mhat=Mhat, Vhat=Vhat, tau_hat=tau0 * a, rank_fraction=1.0,
        metrics=metrics, mc_err={k: 0.0 for k in metrics},
        solver={"method": "closed_form_T12", "converged": math.isfinite(mse), "iterations": 0,
                "residual": 0.0, "seconds": time.perf_counter() - start, "branch": "unique",
                "nu": nu, "alpha_bar": ab},
        flags=tuple(flags))
