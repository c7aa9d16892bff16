"""``factorized`` estimator (nuclear norm on PSD Ŝ) with linear attention: two scalars (THEORY.md T18).

Re-derivation. The square-loss linear channel gives (see :mod:`direct`) M̂ = V̂ = 2ᾱ/(1+2V),
Q̂ = 4ᾱ(mse + Δ/2)/(1+2V)², ᾱ = αT(T+1). In the nuclear prior (T14, T17) this makes
η = M̂/V̂ = 1, δ² = Q̂/M̂² = (mse + Δ/2)/ᾱ and ε = λ√κ/M̂ = λ√κ(1+2V)/(2ᾱ). The prior's
V = χ/V̂ = χ(1+2V)/(2ᾱ) solves to V = χ/(2(ᾱ − χ)), hence 1 + 2V = ᾱ/(ᾱ − χ) and
    ε (ᾱ − χ(δ, ε)) = λ√κ/2,   δ² = (mse + Δ/2)/ᾱ,   Q = J, M = J + εF1 − δ²χ, mse = Q0 − 2M + Q.
Train: Ĥ − Y = (Ω − Y)/(1+2V) ⇒ train = T(T+1)(mse + Δ/2)(1 − χ/ᾱ)².
Objective L/d² = α·train + λ‖W‖²_F/d² = α·train + λ√κ τ̂, τ̂ = F1; rank fraction F0.

Solver: for a given δ the left side of the ε-equation is negative on [0, ε*] (χ ≥ ᾱ there, if
anywhere) and increasing beyond (χ decreases in ε), so it has one root, bracketed by brentq in
[0, max(r, λ√κ/ᾱ)] (r = right edge of μ_δ, where χ = 0). The outer map δ² ↦ (mse + Δ/2)/ᾱ is
iterated with :func:`theory.fixed_point.damped_fixed_point`.

λ → 0⁺ (λ = 0 in the config): ε = 0 while χ(δ, 0) < ᾱ; otherwise the minimum-nuclear-norm
interpolator, χ(δ, ε) = ᾱ (ε from a bracket), V = ∞, train = 0 and the δ² equation becomes
Q0 + Δ/2 = J + 2εF1 − δ²χ. On that branch the direct map δ² ↦ (mse + Δ/2)/ᾱ has slope ≥ 2
(unstable), so the damped driver iterates the Newton map of R(δ²) = (mse + Δ/2)/ᾱ − δ²
(same fixed point; see :meth:`LinearFactorized.step`).

Rank cap: when κ < F0 the hard cut of :func:`theory.pretraining.priors.nuclear_prior` is applied
(flagged [conj]).
"""

from __future__ import annotations

import math
import time

import numpy as np
from scipy.optimize import brentq

from .. import freeprob
from ..config import Config
from ..fixed_point import damped_fixed_point
from ..states import PretrainState

__all__ = ["solve_linear", "LinearFactorized"]


class LinearFactorized:
    """The two-scalar problem of T18 at fixed (ᾱ, λ√κ, κ, κ0, Δ); methods are pure."""

    def __init__(self, *, alpha_bar: float, lam_eff: float, kappa: float, kappa0: float,
                 Delta: float, nodes: int = 600):
        self.ab, self.lam_eff, self.kappa, self.kappa0 = alpha_bar, lam_eff, kappa, kappa0
        self.Delta, self.nodes = Delta, nodes
        self.Q0 = 1.0 + kappa0

    def funcs(self, delta: float, eps: float) -> freeprob.SpectralFunctionals:
        """T16 functionals, with the rank-cap hard cut when κ < F0."""
        f = freeprob.spectral_functionals(delta, eps, self.kappa0, nodes=self.nodes)
        if self.kappa < f.F0:
            cut = freeprob.upper_quantile(self.kappa, delta, self.kappa0, nodes=self.nodes)
            f = freeprob.spectral_functionals(delta, eps, self.kappa0, nodes=self.nodes, cut=cut)
        return f

    def eps_of_delta(self, delta: float) -> float:
        """Root ε ≥ 0 of ε(ᾱ − χ(δ, ε)) = λ√κ/2 (λ > 0) or the λ → 0⁺ rule (λ = 0)."""
        ab = self.ab
        r = freeprob.support(delta, self.kappa0).bulks[-1][1]
        if self.lam_eff == 0.0:
            if self.funcs(delta, 0.0).chi < ab:
                return 0.0
            return brentq(lambda e: self.funcs(delta, e).chi - ab, 0.0, r, xtol=1e-14, rtol=1e-12)
        target = self.lam_eff / 2.0
        g = lambda e: e * (ab - self.funcs(delta, e).chi) - target
        hi = 1.01 * max(r, self.lam_eff / ab) + 1e-12
        return brentq(g, 0.0, hi, xtol=1e-14, rtol=1e-12)

    def evaluate(self, delta2: float) -> dict:
        """All T18 quantities at a given δ² (ε solved)."""
        delta = math.sqrt(max(delta2, 0.0))
        eps = self.eps_of_delta(delta)
        f = self.funcs(delta, eps)
        M = f.J + eps * f.F1 - delta2 * f.chi
        mse = self.Q0 - 2.0 * M + f.J
        interp = self.lam_eff == 0.0 and f.chi >= self.ab * (1 - 1e-9)
        return dict(delta=delta, delta2=delta2, eps=eps, f=f, M=M, Q=f.J, mse=mse, interp=interp)

    def residual(self, delta2: float) -> float:
        """R(δ²) = (mse + Δ/2)/ᾱ − δ² (T18); its root is the fixed point."""
        return (self.evaluate(delta2)["mse"] + self.Delta / 2.0) / self.ab - delta2

    def step(self, x: np.ndarray) -> np.ndarray:
        """Newton map δ² ↦ δ² − R/R′ (R′ by a central difference), for the damped driver.

        The plain map δ² ↦ (mse + Δ/2)/ᾱ has slope → 1 at the interpolation point and ≥ 2 on the
        λ = 0 interpolating branch, so it is slow or unstable there; the Newton map has the same
        fixed point and converges in ~20 damped steps everywhere. It falls back to the plain map
        if R′ is not negative-definite enough to be trusted.
        """
        x0 = float(x[0])
        r0 = self.residual(x0)
        h = 1e-6 * max(x0, 1e-8)
        dr = (self.residual(x0 + h) - self.residual(max(x0 - h, 0.0))) / (x0 + h - max(x0 - h, 0.0))
        if np.isfinite(dr) and dr < -1e-3:
            new = x0 - r0 / dr
        else:
            new = x0 + r0
        return np.array([max(new, 0.5 * x0)])


def solve_linear(cfg: Config, *, delta2_init: float | None = None) -> PretrainState:
    """Pre-training fixed point for ``factorized`` + linear attention (T18)."""
    start = time.perf_counter()
    if cfg.model.attention != "linear" or cfg.pretrain.estimator != "factorized":
        raise ValueError("factorized.solve_linear needs model.attention = 'linear' and "
                         "pretrain.estimator = 'factorized'")
    T, pt, th = cfg.model.T, cfg.pretrain, cfg.theory
    K = T * (T + 1)
    ab = pt.alpha * K
    prob = LinearFactorized(alpha_bar=ab, lam_eff=pt.lam * math.sqrt(pt.kappa), kappa=pt.kappa,
                            kappa0=pt.kappa0, Delta=pt.delta, nodes=th.spectral_nodes)
    Q0, Delta = prob.Q0, pt.delta
    x0 = (Q0 + Delta / 2.0) / ab if delta2_init is None else delta2_init  # Ŝ = 0 start
    sol = damped_fixed_point(prob.step, np.array([x0]), damping=th.damping, tol=th.tol,
                             max_iter=th.max_iter)
    e = prob.evaluate(float(sol.value[0]))
    f, eps, d2 = e["f"], e["eps"], e["delta2"]
    mse, M, Q = e["mse"], e["M"], e["Q"]
    chi = f.chi
    flags = []
    if not sol.converged:
        flags.append(f"factorized T18 fixed point not converged ({sol.result}, "
                     f"residual {sol.residual:.3g} after {sol.iterations} iterations)")
    capped = pt.kappa < 1.0 and f.cut > eps
    if capped:
        flags.append(f"rank cap active (kappa = {pt.kappa:g} < F0): hard cut [conj]")
    if e["interp"]:
        V = math.inf
        train = 0.0
        Mhat = Vhat = Qhat = 0.0
    else:
        V = chi / (2.0 * (ab - chi))
        train = K * (mse + Delta / 2.0) * (1.0 - chi / ab) ** 2
        Mhat = Vhat = 2.0 * (ab - chi)
        Qhat = d2 * Mhat * Mhat
    objective = pt.alpha * train + pt.lam * math.sqrt(pt.kappa) * f.F1
    metrics = {"test_error": K * (mse + Delta / 2.0), "test_error_clean": K * mse,
               "train_error": train, "objective": objective, "Q": Q, "M": M, "Q0": Q0, "mse": mse}
    solver = sol.stats()
    solver.update({"method": "two_scalar_T18", "branch": "interpolating" if e["interp"] else "regular",
                   "delta2": d2, "eps": eps, "chi": chi, "J": f.J, "F1": f.F1, "F0": f.F0,
                   "alpha_bar": ab, "seconds": time.perf_counter() - start})
    return PretrainState(Q=Q, M=M, Q0=Q0, V=V, Qhat=Qhat, Mhat=Mhat, Vhat=Vhat, tau_hat=f.F1,
                         rank_fraction=f.F0, metrics=metrics, mc_err={k: 0.0 for k in metrics},
                         solver=solver, flags=tuple(flags))
