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
Prox (T29): ẑ = argmin |z − ω|²/(2v) + ℓ'(z; q), f = (ẑ − ω)/v (:mod:`.prox_vec`).
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

Solve protocol (constants in :mod:`theory.solver_constants`; §9): per branch, phase 1 iterates
the warm-start-only map (each sample's Newton prox started at its previous ẑ; Anderson, damping,
stall detection), then one step of the full multi-start map (ω, ±top eigenvector, warm) checks
that no sample's best minimum changed (else phase 1 resumes from the minima it chose, up to
``PHASE2_ROUNDS`` rounds, then "stalled" and the Stein-form retry); the last full evaluation is
the reported one. Branch search from a second start stops at ``BRANCH_SEARCH_CAP`` iterations, or
earlier when its residual rate says it cannot converge by then ("slow"). MC repeats start at the
solved point. ``theory.max_iter`` caps each branch solve (phases and Stein retry together).
Newton steps use a modified L D Lᵀ factorisation (:mod:`.prox_vec`), the hats an exact unrolled
inverse of the prox Hessian.

Outputs (T32): test on fresh, unselected sequences; linear closed form
T(T+1)[Δ_eff(c) + q0*² + q² − 2m²] (clean: − T(T+1)Δ'/2); softmax by MC over the frozen draws.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time

import jax
import jax.numpy as jnp
import numpy as np

from ..config import Config
from ..fixed_point import damped_fixed_point
from ..gaussian import goe
from ..states import FinetuneState, PretrainState
from . import noise, reuse, selection
from .lora_channel import _channel_fn, _draws, _Setup, _sigma, _test_fn  # noqa: F401

__all__ = ["solve", "solve_linear_reduced", "solve_curve", "test_error_mc", "linear_test_error",
           "RS_DOUBT_MULTIMIN", "STEIN_THRESHOLD"]

from ..solver_constants import (ANDERSON_MEMORY, BRANCH_SEARCH_CAP, BRANCH_SEARCH_SLOW,  # noqa: E402
                                PHASE2_ROUNDS, REPEAT_CAP_FACTOR, RS_DOUBT_MULTIMIN,
                                STALL_ITERATIONS, STEIN_THRESHOLD)


# ------------------------------------------------------------------------------------------------
# one branch
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


def _solve_branch(S: _Setup, data: dict, x0, warm0=None, *, explicit_q: bool = True,
                  max_iter: int | None = None, slow: int | None = None,
                  discard_unconverged: bool = False):
    cfg = S.cfg
    run = _channel_fn(S.kind, S.beta, S.T, explicit_q)
    state = dict(warm=(jnp.zeros((S.n, S.T)) if warm0 is None else warm0),
                 full=warm0 is None)

    def evaluate(x, full):
        q, m, v = _sanitize(x, S.q0)
        means, z = run(jnp.array([q, m, v]), S.q0, state["warm"], data, full=full)
        state["warm"] = z
        state["last"] = ((q, m, v), means, full)
        return (q, m, v), means

    def step(x):
        # the first call of a cold branch needs every start; then warm polish (phase 1) or
        # the full multi-start map (phase 2)
        full, state["full"] = state["full"], state["phase2"]
        (q, m, v), means = evaluate(x, full)
        return _prior(S, *_hats(S, means, q, m, v, state["force_stein"])[:3])

    t0 = time.perf_counter()
    cap = max_iter if max_iter is not None else cfg.theory.max_iter
    tol = cfg.theory.tol

    def two_phases(x_start, first_full, budget):
        # phase 1: warm-start-only prox (cheap), Anderson-accelerated, to convergence; then one
        # step of the full multi-start map. If no sample's best minimum changed, that step is
        # within tol: the point is the fixed point of the full map. Otherwise phase 1 resumes
        # from the minima the full map chose (up to PHASE2_ROUNDS rounds, then "stalled": the
        # branch choice cycles). A phase 1 that does not converge is reported as such without
        # the (costly, equally failing) full step. ``budget`` caps all iterations together:
        # theory.max_iter caps the whole solve of a branch, Stein retry included.
        x, used, full_first = np.asarray(x_start, float), 0, first_full
        kw = dict(damping=cfg.theory.damping, tol=tol, anderson=ANDERSON_MEMORY)
        for _ in range(PHASE2_ROUNDS):
            state["phase2"], state["full"] = False, full_first
            sol1 = damped_fixed_point(step, x, max_iter=max(budget - used - 1, 1),
                                      stall=STALL_ITERATIONS, slow=slow, **kw)
            used += sol1.iterations
            if not sol1.converged or budget - used < 1:
                return dataclasses.replace(sol1, iterations=used)
            state["phase2"] = state["full"] = True
            sol2 = damped_fixed_point(step, sol1.value, max_iter=1, **kw)
            used += 1
            if sol2.converged:
                return dataclasses.replace(sol2, iterations=used)
            x, full_first = sol2.value, False
        return dataclasses.replace(sol2, result="stalled", iterations=used)

    state["force_stein"] = False
    state["last"] = None
    sol = two_phases(x0, warm0 is None, cap)
    stein_retry = False
    if sol.result == "stalled" and cap - sol.iterations >= 2:
        # a stall of the derivative-form map: a few samples near a fold of the prox (an
        # isolated second minimum) make the derivative hats jump between iterates. The Stein
        # forms hold for any measurable prox (they include the jumps): retry with them, from
        # the same start, within the iterations left; kept only if it converges (§9)
        state["force_stein"] = True
        retry = two_phases(x0, True, cap - sol.iterations)
        if retry.converged:
            sol, stein_retry = dataclasses.replace(
                retry, iterations=sol.iterations + retry.iterations), True
        else:
            state["force_stein"] = False
    if discard_unconverged and not sol.converged:   # a branch search the caller drops
        return dict(converged=False, result=sol.result, iterations=sol.iterations), None
    last = state["last"]
    xs = np.array(_sanitize(sol.value, S.q0))
    if (sol.converged and last is not None and last[2]
            and np.max(np.abs(xs - np.array(last[0]))) <= tol * (1.0 + np.max(np.abs(xs)))):
        # the last map evaluation was the full map at the previous iterate, within tol of the
        # fixed point: report that point with its sample means (no second full evaluation)
        (q, m, v), means = last[0], last[1]
    else:
        (q, m, v), means = evaluate(sol.value, True)
    qhat, mhat, vhat, stein = _hats(S, means, q, m, v, state["force_stein"])
    al, lam, q0 = S.alpha, S.lam, S.q0
    train = float(means["train"])
    objective = al * train + lam * q
    phi = (0.5 * qhat * v - 0.5 * vhat * q + mhat * m
           - (q0 * mhat ** 2 + qhat) / (2 * (vhat + 2 * lam)) + al * float(means["F"]))
    lam_at = al * float(means["at"])
    res = dict(q=q, m=m, v=v, qhat=qhat, mhat=mhat, vhat=vhat, train=train, objective=objective,
               phi=phi, phi_minus_objective=phi - objective, lambda_AT=lam_at,
               frac_nonconvex=float(means["nonconvex"]), frac_multimin=float(means["multimin"]),
               frac_prox_unconverged=float(means["unconv"]), stein_hats=stein,
               overlap=(m / math.sqrt(q * q0) if q > 0 else 0.0),
               stein_retry=stein_retry,
               converged=sol.converged, result=sol.result, iterations=sol.iterations,
               residual=sol.residual,
               seconds=time.perf_counter() - t0)
    res["rs_doubtful"] = bool(lam_at >= 1.0 or res["frac_multimin"] > RS_DOUBT_MULTIMIN)
    return res, state["warm"]


def _repeat_cap(S: _Setup, best: dict) -> int:
    """Iteration cap of an MC repeat, which starts at the solved point of another draw: a few
    times the iterations that point needed (a repeat that does not converge within it is
    reported as not converged, like any other)."""
    return int(min(S.cfg.theory.max_iter, max(100, REPEAT_CAP_FACTOR * best["iterations"])))


def _test_errors(S: _Setup, data: dict, q: float, m: float):
    """T32 on fresh unselected sequences: (test, clean, se_test, se_clean) for this draw."""
    if S.linear:
        t = linear_test_error(S.cfg, S.pre, S.c, q, m)
        return t, t - S.T * (S.T + 1) * S.dp / 2, 0.0, 0.0
    e, ec = _test_fn(S.kind, S.beta, S.T)(q, m, S.q0, data["xi_t"], data["eta"], data["St"],
                                          data["Ht"], data["Nt"])
    e, ec = np.asarray(e), np.asarray(ec)
    n = e.size
    return (float(e.mean()), float(ec.mean()), float(e.std(ddof=1) / math.sqrt(n)),
            float(ec.std(ddof=1) / math.sqrt(n)))


def linear_test_error(cfg: Config, pre: PretrainState, c: float, q: float, m: float) -> float:
    """(T32) linear closed form T(T+1)[Δ_eff(c) + q0*² + q² − 2m²] (exact Wick algebra)."""
    T, q0 = cfg.model.T, cfg.finetune.q0star
    return float(T * (T + 1) * (noise.delta_eff(cfg, pre, c) + q0 * q0 + q * q - 2 * m * m))


def test_error_mc(cfg: Config, pre: PretrainState, q: float, m: float, *, key, c=None):
    """MC of the fresh-sample formula of T32 (any σ): (test, clean, se, se_clean)."""
    S = _Setup(cfg, pre)
    if c is not None:
        S.c = float(c)
    S.linear = False  # force the Monte-Carlo path
    kind = "softmax" if cfg.model.attention == "softmax" else "linear"
    data = S.data(key)
    e, ec = _test_fn(kind, S.beta, S.T)(q, m, S.q0, data["xi_t"], data["eta"], data["St"],
                                        data["Ht"], data["Nt"])
    e, ec = np.asarray(e), np.asarray(ec)
    n = e.size
    return (float(e.mean()), float(ec.mean()), float(e.std(ddof=1) / math.sqrt(n)),
            float(ec.std(ddof=1) / math.sqrt(n)))


# ------------------------------------------------------------------------------------------------
# branches, global selection, repeats
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


def _find_branches(S: _Setup, data: dict, starts, *, explicit_q=True):
    """Solve from every start. The first start gets the full iteration cap; the others get
    BRANCH_SEARCH_CAP iterations: a start that has not converged by then is drifting (slowly,
    e.g. m growing from ~0) towards another fixed point and is not kept as a branch."""
    found = []
    for index, (name, x0, warm) in enumerate(starts):
        cap = None if index == 0 else min(BRANCH_SEARCH_CAP, S.cfg.theory.max_iter)
        # a second start abandons as soon as its rate predicts no convergence within the cap
        r, z = _solve_branch(S, data, x0, warm, explicit_q=explicit_q, max_iter=cap,
                             slow=None if index == 0 else BRANCH_SEARCH_SLOW,
                             discard_unconverged=index > 0)
        if index > 0 and not r["converged"]:
            continue
        r["start"] = name
        r["label"] = _label(r)
        if all(_distinct(r, f[0]) for f in found):
            found.append((r, z))
    found.sort(key=lambda rz: rz[0]["objective"])
    return found


def _aggregate(S: _Setup, rep_metrics) -> tuple[dict, dict]:
    """Metrics averaged over the MC repeats, with their errors (spread over repeats ⊕ the
    within-draw error of the sampled test formula), plus baseline_error and q0star."""
    keys = ["q", "m", "overlap", "train_error", "objective", "test_error", "test_error_clean"]
    mean = {k: float(np.mean([r[k] for r in rep_metrics])) for k in keys}
    R = len(rep_metrics)
    # one repeat: the spread over repeats cannot be estimated -> None (unknown), never 0.0;
    # the closed forms (linear test errors) are then unknown as well (they inherit q, m)
    err = {k: (float(np.std([r[k] for r in rep_metrics], ddof=1) / math.sqrt(R)) if R > 1
               else None) for k in keys}
    if not S.linear:   # add the within-draw MC error of the sampled test formula
        for k, kk in (("test_error", "se_test"), ("test_error_clean", "se_clean")):
            within = math.sqrt(np.mean([r[kk] ** 2 for r in rep_metrics]) / R)
            err[k] = math.sqrt(err[k] ** 2 + within ** 2) if err[k] is not None else None
    base, _, base_e, _ = noise.baseline_error(S.cfg, S.pre, S.c)
    metrics = dict(mean, q0star=S.q0, baseline_error=base)
    err.update(baseline_error=base_e, q0star=0.0,
               delta_eff_train=S.delta_eff_train_err)
    return metrics, err


def _flags(all_converged: bool, best: dict, n_found: int, stein_retries: int = 0) -> list[str]:
    """The diagnostics a fine-tuning state carries (never a silent doubtful answer)."""
    flags = []
    if not all_converged:
        flags.append("fine-tuning fixed point not converged")
    if stein_retries:
        flags.append(f"Stein hats after a stalled derivative-form iteration ({stein_retries} of "
                     "the solves: selected branch and MC repeats)")
    if best["rs_doubtful"]:
        flags.append(f"RS doubtful: lambda_AT = {best['lambda_AT']:.3g}, multi-minimum fraction "
                     f"{best['frac_multimin']:.3g}")
    if n_found > 1:
        flags.append(f"{n_found} fixed points found; the lowest objective is reported")
    return flags


def _state_from(S: _Setup, best: dict, branches, rep_metrics, extra_solver, flags):
    metrics, err = _aggregate(S, rep_metrics)
    return FinetuneState(q=metrics["q"], m=metrics["m"], v=best["v"], qhat=best["qhat"],
                         mhat=best["mhat"], vhat=best["vhat"], c=S.c, delta_eff=S.delta_eff,
                         delta_eff_train=S.delta_eff_train, metrics=metrics, mc_err=err,
                         solver=dict(extra_solver), branches=tuple(branches), flags=tuple(flags))


def _branch_record(r: dict) -> dict:
    keep = ("q", "m", "v", "overlap", "objective", "train", "phi", "phi_minus_objective",
            "lambda_AT", "frac_nonconvex", "frac_multimin", "stein_hats", "stein_retry",
            "rs_doubtful", "converged", "result", "iterations", "label", "start")
    return {k: r[k] for k in keep}


def _metrics_of(S, data, r):
    t, tc, se, sec = _test_errors(S, data, r["q"], r["m"])
    return dict(q=r["q"], m=r["m"], overlap=r["overlap"], train_error=r["train"],
                objective=r["objective"], test_error=t, test_error_clean=tc, se_test=se,
                se_clean=sec)


def _solve_setup(S: _Setup, *, init=None, repeats=None, explicit_q=True) -> FinetuneState:
    cfg = S.cfg
    t0 = time.perf_counter()
    key = jax.random.PRNGKey(cfg.theory.seed)
    data = S.data(key)
    starts = [(n, x, None) for n, x in _initial_points(S)]
    if init is not None:
        x = np.array([init.q, init.m, init.v]) if hasattr(init, "q") else np.asarray(init, float)
        starts = [("init", x, None)] + starts
    found = _find_branches(S, data, starts, explicit_q=explicit_q)
    best, zbest = found[0]
    branches = [_branch_record(r) for r, _ in found]
    reps = [_metrics_of(S, data, best)]
    R = cfg.theory.mc_repeats if repeats is None else repeats
    x_best = np.array([best["q"], best["m"], best["v"]])
    all_conv = best["converged"]
    retries = int(best.get("stein_retry", False))
    for i in range(1, R):
        d_i = S.data(jax.random.fold_in(key, i))
        r_i, _ = _solve_branch(S, d_i, x_best, None, explicit_q=explicit_q,
                               max_iter=_repeat_cap(S, best))
        all_conv &= r_i["converged"]
        retries += int(r_i.get("stein_retry", False))
        reps.append(_metrics_of(S, d_i, r_i))
    flags = _flags(all_conv, best, len(found), retries)
    extra = dict(converged=bool(all_conv), result=best["result"], iterations=best["iterations"],
                 residual=float(best["residual"]), seconds=time.perf_counter() - t0,
                 branch=best["label"], n_branches=len(found), lambda_AT=best["lambda_AT"],
                 frac_nonconvex=best["frac_nonconvex"], frac_multimin=best["frac_multimin"],
                 stein_hats=best["stein_hats"], phi=best["phi"],
                 phi_minus_objective=best["phi_minus_objective"], rs_doubtful=best["rs_doubtful"],
                 mc_repeats=R, explicit_q_term=explicit_q, kind=S.kind)
    return _state_from(S, best, branches, reps, extra, flags)


def solve(cfg: Config, pre: PretrainState, *, init=None, repeats: int | None = None,
          explicit_q: bool = True) -> FinetuneState:
    """RS fixed point T28–T31 (σ ∈ {linear, softmax(β)}) and the outputs T32.

    Branches from an informative (m = 0.9√(q q0*)) and an uninformative (m ≈ 0) start (and
    ``init``, a FinetuneState or (q, m, v)); the global one has the lowest free energy φ (= the
    training objective α'·train + λ'q at the saddle). ``repeats`` (default cfg.theory.mc_repeats)
    independent frozen samples give the MC errors. ``explicit_q=False`` drops the explicit-q
    term of T30 (for the test that shows it matters only).
    ``finetune.recalibrate = "learned"``: see :func:`solve_learned_c`.
    """
    if cfg.finetune.recalibrate == "learned":
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
from .lora_curve import LEARNED_C_XTOL, solve_curve, solve_learned_c  # noqa: E402,F401
