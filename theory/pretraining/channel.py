"""The general-σ pre-training channel (THEORY.md T6–T11, T13, T14–T19) for :mod:`theory.engine`.

Equations (re-derived; Frobenius coordinates on Sym_T, K = T(T+1)/2, GOE_T(1) ↔ N(0, 2I_K)):

* Channel (T6), frozen common random numbers G1, G2 ~ GOE_T(1), ξ ~ GOE_T(Δ/2):
  Ω = √Q G1, H* = (M/√Q) G1 + s G2, s = √(Q0 − M²/Q), Y = σ(H* + ξ).
* Output prox (T7): Ĥ = argmin ‖H − Ω‖²_F/(2V) + ‖σ(H) − Y‖²_F, f = (Ĥ − Ω)/V
  (:func:`theory.pretraining.output_prox.sym_prox`).
* Hats (T8). Stein forms: Q̂ = αE‖f‖², M̂ = αE⟨f, G2⟩/s,
  V̂ = −(α/√Q)[E⟨f, G1⟩ − (M/(s√Q))E⟨f, G2⟩]. With E⟨F(G), G⟩ = 2E div_F F and
  ∂_{G1} = √Q∂_Ω + (M/√Q)∂_{H*}, ∂_{G2} = s∂_{H*}, they equal the derivative forms
  M̂ = 2αE div_{H*} f, V̂ = −2αE div_Ω f. From the prox stationarity (Ĥ − Ω)/V + ∇ℓ(Ĥ) = 0:
  div_Ω f = (Tr(I + V∇²ℓ)⁻¹ − K)/V, div_{H*} f = −Tr[(I + V∇²ℓ)⁻¹ ∂_{H*}∇ℓ] (smooth prox only:
  a jump of Ĥ contributes to the Stein form, not to the derivative form). Linear σ gives
  M̂ = V̂ = 2ᾱ/(1 + 2V), Q̂ = 4ᾱ(mse + Δ/2)/(1 + 2V)², the hat form of T12 (checked).
  Rule (§9): derivative forms while the multi-minimum fraction of the full (multistart) map is
  < STEIN_THRESHOLD, Stein forms from then on (latched by the driver,
  :func:`theory.engine.solve_branch`, for every channel, per point: a continuation along a curve
  does not carry the latch, so each point decides its hat forms at its first full evaluation).
* Prior step: :func:`theory.pretraining.priors.ridge_prior` (T13) or
  :func:`~theory.pretraining.priors.nuclear_prior` (T14–T17); hats outside the prior's domain
  (M̂ ≤ 0 or V̂ ≤ 0 in the nuclear step) give a NaN step, from which the driver backtracks
  (:func:`theory.fixed_point.damped_fixed_point`).
* Free energy (T10/T19): Φ = ½Q̂V − ½V̂Q + M̂M + Ψ_R + αΨ_out, Ψ_out = E min_H[…] = E[V‖f‖²/2 + ℓ].
  At the saddle Φ = α·train + R(Ŝ)/d with R/d = λQ (direct) or λ√κ τ̂ (factorized): both are
  recorded, ``objective`` is Φ.
* Outputs (T11): test = E‖σ(Ω) − σ(H* + ξ)‖²_F, clean with ξ → 0, train = E ℓ(Y, Ĥ),
  mse = Q0 − 2M + Q.

Iteration coordinates (channel hook ``to_iter`` / ``from_iter`` of the engine): the driver iterates
y = (log Q, atanh(M/√(Q Q0)), log V) (same fixed points; issue 14: towards interpolation V grows
like 1/λ and an extrapolated step in (Q, M, V) could leave V > 0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from ..aot import cached_jit
from ..config import Config
from ..gaussian import goe, n_sym, sym_to_vec
from ..solver_constants import ITER_FLOOR, STEIN_THRESHOLD, ZERO_Q, ZERO_V
from . import priors
from .output_prox import Attention, sym_basis, sym_prox

__all__ = ["Draws", "draw_channel", "channel_averages", "hats", "PretrainChannel", "n_sigma"]


@dataclass(frozen=True)
class Draws:
    """Frozen channel Gaussians in Frobenius coordinates, each (N, K): G1, G2 ~ GOE_T(1) and
    ξ ~ GOE_T(Δ/2) (T6)."""

    g1: jax.Array
    g2: jax.Array
    xi: jax.Array


def draw_channel(*, key: jax.Array, N: int, T: int, Delta: float) -> Draws:
    """Draw the frozen common random numbers of T6 (explicit ``key``)."""
    return Draws(*_draw_channel(key, N=int(N), T=int(T), Delta=float(Delta)))


@cached_jit(static_argnames=("N", "T"))
def _draw_channel(key, N: int, T: int, Delta):
    """One program for the draws (run op by op they were ≈ 35 small programs, each loaded from
    the compilation cache: ≈ 0.5 s of a process)."""
    k1, k2, k3 = jax.random.split(key, 3)
    return (sym_to_vec(goe(k1, (N,), T, 1.0)), sym_to_vec(goe(k2, (N,), T, 1.0)),
            sym_to_vec(goe(k3, (N,), T, Delta / 2.0)))


def n_sigma(cfg: Config) -> int:
    """Informative entries per sequence (§3.2, T21): T(T+1) linear, T² + T − 2 softmax."""
    T = cfg.model.T
    return T * (T + 1) if cfg.model.attention == "linear" else T * T + T - 2


@cached_jit(static_argnames=("att", "cold", "metrics"))
def channel_averages(att: Attention, Q0, Q, M, V, g1, g2, xi, f_warm, *, cold: bool = True,
                     metrics: bool = False):
    """Monte-Carlo averages of the channel at (Q, M, V) (T6–T8, T10–T11) and the new f.

    Each sample's prox starts at Ω + V f_warm (``cold=False``), or at every start of the
    multistart plus that one (``cold=True``). Returns (avg, f): ``avg`` a dict of scalars —
    E‖f‖², E⟨f,G1⟩, E⟨f,G2⟩, E div_Ω f, E div_{H*} f, train = E ℓ(Y, Ĥ), psi_out = E[min of the
    prox], the multi-minimum and converged fractions, the largest residual prox gradient and
    |f·11ᵀ| component; with ``metrics`` also test, clean (T11) and per-sample standard deviations
    of train/test/clean.
    """
    T = int(round((math.sqrt(8 * g1.shape[-1] + 1) - 1) / 2))
    K = n_sym(T)
    s = jnp.sqrt(jnp.maximum(Q0 - M * M / Q, 0.0))
    sq = jnp.sqrt(Q)
    omega = sq * g1
    hstar = (M / sq) * g1 + s * g2
    z = hstar + xi
    r = sym_prox(att, omega, z, V, warm=omega + V * f_warm, cold=cold)
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


class PretrainChannel:
    """General-σ RS pre-training (T6–T19) as a channel of :func:`theory.engine.solve`:
    x = (Q, M, V), hats (Q̂, M̂, V̂), the jitted :func:`channel_averages`. The prox warm start is
    f of the previous call (the Stein latch is the driver's). Holds only ``cfg`` and numbers
    derived from it (no solver state)."""

    stage = "pre-training"

    def __init__(self, cfg: Config, alpha: float | None = None):
        pt, m = cfg.pretrain, cfg.model
        if pt.estimator not in ("direct", "factorized"):
            raise ValueError(f"pretrain.estimator = {pt.estimator!r}: the general RS solver needs "
                             "'direct' or 'factorized' (bayes: theory.pretraining.bayes)")
        self.cfg = cfg
        self.alpha = float(pt.alpha if alpha is None else alpha)
        self.att = Attention(m.attention, m.beta)
        self.Q0, self.tau0 = 1.0 + pt.kappa0, math.sqrt(pt.kappa0)

    # --- engine protocol -------------------------------------------------------------------
    def draws(self, key) -> Draws:
        th = self.cfg.theory
        return draw_channel(key=key, N=th.mc_samples, T=self.cfg.model.T,
                            Delta=self.cfg.pretrain.delta)

    def cold_warm(self, data: Draws):
        return jnp.zeros_like(data.g1)        # f = 0: the warm start is Ω

    def sanitize(self, x) -> np.ndarray:
        Q = max(float(x[0]), ITER_FLOOR)
        Mmax = math.sqrt(Q * self.Q0) * (1.0 - 1e-9)
        M = min(max(float(x[1]), -Mmax), Mmax)
        return np.array([Q, M, max(float(x[2]), ITER_FLOOR)])

    def to_iter(self, x) -> np.ndarray:
        """(Q, M, V) → y = (log Q, atanh(M/√(Q Q0)), log V) (NaN stays NaN; outside Q > 0, V > 0,
        M² < Q Q0 gives NaN: the driver backtracks), except the exact Ŝ = 0 of the nuclear step,
        (0, 0, 0) → (log ITER_FLOOR, 0, log ITER_FLOOR), the floor :meth:`sanitize` keeps."""
        Q, M, V = (float(v) for v in x)
        if Q == 0.0 and M == 0.0 and V == 0.0:
            # the nuclear step's exact Ŝ = 0 (every eigenvalue below its threshold) sits at the
            # floor of the coordinates, so a damped step moves towards it instead of failing
            return np.array([math.log(ITER_FLOOR), 0.0, math.log(ITER_FLOOR)])
        if not (np.isfinite(Q) and np.isfinite(M) and np.isfinite(V)) or Q <= 0 or V <= 0 \
                or M * M >= Q * self.Q0:
            return np.full(3, np.nan)
        rho = min(max(M / math.sqrt(Q * self.Q0), -1.0 + 1e-15), 1.0 - 1e-15)
        return np.array([math.log(Q), math.atanh(rho), math.log(V)])

    def from_iter(self, y) -> np.ndarray:
        """Inverse of :meth:`to_iter`."""
        y = np.asarray(y, float)
        if not np.all(np.isfinite(y)):
            return np.full(3, np.nan)
        Q = math.exp(min(y[0], 700.0))
        return np.array([Q, math.tanh(y[1]) * math.sqrt(Q * self.Q0), math.exp(min(y[2], 700.0))])

    def means(self, x, warm, data: Draws, full: bool):
        """Channel averages at x (every full call carries the output metrics: the last one of
        phase 2 is the reported evaluation)."""
        Q, M, V = (float(v) for v in x)
        avg, f = channel_averages(self.att, self.Q0, Q, M, V, data.g1, data.g2, data.xi, warm,
                                  cold=full, metrics=full)
        avg = {k: float(v) for k, v in avg.items()}
        avg["full"] = bool(full)
        return avg, f

    def hats(self, x, means: dict, force_stein: bool):
        """Stein forms when forced (the driver's latch or retry) or when this full evaluation's
        multi-minimum fraction is ≥ STEIN_THRESHOLD (a warm call sees one start: no test)."""
        Q, M, _ = (float(v) for v in x)
        stein = bool(force_stein or (means["full"] and means["multimin"] >= STEIN_THRESHOLD))
        return hats(means, alpha=self.alpha, Q=Q, M=M, Q0=self.Q0, stein=stein), stein

    def prior_step(self, hats: tuple) -> priors.PriorStep:
        pt = self.cfg.pretrain
        Qh, Mh, Vh = hats
        if pt.estimator == "direct":
            return priors.ridge_prior(Q0=self.Q0, tau0=self.tau0, lam=pt.lam, Qhat=Qh, Mhat=Mh,
                                      Vhat=Vh)
        return priors.nuclear_prior(kappa0=pt.kappa0, kappa=pt.kappa, lam=pt.lam, Qhat=Qh,
                                    Mhat=Mh, Vhat=Vh, nodes=self.cfg.theory.spectral_nodes)

    def prior(self, hats: tuple) -> np.ndarray:
        """T13 / T14–T17; NaN (the driver backtracks) when the hats leave the prior's domain."""
        try:
            p = self.prior_step(hats)
        except priors.HatDomainError:
            return np.full(3, np.nan)
        return np.array([p.Q, p.M, p.V])

    def zero_row(self, data: Draws) -> dict | None:
        """The exact Ŝ = 0 fixed point of the factorized map on one repeat's draws (T8, T14–T17,
        T19 at Q = M = V = 0), as an :meth:`outputs` row, or None when (0, 0, 0) is not one.

        At V → 0 the prox is Ĥ = Ω − V∇ℓ(Ω) + O(V²), so f → −∇ℓ(Ω), and at Q = M = 0, Ω = 0 and
        H* = √Q0 G2. The hats (T8, derivative forms: the prox is strongly convex at small V, one
        minimum) are finite: Q̂ = αE‖∇ℓ(0)‖², M̂ = −2αE Tr ∂_{H*}∇ℓ(0), V̂ = 2αE Tr ∇²ℓ(0).
        The nuclear step (T14) at those hats returns Ŝ = 0 exactly — Q = M = V = 0, rank
        fraction F0 = 0 — when its threshold ε = λ√κ/M̂ lies above the spectrum of S0* + δZ
        (T16), i.e. λ√κ > M̂·edge: then (0, 0, 0) is a fixed point, and a superstable one (the
        step is zero in a neighbourhood of those hats). The iteration in log coordinates
        (:meth:`to_iter`) can only approach it, so it is evaluated here directly. Free energy
        (T19): Φ = αEℓ(Y, 0) (Q̂V, V̂Q, M̂M and Ψ_R = −(M̂²/2V̂)J all vanish) = α·train + penalty
        (0). The channel is evaluated at Q = ZERO_Q, M = 0, V = ZERO_V (biases O(V) in the hats,
        O(√Q) in the metrics, far below the MC error). A ridge step (``direct``) never returns
        Ŝ = 0 (V = 1/(V̂ + 2λ) > 0): None."""
        if self.cfg.pretrain.estimator != "factorized":
            return None
        # the test on the warm-only program (one start, Ω: at V = ZERO_V the prox is strongly
        # convex, one minimum), the metrics on the full one only where Ŝ = 0 is a fixed point;
        # both are the programs of the iteration (no extra compilation)
        for full in (False, True):
            avg, _ = channel_averages(self.att, self.Q0, ZERO_Q, 0.0, ZERO_V, data.g1, data.g2,
                                      data.xi, self.cold_warm(data), cold=full, metrics=full)
            avg = {k: float(v) for k, v in avg.items()}
            h = hats(avg, alpha=self.alpha, Q=ZERO_Q, M=0.0, Q0=self.Q0, stein=False)
            try:
                p = self.prior_step(h)
            except priors.HatDomainError:
                return None
            if p.rank_fraction > 0.0 or p.Q != 0.0:
                return None
        Qh, Mh, Vh = h
        objective = self.alpha * avg["train"]
        return dict(test_error=avg["test"], test_error_clean=avg["clean"],
                    train_error=avg["train"], objective=objective, Q=0.0, M=0.0, Q0=self.Q0,
                    mse=self.Q0, V=0.0, Qhat=Qh, Mhat=Mh, Vhat=Vh, tau_hat=0.0,
                    rank_fraction=0.0, obj_direct=objective, sd_test=avg["sd_test"],
                    sd_clean=avg["sd_clean"], sd_train=avg["sd_train"],
                    multimin=avg["multimin"], prox_converged=avg["converged"],
                    grad_max=avg["grad_max"], f_par_max=avg["f_par_max"], f_max=avg["f_max"],
                    stein_hats=0.0, stein_retry=0.0, converged=1.0, iterations=0.0,
                    residual=0.0)

    def record(self, x, hats: tuple, means: dict, stein: bool) -> dict:
        """T10–T11 at a solved point: Φ (the objective), α·train + penalty, the metrics."""
        pt = self.cfg.pretrain
        Q, M, V = (float(v) for v in x)
        Qh, Mh, Vh = hats
        p = self.prior_step(hats)
        penalty = pt.lam * Q if pt.estimator == "direct" else \
            pt.lam * math.sqrt(pt.kappa) * p.tau_hat
        phi = 0.5 * Qh * V - 0.5 * Vh * Q + Mh * M + p.psi + self.alpha * means["psi_out"]
        return dict(Q=Q, M=M, V=V, Qhat=Qh, Mhat=Mh, Vhat=Vh, tau_hat=p.tau_hat,
                    rank_fraction=p.rank_fraction, objective=phi,
                    obj_direct=self.alpha * means["train"] + penalty, penalty=penalty,
                    overlap=M / math.sqrt(Q * self.Q0), stein_hats=stein, rs_doubtful=stein,
                    avg=dict(means))

    def outputs(self, branch, data) -> dict:
        """One repeat's row (numbers only): the metrics (T11), the solver numbers averaged over
        repeats, and the per-repeat diagnostics the state's flags are built from."""
        r, a = branch.record, branch.record["avg"]
        return dict(test_error=a["test"], test_error_clean=a["clean"], train_error=a["train"],
                    objective=r["objective"], Q=r["Q"], M=r["M"], Q0=self.Q0,
                    mse=self.Q0 - 2 * r["M"] + r["Q"], V=r["V"], Qhat=r["Qhat"],
                    Mhat=r["Mhat"], Vhat=r["Vhat"], tau_hat=r["tau_hat"],
                    rank_fraction=r["rank_fraction"], obj_direct=r["obj_direct"],
                    sd_test=a["sd_test"], sd_clean=a["sd_clean"], sd_train=a["sd_train"],
                    multimin=a["multimin"], prox_converged=a["converged"],
                    grad_max=a["grad_max"], f_par_max=a["f_par_max"], f_max=a["f_max"],
                    stein_hats=float(r["stein_hats"]), stein_retry=float(branch.stein_retry),
                    converged=float(branch.converged), iterations=float(branch.iterations),
                    residual=float(branch.residual))

    def label(self, record: dict) -> str:
        return "unique"

    def distinct(self, a: dict, b: dict) -> bool:
        return abs(a["Q"] - b["Q"]) > 1e-3 * (1 + abs(a["Q"])) or \
            abs(a["M"] - b["M"]) > 1e-3 * (1 + abs(a["M"]))

    def doubt(self, record: dict) -> str | None:
        return None          # the Stein flag is built from every repeat (general.py)
