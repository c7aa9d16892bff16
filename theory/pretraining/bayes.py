"""Bayes-optimal pre-training: state evolution (THEORY.md T21–T23).

Channel reduction (T21): the labels are equivalent to observing the Frobenius coordinates of
H* + ξ with isotropic noise of variance Δ per coordinate, on all K_T coordinates (linear σ) or on the
K_T − 1 orthogonal to 11ᵀ (softmax: row shifts are invisible); β drops out.

State evolution (T22), Nishimori M = Q = q, V = Q0 − q. In Frobenius coordinates θ = √d s the
problem is a Gaussian linear model with n K_T (or n(K_T − 1)) scalar observations for D = d²/2
parameters, i.e. α n_σ per parameter with n_σ = T(T+1) (linear) or T² + T − 2 (softmax). The
effective denoising problem is Y = S0* + √s Z with
    s = 1/Q̂_BO = (Q0 − q + Δ/2)/(α n_σ),    q = Q0 − mmse_S(s)     (T22–T23),
iterated with :func:`theory.fixed_point.damped_fixed_point` from the uninformative point q = κ0
(the posterior mean at α = 0 is √κ0·I, so q = κ0 and mse = Q0 − κ0 = 1 for every κ0).

Outputs: mse = Q0 − q; test error of the plug-in posterior mean E‖σ(Ω) − σ(Ω + G_V + ξ)‖²_F with
Ω ~ GOE_T(q), G_V ~ GOE_T(Q0 − q), ξ ~ GOE_T(Δ/2) (linear: T(T+1)(Q0 − q + Δ/2), clean without
Δ/2); train error [RS] with training scores Ω + k(G_V + ξ), k = V/(V + Δ/2) (the projection P_⊥
is invisible to softmax): linear T(T+1)(Δ/2)²/(Q0 − q + Δ/2). Softmax expectations are Monte Carlo
with frozen jax.random draws (key = cfg.theory.seed, cfg.theory.mc_samples samples); their standard
error is reported in ``mc_err``. ``objective`` is NaN (no objective for the posterior mean).
"""

from __future__ import annotations

import math
import time

import jax
import jax.numpy as jnp
import numpy as np

from .. import freeprob
from ..config import Config
from ..fixed_point import damped_fixed_point
from ..gaussian import goe, seed_key
from ..states import PretrainState

__all__ = ["solve", "n_sigma", "alpha_perfect_recovery", "state_evolution"]


def n_sigma(cfg: Config) -> int:
    """Informative coordinates ×2 per sequence (T22): T(T+1) linear, T² + T − 2 softmax."""
    T = cfg.model.T
    return T * (T + 1) if cfg.model.attention == "linear" else T * T + T - 2


def alpha_perfect_recovery(cfg: Config) -> float:
    """Noiseless perfect-recovery threshold α_PR (T23).

    Linear stability of q = Q0 in the SE with Δ = 0: s_new = mmse_S(s)/(α n_σ) and
    mmse_S(s) = c s + o(s), c = 1 − (1 − κ0)² = 2κ0 − κ0² for κ0 < 1 (the null–null block of the
    atom at 0 is denoised away), c = 1 for κ0 ≥ 1. So α_PR = c/n_σ (parameter counting:
    a rank-κ0 d symmetric matrix has (2κ0 − κ0²)d²/2 degrees of freedom).
    """
    k0 = cfg.pretrain.kappa0
    c = 2.0 * k0 - k0 * k0 if k0 < 1.0 else 1.0
    return c / n_sigma(cfg)


def state_evolution(*, alpha_n: float, kappa0: float, Delta: float, tol: float = 1e-10,
                    damping: float = 0.0, max_iter: int = 2000, nodes: int = 600,
                    q_init: float | None = None, newton: bool = True):
    """Iterate T22–T23 for q at a given α n_σ; returns (q, s, FixedPointSolution).

    The plain SE map q ↦ Q0 − mmse_S(s(q)) is monotone, so from the uninformative start it
    decreases s to the largest fixed point, but it slows down critically near α_PR (Δ = 0).
    With ``newton`` the step is the Newton step on F(s) = α n_σ s − mmse_S(s) − Δ/2 (same fixed
    points; mmse′ by a central difference), accepted only if it goes at least as far as the plain step in the same direction; if it
    overshoots (F changes sign) it is replaced by one regula-falsi step on the bracket
    [plain step, Newton step], which holds exactly the root the plain map would converge to.
    Otherwise the plain step is taken.
    """
    Q0 = 1.0 + kappa0

    def s_of(q):
        return max(Q0 - q + Delta / 2.0, 0.0) / alpha_n

    mmse = lambda s: freeprob.mmse_S(s, kappa0, nodes=nodes)
    F = lambda s: alpha_n * s - mmse(s) - Delta / 2.0

    def step(x):
        q = min(float(x[0]), Q0)
        s = s_of(q)
        m = mmse(s)
        q_plain = Q0 - m
        if newton and s > 0:
            s_plain = s_of(q_plain)
            F0 = alpha_n * s - m - Delta / 2.0
            F_pl = F(s_plain)
            if F0 != 0.0 and F_pl * F0 > 0.0:  # plain step did not cross a root: try Newton
                h = 1e-6 * s
                dF = alpha_n - (mmse(s + h) - mmse(max(s - h, 0.0))) / (s + h - max(s - h, 0.0))
                s_new = s - F0 / dF if dF > 0 else -1.0
                beyond = (s_new <= s_plain) if F0 > 0 else (s_new >= s_plain)
                if dF > 0 and s_new >= 0.0 and beyond:
                    F_new = F(s_new)
                    if F_new * F0 < 0.0:  # overshoot: regula falsi on the bracket [s_plain, s_new]
                        s_new = s_plain - F_pl * (s_new - s_plain) / (F_new - F_pl)
                    return np.array([Q0 + Delta / 2.0 - alpha_n * s_new])
        return np.array([q_plain])

    q0 = kappa0 if q_init is None else q_init
    sol = damped_fixed_point(step, np.array([q0]), damping=damping, tol=tol, max_iter=max_iter)
    q = float(min(sol.value[0], Q0))
    return q, s_of(q), sol


def _softmax_errors(cfg: Config, q: float, Q0: float) -> tuple[dict, dict]:
    """Monte Carlo test / clean / train errors of the plug-in posterior mean (softmax)."""
    T, beta, Delta = cfg.model.T, cfg.model.beta, cfg.pretrain.delta
    n = cfg.theory.mc_samples
    k1, k2, k3 = jax.random.split(seed_key(cfg.theory.seed), 3)
    V = max(Q0 - q, 0.0)
    Om = goe(k1, (n,), T, q)
    G = goe(k2, (n,), T, V)
    xi = goe(k3, (n,), T, Delta / 2.0)
    sm = lambda H: jax.nn.softmax(beta * H, axis=-1)
    P_student = sm(Om)
    P_noisy = sm(Om + G + xi)
    P_clean = sm(Om + G)
    k = V / (V + Delta / 2.0) if V + Delta / 2.0 > 0 else 0.0
    P_train = sm(Om + k * (G + xi))
    per = {"test_error": jnp.sum((P_student - P_noisy) ** 2, axis=(-1, -2)),
           "test_error_clean": jnp.sum((P_student - P_clean) ** 2, axis=(-1, -2)),
           "train_error": jnp.sum((P_train - P_noisy) ** 2, axis=(-1, -2))}
    vals = {k_: float(jnp.mean(v)) for k_, v in per.items()}
    errs = {k_: float(jnp.std(v) / math.sqrt(n)) for k_, v in per.items()}
    return vals, errs


def solve(cfg: Config) -> PretrainState:
    """Bayes-optimal pre-training fixed point (T22–T23) for linear or softmax attention."""
    start = time.perf_counter()
    pt, th = cfg.pretrain, cfg.theory
    Q0 = 1.0 + pt.kappa0
    Delta = pt.delta
    ns = n_sigma(cfg)
    an = pt.alpha * ns
    tol = min(th.tol, 1e-9)
    q, s, sol = state_evolution(alpha_n=an, kappa0=pt.kappa0, Delta=Delta, tol=tol,
                                damping=0.0, max_iter=max(th.max_iter, 5000),
                                nodes=th.spectral_nodes)
    # informative start as a check for a second fixed point
    q_inf, _, sol_inf = state_evolution(alpha_n=an, kappa0=pt.kappa0, Delta=Delta, tol=tol,
                                        damping=0.0, max_iter=max(th.max_iter, 5000),
                                        nodes=th.spectral_nodes, q_init=Q0 - 1e-2)
    flags = []
    if not sol.converged:
        flags.append(f"bayes SE not converged ({sol.result}, residual {sol.residual:.3g} after "
                     f"{sol.iterations} iterations)")
    if sol.converged and sol_inf.converged and abs(q_inf - q) > 1e-4 * Q0:
        flags.append(f"bayes SE: two fixed points (uninformative q = {q:.6g}, informative "
                     f"q = {q_inf:.6g}); reporting the uninformative one")
    mse = Q0 - q
    V = mse
    K = cfg.model.T * (cfg.model.T + 1)
    if cfg.model.attention == "linear":
        test = K * (mse + Delta / 2.0)
        clean = K * mse
        train = K * (Delta / 2.0) ** 2 / (mse + Delta / 2.0) if mse + Delta / 2.0 > 0 else 0.0
        mc = {"test_error": 0.0, "test_error_clean": 0.0, "train_error": 0.0}
    else:
        vals, mc = _softmax_errors(cfg, q, Q0)
        test, clean, train = vals["test_error"], vals["test_error_clean"], vals["train_error"]
    metrics = {"test_error": test, "test_error_clean": clean, "train_error": train,
               "objective": float("nan"), "Q": q, "M": q, "Q0": Q0, "mse": mse}
    mc_err = {k: 0.0 for k in metrics}
    mc_err.update(mc)
    mc_err["objective"] = None
    Qhat = 1.0 / s if s > 0 else math.inf
    solver = sol.stats()
    solver.update({"method": "state_evolution_T22", "branch": "uninformative_start",
                   "alpha_n_sigma": an, "n_sigma": ns, "s": s, "q_informative_start": q_inf,
                   "alpha_PR": alpha_perfect_recovery(cfg) if Delta == 0 else None,
                   "seconds": time.perf_counter() - start})
    return PretrainState(Q=q, M=q, Q0=Q0, V=V, Qhat=Qhat, Mhat=Qhat, Vhat=float("nan"),
                         tau_hat=math.sqrt(pt.kappa0), rank_fraction=1.0 if s > 0 else min(1.0, pt.kappa0),
                         metrics=metrics, mc_err=mc_err, solver=solver, flags=tuple(flags))
