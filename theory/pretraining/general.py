"""Replica-symmetric pre-training fixed point for any σ (softmax with β, or linear), ``direct`` and
``factorized`` (THEORY.md T6–T11, T13, T14–T19, §9).

Equations (re-derived; Frobenius coordinates on Sym_T, K = T(T+1)/2, GOE_T(1) ↔ N(0, 2I_K)):

* Channel (T6), frozen common random numbers G1, G2 ~ GOE_T(1), ξ ~ GOE_T(Δ/2):
  Ω = √Q G1, H* = (M/√Q) G1 + s G2, s = √(Q0 − M²/Q), Y = σ(H* + ξ).
* Output prox (T7): Ĥ = argmin ‖H − Ω‖²_F/(2V) + ‖σ(H) − Y‖²_F, f = (Ĥ − Ω)/V
  (:func:`theory.prox.sym_prox`).
* Hats (T8). Stein forms: Q̂ = αE‖f‖², M̂ = αE⟨f, G2⟩/s,
  V̂ = −(α/√Q)[E⟨f, G1⟩ − (M/(s√Q))E⟨f, G2⟩]. With E⟨F(G), G⟩ = 2E div_F F and
  ∂_{G1} = √Q∂_Ω + (M/√Q)∂_{H*}, ∂_{G2} = s∂_{H*}, they equal the derivative forms
  M̂ = 2αE div_{H*} f, V̂ = −2αE div_Ω f. From the prox stationarity (Ĥ − Ω)/V + ∇ℓ(Ĥ) = 0:
  div_Ω f = (Tr(I + V∇²ℓ)⁻¹ − K)/V, div_{H*} f = −Tr[(I + V∇²ℓ)⁻¹ ∂_{H*}∇ℓ] (smooth prox only:
  a jump of Ĥ contributes to the Stein form, not to the derivative form). Linear σ gives
  M̂ = V̂ = 2ᾱ/(1 + 2V), Q̂ = 4ᾱ(mse + Δ/2)/(1 + 2V)², the hat form of T12 (checked).
  Rule (§9): derivative forms while the multi-minimum fraction is < 10⁻³, Stein forms otherwise
  (latched: once Stein, always Stein in that solve).
* Prior step: :func:`theory.pretraining.priors.ridge_prior` (T13) or
  :func:`~theory.pretraining.priors.nuclear_prior` (T14–T17).
* Free energy (T10/T19): Φ = ½Q̂V − ½V̂Q + M̂M + Ψ_R + αΨ_out, Ψ_out = E min_H[…] = E[V‖f‖²/2 + ℓ].
  At the saddle Φ = α·train + R(Ŝ)/d with R/d = λQ (direct) or λ√κ τ̂ (factorized): both are
  computed, ``objective`` is Φ and their difference is ``solver["objective_gap"]``.
* Outputs (T11): test = E‖σ(Ω) − σ(H* + ξ)‖²_F, clean with ξ → 0, train = E ℓ(Y, Ĥ),
  mse = Q0 − 2M + Q.

Softmax (§3.2, T21): ℓ is flat along 11ᵀ, so f ⊥ 11ᵀ (checked: ``solver["f_parallel_max"]``) and
only n_σ = T² + T − 2 of the T(T+1) entries carry information: the effective sample ratio is
α_eff = α n_σ (α T(T+1) linear). It sets the initial point (the T12 solution at ᾱ = α_eff) and
the near-interpolation warning.

Iteration: x = (Q, M, V) with :func:`theory.fixed_point.damped_fixed_point` (Anderson-accelerated,
memory ``ANDERSON_MEMORY``, constants in :mod:`theory.solver_constants`), run in the unconstrained
coordinates y = (log Q, atanh(M/√(Q Q0)), log V) (same fixed points; issue 14: towards
interpolation V grows like 1/λ and an extrapolated step in (Q, M, V) could leave V > 0), in two phases: (1)
the prox is warm-started only (from Ω + V f of the previous call: cheap), (2) the full map with
all starts (§3.2: Ω, the interpolating point, the linearised prox, the warm start): one full step,
and if some sample's best minimum changed, phase 1 again from the minima it chose (rounds; the
plain full-map iteration after ``PHASE2_ROUNDS`` of them); the reported fixed point is that of
the full map, and its last full evaluation is the final one (not repeated). ``theory.max_iter``
caps both phases together. MC error (§9): the whole solve
is repeated over ``cfg.theory.mc_repeats`` independent frozen samples (repeat r uses
``fold_in(PRNGKey(seed), r)``), warm-started from the first converged solution; metrics are the mean over
repeats and ``mc_err`` the standard error of that mean.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from functools import partial
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ..config import Config
from ..fixed_point import damped_fixed_point
from ..gaussian import goe, n_sym, sym_to_vec
from .output_prox import Attention, sym_basis, sym_prox
from ..states import PretrainState
from . import priors

__all__ = ["solve", "solve_curve", "Draws", "draw_channel", "channel_averages", "hats",
           "MULTIMIN_STEIN_THRESHOLD"]

from ..solver_constants import ANDERSON_MEMORY, PHASE2_ROUNDS, STALL_ITERATIONS  # noqa: E402
from ..solver_constants import STEIN_THRESHOLD as MULTIMIN_STEIN_THRESHOLD  # noqa: E402  (old name)


# ----------------------------------------------------------------------------------------------
# channel (T6-T8)
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Draws:
    """Frozen channel Gaussians in Frobenius coordinates, each (N, K): G1, G2 ~ GOE_T(1) and
    ξ ~ GOE_T(Δ/2) (T6)."""

    g1: jax.Array
    g2: jax.Array
    xi: jax.Array


def draw_channel(*, key: jax.Array, N: int, T: int, Delta: float) -> Draws:
    """Draw the frozen common random numbers of T6 (explicit ``key``)."""
    k1, k2, k3 = jax.random.split(key, 3)
    return Draws(g1=sym_to_vec(goe(k1, (N,), T, 1.0)), g2=sym_to_vec(goe(k2, (N,), T, 1.0)),
                 xi=sym_to_vec(goe(k3, (N,), T, Delta / 2.0)))


@partial(jax.jit, static_argnames=("att", "cold", "metrics"))
def channel_averages(att: Attention, Q0, Q, M, V, g1, g2, xi, f_warm, *, cold: bool = True,
                     metrics: bool = False):
    """Monte-Carlo averages of the channel at (Q, M, V) (T6–T8, T10–T11) and the new f.

    Returns (avg, f): ``avg`` a dict of scalars — E‖f‖², E⟨f,G1⟩, E⟨f,G2⟩, E div_Ω f,
    E div_{H*} f, train = E ℓ(Y, Ĥ), psi_out = E[min of the prox], the multi-minimum and
    converged fractions, the largest residual prox gradient and |f·11ᵀ| component; with
    ``metrics`` also test, clean (T11) and per-sample standard deviations of train/test/clean.
    """
    T = int(round((math.sqrt(8 * g1.shape[-1] + 1) - 1) / 2))
    K = n_sym(T)
    s = jnp.sqrt(jnp.maximum(Q0 - M * M / Q, 0.0))
    sq = jnp.sqrt(Q)
    omega = sq * g1
    hstar = (M / sq) * g1 + s * g2
    z = hstar + xi
    warm = None if f_warm is None else omega + V * f_warm
    r = sym_prox(att, omega, z, V, warm=warm, cold=cold)
    f = r.f
    avg = dict(
        ff=jnp.mean(jnp.sum(f * f, -1)), fg1=jnp.mean(jnp.sum(f * g1, -1)),
        fg2=jnp.mean(jnp.sum(f * g2, -1)), div_omega=jnp.mean((r.tr_inv - K) / V),
        div_hstar=jnp.mean(-r.tr_mix), train=jnp.mean(r.loss), psi_out=jnp.mean(r.value),
        multimin=jnp.mean(r.multimin), converged=jnp.mean(r.converged),
        grad_max=jnp.max(r.grad_norm), f_par_max=jnp.max(jnp.abs(r.f_par)),
        f_max=jnp.max(jnp.abs(f)), newton_iter_max=jnp.max(r.iterations))
    if metrics:
        E = sym_basis(T)
        mat = lambda u: jnp.tensordot(u, E, axes=1)
        A = att.sigma(mat(omega))
        test = jnp.sum((A - att.sigma(mat(z))) ** 2, axis=(-1, -2))
        clean = jnp.sum((A - att.sigma(mat(hstar))) ** 2, axis=(-1, -2))
        avg.update(test=jnp.mean(test), clean=jnp.mean(clean), sd_test=jnp.std(test),
                   sd_clean=jnp.std(clean), sd_train=jnp.std(r.loss))
    return avg, f


def hats(avg: dict, *, alpha: float, Q: float, M: float, Q0: float, stein: bool) -> tuple:
    """(Q̂, M̂, V̂) from the channel averages (T8): Stein or derivative forms."""
    Qh = alpha * avg["ff"]
    if stein:
        s = math.sqrt(max(Q0 - M * M / Q, 1e-300))
        Mh = alpha * avg["fg2"] / s
        Vh = -(alpha / math.sqrt(Q)) * (avg["fg1"] - (M / (s * math.sqrt(Q))) * avg["fg2"])
    else:
        Mh = 2.0 * alpha * avg["div_hstar"]
        Vh = -2.0 * alpha * avg["div_omega"]
    return float(Qh), float(Mh), float(Vh)


# ----------------------------------------------------------------------------------------------
# one problem = config + frozen draws
# ----------------------------------------------------------------------------------------------
class _Problem:
    """The RS map at fixed config and frozen draws; carries the warm prox state between calls."""

    def __init__(self, cfg: Config, draws: Draws, alpha: float):
        pt, m = cfg.pretrain, cfg.model
        self.cfg, self.draws, self.alpha = cfg, draws, alpha
        self.att = Attention(m.attention, m.beta)
        self.Q0, self.tau0 = 1.0 + pt.kappa0, math.sqrt(pt.kappa0)
        self.f_warm = None
        self.stein = False
        self.last = None  # (avg, hats, prior) of the last call
        self.last_cold = False
        self.calls = 0

    def clip(self, x):
        Q = max(float(x[0]), 1e-12)
        Mmax = math.sqrt(Q * self.Q0) * (1.0 - 1e-9)
        M = min(max(float(x[1]), -Mmax), Mmax)
        V = max(float(x[2]), 1e-12)
        return Q, M, V

    def prior(self, Qh, Mh, Vh) -> priors.PriorStep:
        pt = self.cfg.pretrain
        if pt.estimator == "direct":
            return priors.ridge_prior(Q0=self.Q0, tau0=self.tau0, lam=pt.lam, Qhat=Qh, Mhat=Mh,
                                      Vhat=Vh)
        return priors.nuclear_prior(kappa0=pt.kappa0, kappa=pt.kappa, lam=pt.lam, Qhat=Qh,
                                    Mhat=Mh, Vhat=Vh, nodes=self.cfg.theory.spectral_nodes)

    def evaluate(self, x, *, cold: bool, metrics: bool = False):
        Q, M, V = self.clip(x)
        d = self.draws
        if self.f_warm is None:
            cold = True
        # every full (cold) evaluation carries the output metrics (cheap next to the prox), so
        # the last one of phase 2 is the final evaluation (no repeat of the multistart prox)
        avg, f = channel_averages(self.att, self.Q0, Q, M, V, d.g1, d.g2, d.xi, self.f_warm,
                                  cold=cold, metrics=metrics or cold)
        avg = {k: float(v) for k, v in avg.items()}
        self.f_warm = f
        self.calls += 1
        if cold and avg["multimin"] >= MULTIMIN_STEIN_THRESHOLD:
            self.stein = True
        h = hats(avg, alpha=self.alpha, Q=Q, M=M, Q0=self.Q0, stein=self.stein)
        p = self.prior(*h)
        self.last = ((Q, M, V), avg, h, p)
        self.last_cold = cold
        return p

    def to_y(self, x) -> np.ndarray:
        """(Q, M, V) → y = (log Q, atanh(M/√(Q Q0)), log V): the unconstrained iteration variables
        of :func:`_solve_problem` (NaN stays NaN)."""
        Q, M, V = (float(v) for v in x)
        if not (np.isfinite(Q) and np.isfinite(M) and np.isfinite(V)):
            return np.full(3, np.nan)
        Q, V = max(Q, 1e-300), max(V, 1e-300)
        rho = min(max(M / math.sqrt(Q * self.Q0), -1.0 + 1e-15), 1.0 - 1e-15)
        return np.array([math.log(Q), math.atanh(rho), math.log(V)])

    def to_x(self, y) -> np.ndarray:
        """Inverse of :meth:`to_y`."""
        y = np.asarray(y, float)
        if not np.all(np.isfinite(y)):
            return np.full(3, np.nan)
        Q = math.exp(min(y[0], 700.0))
        return np.array([Q, math.tanh(y[1]) * math.sqrt(Q * self.Q0), math.exp(min(y[2], 700.0))])

    def in_domain(self, x) -> bool:
        """Q > 0, V > 0 and M² < Q Q0 (the channel's s² = Q0 − M²/Q > 0)."""
        Q, M, V = (float(v) for v in x)
        return Q > 0.0 and V > 0.0 and M * M < Q * self.Q0

    def step(self, x, *, cold: bool):
        """The RS map on x = (Q, M, V); NaN where the hats leave the prior's domain or x itself
        lies outside Q > 0, V > 0, M² < Q Q0 (the driver then backtracks,
        :func:`theory.fixed_point.damped_fixed_point`). An Anderson extrapolation can overshoot
        to V < 0 (measured: softmax T = 2, α = 0.2, λ = 10⁻³, from V = 14 on the way to V = 122);
        clipped to V = 10⁻¹², Q = 10⁻¹² such an iterate used to land in the corner where the
        Stein hats divide by √Q and the solve never came back (issue 14)."""
        if not self.in_domain(x):
            return np.full(3, np.nan)
        try:
            p = self.evaluate(x, cold=cold)
        except priors.HatDomainError:
            return np.full(3, np.nan)
        return np.array([p.Q, p.M, p.V])


def _initial_point(cfg: Config, alpha: float) -> np.ndarray:
    """T12 (ridge, linear σ) at the effective ratio ᾱ = α n_σ: a cheap, sensible start."""
    pt, T = cfg.pretrain, cfg.model.T
    n_sigma = T * (T + 1) if cfg.model.attention == "linear" else T * T + T - 2
    ab = alpha * n_sigma
    lam = max(pt.lam, 1e-3)
    B = lam + ab - 1.0
    nu = 2.0 / (B + math.sqrt(B * B + 4.0 * lam)) if B > 0 else (-B + math.sqrt(B * B + 4 * lam)) / (2 * lam)
    nu = min(nu, 20.0)
    a, b = ab * nu / (1 + nu), min(ab * nu * nu / (1 + nu) ** 2, 0.9)
    Q0 = 1.0 + pt.kappa0
    mse = (Q0 * (1 - a) ** 2 + b * pt.delta / 2) / (1 - b)
    M = Q0 * a
    Q = max(mse - Q0 + 2 * M, 1.01 * M * M / Q0, 1e-3)
    return np.array([Q, M, nu / 2.0])


def _solve_problem(prob: _Problem, x0) -> dict:
    """Two-phase damped iteration (module docstring) and the final evaluation at the fixed point."""
    th = prob.cfg.theory
    t0 = time.perf_counter()
    # stall: with Stein hats (a map discontinuous at the resolution of the draws) the residual
    # can stop decreasing far above tol; stop then, reported as not converged ("stalled")
    kw = dict(damping=th.damping, tol=th.tol, anderson=ANDERSON_MEMORY, stall=STALL_ITERATIONS)
    # theory.max_iter caps the two phases together: phase 1 keeps one iteration for phase 2,
    # which always evaluates the full map at least once (the reported point is its fixed point)
    # Phase 2 in rounds: one full-map (cold) step; if no sample's best minimum changed it is
    # within tol (done); otherwise the warm phase resumes from the minima the full map chose.
    # After PHASE2_ROUNDS rounds, or when phase 1 did not converge, the plain full-map
    # iteration takes the iterations left (the fixed point reported is that of the full map).
    cap = th.max_iter
    # The iteration runs in unconstrained coordinates y = (log Q, atanh(M/√(Q Q0)), log V)
    # (same fixed points; tol on relative changes of Q and V): damped and Anderson steps cannot
    # leave Q > 0, V > 0, M² < Q Q0, and V, which grows like 1/λ towards interpolation, moves
    # geometrically (issue 14: in (Q, M, V) an extrapolation from V = 14 towards V = 122 went to
    # V < 0; the backtracks that followed raised the damping to 0.95 and the solve stalled).
    to_y, to_x = prob.to_y, prob.to_x
    warm_step = lambda y: to_y(prob.step(to_x(y), cold=False))
    cold_step = lambda y: to_y(prob.step(to_x(y), cold=True))
    sol1 = damped_fixed_point(warm_step, to_y(x0), max_iter=max(cap - 1, 1), **kw)
    used, x1 = sol1.iterations, sol1.value   # "nonfinite": the last in-domain iterate (or x0)
    sol2 = None
    if sol1.converged:
        for _ in range(PHASE2_ROUNDS):
            sol2 = damped_fixed_point(cold_step, x1, max_iter=1, **kw)
            used += 1
            if sol2.converged or used >= cap:
                break
            solw = damped_fixed_point(warm_step, sol2.value, max_iter=max(cap - used - 1, 1), **kw)
            used += solw.iterations
            x1, sol2 = solw.value, None
            if not solw.converged:
                break
    if sol2 is None or not (sol2.converged or used >= cap):
        sol2 = damped_fixed_point(cold_step, x1, max_iter=max(cap - used, 1), **kw)
        used += sol2.iterations
    sol2_iterations = used - sol1.iterations
    x = np.array(prob.clip(to_x(sol2.value)))
    last = prob.last
    if not (sol2.converged and prob.last_cold and np.max(np.abs(x - np.array(last[0])))
            <= th.tol * (1.0 + np.max(np.abs(x)))):
        prob.evaluate(x, cold=True, metrics=True)
    # else: the last full evaluation was at the previous iterate, within tol of the fixed point:
    # report that point with its averages
    (Q, M, V), avg, (Qh, Mh, Vh), p = prob.last
    pt = prob.cfg.pretrain
    alpha = prob.alpha
    penalty = pt.lam * Q if pt.estimator == "direct" else pt.lam * math.sqrt(pt.kappa) * p.tau_hat
    phi = 0.5 * Qh * V - 0.5 * Vh * Q + Mh * M + p.psi + alpha * avg["psi_out"]
    obj_direct = alpha * avg["train"] + penalty
    metrics = {"test_error": avg["test"], "test_error_clean": avg["clean"],
               "train_error": avg["train"], "objective": phi, "Q": Q, "M": M, "Q0": prob.Q0,
               "mse": prob.Q0 - 2 * M + Q}
    return dict(x=np.array([Q, M, V]), hats=(Qh, Mh, Vh), prior=p, avg=avg, metrics=metrics,
                penalty=penalty, phi=phi, obj_direct=obj_direct,
                converged=sol2.converged, result=sol2.result,
                iterations=used, iterations_full=sol2_iterations,
                residual=sol2.residual, seconds=time.perf_counter() - t0, stein=prob.stein)


def _check_cfg(cfg: Config):
    if cfg.pretrain.estimator not in ("direct", "factorized"):
        raise ValueError(f"general.solve: pretrain.estimator = {cfg.pretrain.estimator!r} "
                         "must be 'direct' or 'factorized' (bayes: theory.pretraining.bayes)")


def _key(cfg: Config, r: int) -> jax.Array:
    return jax.random.fold_in(jax.random.PRNGKey(cfg.theory.seed), r)


def _draws(cfg: Config, r: int) -> Draws:
    return draw_channel(key=_key(cfg, r), N=cfg.theory.mc_samples, T=cfg.model.T,
                        Delta=cfg.pretrain.delta)


def _combine(cfg: Config, alpha: float, runs: list[dict], seconds: float) -> PretrainState:
    """Mean over repeats, standard errors, solver block and flags."""
    R = len(runs)
    names = list(runs[0]["metrics"])
    vals = {k: np.array([r["metrics"][k] for r in runs]) for k in names}
    metrics = {k: float(np.mean(v)) for k, v in vals.items()}
    if R > 1:
        mc_err = {k: float(np.std(v, ddof=1) / math.sqrt(R)) for k, v in vals.items()}
    else:  # per-sample s.e. of the final expectations only (no propagation through the fixed point)
        N = cfg.theory.mc_samples
        a = runs[0]["avg"]
        mc_err = {k: None for k in names}
        mc_err.update(test_error=a["sd_test"] / math.sqrt(N),
                      test_error_clean=a["sd_clean"] / math.sqrt(N),
                      train_error=a["sd_train"] / math.sqrt(N))
    mc_err["Q0"] = 0.0
    mean = lambda f: float(np.mean([f(r) for r in runs]))
    T = cfg.model.T
    n_sigma = T * (T + 1) if cfg.model.attention == "linear" else T * T + T - 2
    main = runs[0]
    conv = all(r["converged"] for r in runs)
    mm = max(r["avg"]["multimin"] for r in runs)
    solver = {
        "method": "rs_mc_T6_T8", "converged": conv, "result": main["result"],
        "iterations": int(sum(r["iterations"] for r in runs)),
        "iterations_first": int(main["iterations"]),
        "residual": float(max(r["residual"] for r in runs)), "seconds": seconds,
        "branch": "unique", "hat_form": "stein" if any(r["stein"] for r in runs) else "derivative",
        "multimin_fraction": float(mm), "mc_samples": cfg.theory.mc_samples, "mc_repeats": R,
        "alpha_eff": alpha * n_sigma, "V": mean(lambda r: r["x"][2]),
        "objective_gap": mean(lambda r: r["phi"] - r["obj_direct"]),
        "objective_alpha_train_plus_penalty": mean(lambda r: r["obj_direct"]),
        "prox_converged_fraction": float(min(r["avg"]["converged"] for r in runs)),
        "prox_grad_max": float(max(r["avg"]["grad_max"] for r in runs)),
        "f_parallel_max": float(max(r["avg"]["f_par_max"] for r in runs)),
    }
    flags = []
    if not conv:
        flags.append(f"general RS fixed point not converged ({main['result']}, residual "
                     f"{solver['residual']:.3g} after {solver['iterations']} iterations)")
    if solver["prox_converged_fraction"] < 1.0:
        flags.append(f"prox not converged on a fraction "
                     f"{1 - solver['prox_converged_fraction']:.3g} of the samples")
    if cfg.model.attention == "softmax" and solver["f_parallel_max"] > 1e-8 * (
            1.0 + max(r["avg"]["f_max"] for r in runs)):
        flags.append(f"f not orthogonal to 11ᵀ: max |component| {solver['f_parallel_max']:.3g}")
    if solver["hat_form"] == "stein":
        flags.append(f"prox discontinuous during the iteration (multi-minimum fraction >= "
                     f"{MULTIMIN_STEIN_THRESHOLD:g}; {mm:.3g} at the fixed point): Stein hats "
                     "[RS doubtful]")
    if cfg.pretrain.estimator == "direct" and cfg.pretrain.lam < 1e-3 and abs(solver["alpha_eff"] - 1) < 0.1:
        flags.append(f"near the interpolation point alpha_eff = {solver['alpha_eff']:.3g} ≈ 1 at small lam")
    Qh, Mh, Vh = (mean(lambda r, i=i: r["hats"][i]) for i in range(3))
    return PretrainState(
        Q=metrics["Q"], M=metrics["M"], Q0=metrics["Q0"], V=solver["V"], Qhat=Qh, Mhat=Mh, Vhat=Vh,
        tau_hat=mean(lambda r: r["prior"].tau_hat),
        rank_fraction=mean(lambda r: r["prior"].rank_fraction),
        metrics=metrics, mc_err=mc_err, solver=solver, flags=tuple(flags))


# ----------------------------------------------------------------------------------------------
# public API
# ----------------------------------------------------------------------------------------------
def solve(cfg: Config, *, init: PretrainState | Sequence[float] | None = None) -> PretrainState:
    """RS pre-training fixed point (T6–T11 with T13 or T14–T19) for ``cfg``; see module docstring.

    ``init``: a previous :class:`PretrainState` or (Q, M, V); default: T12 at α_eff.
    """
    _check_cfg(cfg)
    t0 = time.perf_counter()
    alpha = cfg.pretrain.alpha
    if init is None:
        x0 = _initial_point(cfg, alpha)
    elif isinstance(init, PretrainState):
        x0 = np.array([init.Q, init.M, init.V])
    else:
        x0 = np.asarray(init, float)
    runs = []
    for r in range(cfg.theory.mc_repeats):
        prob = _Problem(cfg, _draws(cfg, r), alpha)
        # a repeat starts at the first converged repeat's fixed point (x0 while none converged:
        # a lost first repeat used to drag every repeat with it)
        start = next((run["x"] for run in runs if run["converged"]), x0)
        runs.append(_solve_problem(prob, start))
    return _combine(cfg, alpha, runs, time.perf_counter() - t0)


def solve_curve(cfg: Config, alphas: Sequence[float], *,
                init: PretrainState | Sequence[float] | None = None) -> list[PretrainState]:
    """Fixed points along ``alphas`` (in the given order) with continuation: for each MC repeat
    the same frozen draws are kept along the path and each point starts from the previous one
    (order parameters and the prox solutions)."""
    _check_cfg(cfg)
    alphas = [float(a) for a in alphas]
    R = cfg.theory.mc_repeats
    per_alpha = [[] for _ in alphas]
    secs = [0.0 for _ in alphas]
    for r in range(R):
        draws = _draws(cfg, r)
        f_warm = None
        x = None
        for i, a in enumerate(alphas):
            c = cfg.replace(pretrain={"alpha": a}) if hasattr(cfg, "replace") else cfg
            prob = _Problem(c, draws, a)
            prob.f_warm = f_warm
            if x is None:
                if init is None:
                    x = _initial_point(c, a)
                elif isinstance(init, PretrainState):
                    x = np.array([init.Q, init.M, init.V])
                else:
                    x = np.asarray(init, float)
            t0 = time.perf_counter()
            run = _solve_problem(prob, x)
            secs[i] += time.perf_counter() - t0
            per_alpha[i].append(run)
            x, f_warm = run["x"], prob.f_warm
    out = []
    for i, a in enumerate(alphas):
        c = cfg.replace(pretrain={"alpha": a}) if hasattr(cfg, "replace") else cfg
        out.append(_combine(c, a, per_alpha[i], secs[i]))
    return out
