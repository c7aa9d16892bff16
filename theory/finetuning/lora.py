"""RS theory of symmetric rank-one LoRA fine-tuning (THEORY.md §5, T28–T32; §6 T35; §7 T36).

Public API
----------
``solve(cfg, pre, *, init=None) -> FinetuneState``   global RS fixed point, every branch found.
``solve_linear_reduced(cfg, pre, *, ...)``           linear σ in the reduced form ℓ' = ‖A − zzᵀ‖²_F,
                                                     A = Ỹ + qI, Ỹ = ζζᵀ − q0*I + √Δ G (T28), with
                                                     analytic gradient/Hessian/derivative hats.
``solve_curve(cfg, pre, alphas)``                    continuation in α' with spinodal detection.
``test_error_mc(cfg, pre, q, m, *, key)``            MC of the fresh-sample test formula (T32).
``linear_test_error(cfg, pre, c, q, m)``             T32 closed form (linear σ).

Equations (re-derived; notation of THEORY.md)
---------------------------------------------
Channel (T28), frozen draws ξ_t, η ~ N(0, I_T) (η antithetic, so m = 0 is exactly invariant),
B, R, ξ' ~ GOE_T: ω = √q ξ_t, ζ = (m/√q)ξ_t + s'η, s' = √(q0* − m²/q);
ℓ'(z; q) = ‖σ(cB + zzᵀ − qI) − σ((M/Q)B + R + ξ' + ζζᵀ − q0*I)‖²_F (B → B_sel under selection, T36;
reuse, linear only: the residual is GOE_T(Δ_eff,1), T35).
Prox (T29): ẑ = argmin |z − ω|²/(2v) + ℓ'(z; q), f = (ẑ − ω)/v (:mod:`theory.prox`).
Hats (T30): q̂ = α'E|f|²;  m̂ = α'E div_ζ f (= α'E[f·η]/s');
v̂ = −α'E div_ω f + 2α'E ∂_qℓ'(ẑ; q)   (Stein: −(α'/√q)[E f·ξ_t − (m/(s'√q))E f·η] for the first term).
The explicit term: Ψ'_out(q, m, v) = E min_z[...] depends on q through the law of ω (Price:
∂_q E F = ½E Δ_ω F, with ∂_ω min = −f) and through ℓ' (envelope theorem), so
∂_qΨ'_out = −½E div_ω f + E ∂_qℓ'(ẑ); with v̂ = 2α'∂_qΨ'_out this is T30. Equivalently the w-gradient of
Σ_μ ℓ'_μ contains (2/d)Σ_μ ∂_qℓ'_μ w: a self-consistent extra ridge α'E∂_qℓ'.
Derivative forms: div_ω f = (Tr H⁻¹/v − T)/v, div_ζ f = −Tr(H⁻¹ ∂_ζ∇_zℓ')/v, H = I/v + ∇²ℓ'(ẑ).
Prior (T31): v = 1/(2λ' + v̂), m = q0* m̂ v, q = (q0* m̂² + q̂)v².
Free energy (T31) as a variational function of independent (q, m, v, q̂, m̂, v̂):
φ = ½q̂v − ½v̂q + m̂m − (q0*m̂² + q̂)/(2(v̂ + 2λ')) + α'E min_z[|z − ω|²/(2v) + ℓ'(z; q)].
(THEORY.md writes the fourth term as −½(q0*m̂² + q̂)v; that is only its value at the saddle — with
v independent it would make ∂φ/∂q̂ ≡ 0. The form above gives T30–T31 as its stationarity
conditions.) At the saddle φ = α'·train + λ'q (algebra: q̂v + m̂m = q/v = q(2λ' + v̂)); the solver
reports φ_var − (α'·train + λ'q) as ``phi_minus_objective``.

RS local stability (replicon / de Almeida–Thouless type, zero temperature, ridge prior):
    λ_AT = α' E‖I_T − H⁻¹/v‖²_F < 1,   H = I/v + ∇²_zℓ'(ẑ; q)
(α'·E‖∂_ω f‖²_F·v_w², where v_w = ∂w/∂(field) = v is the prior-prox derivative; the explicit q term
acts on the replica-diagonal overlap only, so it does not enter the replicon). Check: ridge square
loss at λ → 0 gives λ_AT = 1/α < 1, marginal at interpolation. We report λ_AT, the fraction of channel
samples whose prox objective is non-convex (Hessian not PD at ω or on the ω-start Newton path) and
the fraction with ≥ 2 distinct local minima; a point is flagged "RS doubtful" when λ_AT ≥ 1 or the
multi-minimum fraction exceeds ``RS_DOUBT_MULTIMIN`` (1%).

Solve protocol (§9): :mod:`theory.engine` (one driver for every RS channel: warm/full phases,
Stein retry, branch search, choice by free energy, MC repeats started at the solved point,
aggregation, flags; constants in :mod:`theory.solver_constants`). This module supplies the
channel, :class:`LoraChannel`. Newton steps use a modified L D Lᵀ factorisation
(:mod:`theory.prox`), the hats an exact unrolled inverse of the prox Hessian.

Outputs (T32): test on fresh, unselected sequences; linear closed form
T(T+1)[Δ_eff(c) + q0*² + q² − 2m²] (clean: − T(T+1)Δ'/2); softmax by MC over the frozen draws.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from ..gaussian import seed_key
from .. import engine
from ..config import Config
from ..solver_constants import RS_DOUBT_MULTIMIN, STEIN_THRESHOLD
from ..states import FinetuneState, PretrainState
from . import noise
from .lora_channel import (UNIT_KEYS, _channel_fn, _draws, _Setup, _sigma,  # noqa: F401
                           _test_fn, antithetic_units)

__all__ = ["solve", "solve_linear_reduced", "solve_curve", "test_error_mc", "linear_test_error",
           "LoraChannel", "RS_DOUBT_MULTIMIN", "STEIN_THRESHOLD"]


# ------------------------------------------------------------------------------------------------
# the channel (T28–T32) on the engine's protocol
# ------------------------------------------------------------------------------------------------
def _sanitize(x, q0):
    q = max(float(x[0]), 0.0)
    m = min(abs(float(x[1])), (1 - 1e-12) * math.sqrt(q * q0))
    v = max(float(x[2]), 1e-12)
    return q, m, v


def _hats(S: _Setup, means: dict, q: float, m: float, v: float, force_stein: bool = False):
    """(T30) hats from the sample means; Stein forms when the multi-minimum fraction ≥ 1e-3, or
    always with ``force_stein`` (the retry of a stalled derivative-form iteration, §9)."""
    al, q0 = S.alpha, S.q0
    sp = math.sqrt(max(q0 - (m * m / q if q > 0 else 0.0), 0.0))
    qhat = al * float(means["f2"])
    stein = (force_stein or float(means["multimin"]) >= STEIN_THRESHOLD) and q > 1e-10 \
        and sp > 1e-8
    if stein:
        mhat = al * float(means["feta"]) / sp
        vhat0 = -(al / math.sqrt(q)) * (float(means["fxi"])
                                        - m / (sp * math.sqrt(q)) * float(means["feta"]))
    else:
        mhat = al * float(means["divz"])
        vhat0 = -al * float(means["divw"])
    vhat = vhat0 + 2 * al * float(means["dq"])
    return qhat, mhat, vhat, stein


def _prior(S: _Setup, qhat, mhat, vhat):
    """(T31) ridge prior."""
    den = max(2 * S.lam + vhat, 1e-10)
    v = 1.0 / den
    return np.array([(S.q0 * mhat ** 2 + qhat) * v * v, S.q0 * mhat * v, v])


class LoraBranches:
    """The branch bookkeeping the symmetric and general LoRA channels share (engine protocol,
    :mod:`theory.engine.channel`): the label by overlap, distinct fixed points by (q, m), and the
    "RS doubtful" flag (λ_AT ≥ 1 or multi-minimum fraction > RS_DOUBT_MULTIMIN, §9)."""

    def label(self, r):
        return _label(r)

    def distinct(self, a, b):
        return _distinct(a, b)

    def doubt(self, r):
        if not r["rs_doubtful"]:
            return None
        return (f"RS doubtful: lambda_AT = {r['lambda_AT']:.3g}, multi-minimum fraction "
                f"{r['frac_multimin']:.3g} (the 1RSB ground state: hdlora one-rsb, symmetric "
                f"LoRA)")


class LoraChannel(LoraBranches):
    """Symmetric rank-one LoRA channel (T28–T32) for :func:`theory.engine.solve`: x = (q, m, v),
    hats (q̂, m̂, v̂), the jitted multistart prox of :mod:`.lora_channel`. Stateless apart from
    the frozen setup ``S`` of a (cfg, pre) pair."""

    stage = "fine-tuning"

    def __init__(self, S: _Setup, explicit_q: bool = True):
        self.S, self.explicit_q = S, explicit_q
        self._run = _channel_fn(S.kind, S.beta, S.T, explicit_q)

    def draws(self, key):
        return self.S.data(key)

    def cold_warm(self, data):
        return jnp.zeros((self.S.n, self.S.T))

    def sanitize(self, x):
        return np.array(_sanitize(x, self.S.q0))

    def means(self, x, warm, data, full):
        return self._run(jnp.array(x), self.S.q0, warm, data, full=full)

    def hats(self, x, means, force_stein):
        q, m, v = (float(t) for t in x)
        *h, stein = _hats(self.S, means, q, m, v, force_stein)
        return tuple(h), stein

    def prior(self, hats):
        return _prior(self.S, *hats)

    def units(self, means):
        """(keys, per-unit values) for the linear-response MC error (:mod:`theory.engine.
        linear_response`): the antithetic pairs (i, i + n/2) of the MC draws are the independent
        units; None for QMC draws (not independent)."""
        if self.S.sampling != "mc" or "samples" not in means:
            return None
        return UNIT_KEYS, antithetic_units(np.stack([means["samples"][k] for k in UNIT_KEYS], 1))

    def record(self, x, hats, means, stein):
        """T31–T32 at a solved point: objective α'·train + λ'q (= φ at the saddle), φ_var, λ_AT
        and the prox fractions of the flags."""
        S = self.S
        q, m, v = (float(t) for t in x)
        qhat, mhat, vhat = hats
        al, lam, q0 = S.alpha, S.lam, S.q0
        train = float(means["train"])
        objective = al * train + lam * q
        phi = (0.5 * qhat * v - 0.5 * vhat * q + mhat * m
               - (q0 * mhat ** 2 + qhat) / (2 * (vhat + 2 * lam)) + al * float(means["F"]))
        lam_at = al * float(means["at"])
        frac_multimin = float(means["multimin"])
        return dict(q=q, m=m, v=v, qhat=qhat, mhat=mhat, vhat=vhat, train=train,
                    objective=objective, phi=phi, phi_minus_objective=phi - objective,
                    lambda_AT=lam_at, frac_nonconvex=float(means["nonconvex"]),
                    frac_multimin=frac_multimin, frac_prox_unconverged=float(means["unconv"]),
                    stein_hats=stein, overlap=(m / math.sqrt(q * q0) if q > 0 else 0.0),
                    rs_doubtful=bool(lam_at >= 1.0 or frac_multimin > RS_DOUBT_MULTIMIN))

    def outputs(self, branch, data):
        return _metrics_of(self.S, data, branch.record)



def _test_errors(S: _Setup, data: dict, q: float, m: float):
    """T32 on fresh unselected sequences: (test, clean, se_test, se_clean) for this draw."""
    if S.linear:
        t = linear_test_error(S.cfg, S.pre, S.c, q, m)
        return t, t - S.T * (S.T + 1) * S.dp / 2, 0.0, 0.0
    return _mc_test(S, data, q, m)


def _test_samples(S: _Setup, data: dict, q: float, m: float):
    """Per-sample T32 test errors (noisy, clean) on this draw's fresh arrays."""
    kind = "softmax" if S.cfg.model.attention == "softmax" else "linear"
    e, ec = _test_fn(kind, S.beta, S.T)(q, m, S.q0, data["xi_t"], data["eta"], data["St"],
                                        data["Ht"], data["Nt"])
    return np.asarray(e), np.asarray(ec)


def _mean_se(a) -> tuple[float, float]:
    """Sample mean and its standard error."""
    return float(a.mean()), float(a.std(ddof=1) / math.sqrt(a.size))


def _mc_test(S: _Setup, data: dict, q: float, m: float):
    (t, se), (tc, sec) = (_mean_se(a) for a in _test_samples(S, data, q, m))
    return t, tc, se, sec


def linear_test_error(cfg: Config, pre: PretrainState, c: float, q: float, m: float) -> float:
    """(T32) linear closed form T(T+1)[Δ_eff(c) + q0*² + q² − 2m²] (exact Wick algebra)."""
    T, q0 = cfg.model.T, cfg.finetune.q0star
    return float(T * (T + 1) * (noise.delta_eff(cfg, pre, c) + q0 * q0 + q * q - 2 * m * m))


def test_error_mc(cfg: Config, pre: PretrainState, q: float, m: float, *, key, c=None):
    """MC of the fresh-sample formula of T32 (any σ): (test, clean, se, se_clean)."""
    S = _Setup(cfg, pre, c=c)
    return _mc_test(S, S.data(key), q, m)


# ------------------------------------------------------------------------------------------------
# starts, branch records, the state
# ------------------------------------------------------------------------------------------------
def _initial_points(S: _Setup):
    q0 = S.q0
    v0 = 1.0 / (2 * S.lam + 4.0 * S.alpha * S.T + 1.0)
    qi = q0
    return [("informative", np.array([qi, 0.9 * math.sqrt(qi * q0), v0])),
            ("uninformative", np.array([0.5 * q0, 1e-3 * math.sqrt(0.5) * q0, v0]))]


def _distinct(a: dict, b: dict, tol: float = 1e-3) -> bool:
    return abs(a["q"] - b["q"]) > tol * (1 + abs(a["q"])) or \
        abs(a["m"] - b["m"]) > tol * (1 + abs(a["m"]))


def _label(r: dict) -> str:
    return "informative" if r["overlap"] > 0.05 else "uninformative"


def _metrics_of(S, data, r):
    """One repeat's metric row (T32); ``_se``: within-draw errors of the sampled test formula;
    ``_samples``: its values per antithetic pair (the direct term of the linear-response error,
    :mod:`theory.engine.linear_response`)."""
    row = dict(q=r["q"], m=r["m"], overlap=r["overlap"], train_error=r["train"],
               objective=r["objective"])
    if S.linear:
        t, tc, _, _ = _test_errors(S, data, r["q"], r["m"])
        return dict(row, test_error=t, test_error_clean=tc)
    e, ec = _test_samples(S, data, r["q"], r["m"])
    (t, se), (tc, sec) = _mean_se(e), _mean_se(ec)
    row.update(test_error=t, test_error_clean=tc, _se=dict(test_error=se, test_error_clean=sec),
               _samples=dict(test_error=antithetic_units(e),
                             test_error_clean=antithetic_units(ec)))
    return row


def _aggregate(S: _Setup, rows) -> tuple[dict, dict]:
    """Metrics averaged over the MC repeats with their errors (:func:`theory.engine.aggregate`),
    plus baseline_error and q0star."""
    mean, err = engine.aggregate(rows)
    base, _, base_e, _ = noise.baseline_error(S.cfg, S.pre, S.c)
    metrics = dict(mean, q0star=S.q0, baseline_error=base)
    err.update(baseline_error=base_e, q0star=0.0, delta_eff_train=S.delta_eff_train_err)
    return metrics, err


def _branch_record(r: dict) -> dict:
    keep = ("q", "m", "v", "overlap", "objective", "train", "phi", "phi_minus_objective",
            "lambda_AT", "frac_nonconvex", "frac_multimin", "stein_hats", "stein_retry",
            "rs_doubtful", "converged", "result", "iterations", "label", "start")
    return {k: r[k] for k in keep}


def _state_from(S: _Setup, best: dict, branches, rows, extra_solver, flags):
    metrics, err = _aggregate(S, rows)
    return FinetuneState(q=metrics["q"], m=metrics["m"], v=best["v"], qhat=best["qhat"],
                         mhat=best["mhat"], vhat=best["vhat"], c=S.c, delta_eff=S.delta_eff,
                         delta_eff_train=S.delta_eff_train, metrics=metrics, mc_err=err,
                         solver=dict(extra_solver), branches=tuple(branches), flags=tuple(flags))


def _starts(S: _Setup, init=None):
    starts = [engine.Start(n, x) for n, x in _initial_points(S)]
    if getattr(init, "solution", None) is not None:
        return starts                  # continued from the engine solution (_solve_setup)
    if init is not None:
        x = np.array([init.q, init.m, init.v]) if hasattr(init, "q") else np.asarray(init, float)
        starts = [engine.Start("init", x, continuation=True)] + starts
    return starts


def _solve_setup(S: _Setup, *, init=None, repeats=None, explicit_q=True) -> FinetuneState:
    settings = engine.Settings.from_config(S.cfg, repeats=repeats)
    sol = engine.solve(LoraChannel(S, explicit_q), settings,
                       seed_key(S.cfg.theory.seed), _starts(S, init),
                       previous=getattr(init, "solution", None))
    best = sol.best.record
    extra = dict(converged=sol.stats["converged"], result=best["result"],
                 result_code=sol.result, iterations=best["iterations"],
                 residual=float(best["residual"]), seconds=sol.stats["seconds"],
                 branch=best["label"], n_branches=len(sol.branches), lambda_AT=best["lambda_AT"],
                 frac_nonconvex=best["frac_nonconvex"], frac_multimin=best["frac_multimin"],
                 stein_hats=best["stein_hats"], phi=best["phi"],
                 phi_minus_objective=best["phi_minus_objective"], rs_doubtful=best["rs_doubtful"],
                 mc_repeats=settings.repeats, stein_retries=sol.stats["stein_retries"],
                 explicit_q_term=explicit_q, kind=S.kind, continued=sol.stats["continued"],
                 mc_err_spread=sol.stats["mc_err_parts"].get("spread"),
                 mc_err_linear_response=sol.stats["mc_err_parts"].get("linear_response"))
    return dataclasses.replace(
        _state_from(S, best, [_branch_record(r) for r in sol.branches], sol.repeats, extra,
                    sol.flags), solution=sol)


def solve(cfg: Config, pre: PretrainState, *, init=None, repeats: int | None = None,
          explicit_q: bool = True) -> FinetuneState:
    """RS fixed point T28–T31 (σ ∈ {linear, softmax(β)}) and the outputs T32.

    Branches from an informative (m = 0.9√(q q0*)) and an uninformative (m ≈ 0) start (and
    ``init``: (q, m, v), or a neighbouring point's FinetuneState, continued per MC repeat and per
    sample from its engine solution, :func:`theory.engine.solve`); the global one has the lowest free energy φ (= the
    training objective α'·train + λ'q at the saddle). ``repeats`` (default cfg.theory.mc_repeats)
    independent frozen samples give the MC errors. ``explicit_q=False`` drops the explicit-q
    term of T30 (for the test that shows it matters only).
    ``finetune.recalibrate = "learned"``: see :func:`solve_learned_c`.
    """
    if cfg.finetune.recalibrate == "learned":
        from .lora_curve import solve_learned_c

        return solve_learned_c(cfg, pre, init=init, repeats=repeats, explicit_q=explicit_q)
    return _solve_setup(_Setup(cfg, pre), init=init, repeats=repeats, explicit_q=explicit_q)


def solve_linear_reduced(cfg: Config, pre: PretrainState, *, init=None, repeats=None,
                         explicit_q: bool = True, delta: float | None = None) -> FinetuneState:
    """Linear σ, reduced form (T28): ℓ' = ‖A − zzᵀ‖²_F, A = ζζᵀ − q0*I + √Δ G + qI with Δ =
    Δ_eff_train (or ``delta``); analytic gradient/Hessian (T29) and derivative hats (T30)."""
    if cfg.model.attention != "linear":
        raise ValueError("solve_linear_reduced needs model.attention = 'linear'")
    S = _Setup(cfg, pre, reduced=True, delta_train=delta)
    return _solve_setup(S, init=init, repeats=repeats, explicit_q=explicit_q)


# learned c and continuation live in lora_curve (same protocol); re-exported here
def __getattr__(name):
    """``solve_curve``, ``solve_learned_c``, ``LEARNED_C_XTOL`` live in :mod:`.lora_curve` (which
    imports this module); re-exported lazily so either module can be imported first."""
    if name in ("LEARNED_C_XTOL", "solve_curve", "solve_learned_c"):
        from . import lora_curve

        return getattr(lora_curve, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
