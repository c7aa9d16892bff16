"""Config -> predicted metrics in the shared results schema (the one entry point of the theory).

:func:`predict` solves pre-training (THEORY.md §3), then fine-tuning (§4–§7) from the
pre-training order parameters, and returns::

    {"config": {...},
     "pretrain": {SHORT_NAME: {"value": x, "mc_err": e}},   # theory/schema.py names
     "finetune": {...}, "delta_eff": {...}, "delta_eff_train": {...},
     "bayes_finetune": {...} | None,   # Bayes-optimal bound (T38-T40), with bayes_bound=True
     "solver": {"pretrain": {...}, "finetune": {...}, "branches": [...]},
     "flags": [...], "meta": {...provenance, "seconds"}}

``mc_err`` is the Monte-Carlo standard error: 0.0 for closed forms, ``None`` when it cannot be
estimated (see :func:`_entry`: a missing or NaN error, or a single MC repeat, is never reported
as 0.0). ``flags`` collects every
warning of the solvers (non-converged, RS doubtful, ...); :func:`converged` says whether every
solver reached its tolerance, and the CLI turns ``False`` into a non-zero exit status.
"""

from __future__ import annotations

import math
import time
from dataclasses import replace

from .config import Config, FinetuneConfig
from .provenance import provenance
from .schema import FINETUNE_METRICS, PRETRAIN_METRICS
from .states import FinetuneState, PretrainState

__all__ = ["predict", "predict_states", "predict_pretraining", "predict_finetuning",
           "pretrain_state_from_measured", "predict_bayes_bound", "merge_bayes_bound", "bayes_bound_key", "pretrain_key",
           "converged", "continuation_start"]


#: metrics fixed by the config alone (q0* a field, Q0 the teacher norm): exact whatever the MC
_EXACT = frozenset({"q0star", "Q0"})


def _single_repeat(state) -> bool:
    """True when a state was averaged over one MC repeat: the spread over repeats, the MC
    error of every sampled metric, cannot be estimated from it."""
    return (state.solver or {}).get("mc_repeats") == 1


def _error(errors: dict, key: str, single: bool):
    """An honest MC error: ``None`` (unknown) for a missing or non-finite error, and for an
    error reported as exactly 0 by a single-repeat solve of a metric that is not exact."""
    err = _float(errors.get(key))
    if err is None or not math.isfinite(err):
        return None
    if err == 0.0 and single and key not in _EXACT:
        return None
    return err


def _entry(metrics: dict, errors: dict, key: str, single: bool = False) -> dict:
    """``{"value", "mc_err"}`` of one metric; ``single``: the state is one MC repeat."""
    return {"value": _float(metrics.get(key, math.nan)), "mc_err": _error(errors, key, single)}


#: fine-tuning-block metrics that are closed forms in the pre-training (Q, M, Q0) and c unless the
#: solver samples them (T27: the frozen model's error); Δ_eff and Δ_eff,train (T25, T35) are
#: top-level entries of the same kind, built with :func:`_frozen_entry` where they are written
_FROZEN = ("baseline_error",)


def _frozen_entry(value, cfg: Config, pre: PretrainState, fin: FinetuneState, key: str) -> dict:
    """Δ_eff / Δ_eff,train / baseline_error: closed forms in the pre-training (Q, M, Q0, V) and c
    (T25, T27, T35) unless the solver sampled them. Their MC error is the solver's own (where it
    sampled them, e.g. the T34 residual) combined in quadrature with the pre-training MC errors
    propagated linearly through the closed form (:func:`_propagated`); 0 only when every input is
    exact, None (unknown) when an input's error is unknown."""
    reported = _float(fin.mc_err.get(key))
    own = reported if reported is not None and math.isfinite(reported) and reported > 0 else 0.0
    prop = _propagated(cfg, pre, key)
    if prop is None:
        single = _single_repeat(pre)
        inputs_exact = all(_error(pre.mc_err, k, single) == 0.0 for k in ("Q", "M", "Q0"))
        exact = inputs_exact and cfg.finetune.recalibrate != "learned"
        err = own if own > 0 else (0.0 if exact else None)
        return {"value": _float(value), "mc_err": err}
    return {"value": _float(value), "mc_err": math.hypot(own, prop)}


def _propagated(cfg: Config, pre: PretrainState, key: str):
    """Linear propagation of the pre-training MC errors of (Q, M, Q0, V) through Δ_eff (T25) or
    the closed-form Δ_eff,train (T35, T37): √Σ_k (∂f/∂k σ_k)², central differences. The Q–M
    covariance is ignored: Q and M errors are positively correlated and enter Δ_eff with
    opposite signs (−2cM + c²Q), so this over-estimates the error (conservative). None when f has
    no closed form here (sampled T34 residual, learned c, baseline) or an input error is unknown."""
    from .finetuning import noise

    if key not in ("delta_eff", "delta_eff_train") or cfg.finetune.recalibrate == "learned":
        return None
    fn = noise.delta_eff if key == "delta_eff" else noise.delta_eff_train

    def f(state):
        return fn(cfg, state, noise.resolve_c(cfg, state))

    total = 0.0
    try:
        for name in ("Q", "M", "Q0", "V"):
            if name not in pre.mc_err:
                continue
            err = _error(pre.mc_err, name, _single_repeat(pre))
            if err is None:
                return None
            if err == 0.0:
                continue
            x = float(getattr(pre, name))
            h = 1e-6 * max(1.0, abs(x))
            hi, lo = replace(pre, **{name: x + h}), replace(pre, **{name: x - h})
            total += ((f(hi) - f(lo)) / (2 * h) * err) ** 2
    except (NotImplementedError, ValueError):
        return None
    return math.sqrt(total)


def _float(x):
    if x is None:
        return None
    return float(x)


def _general_pretraining(cfg: Config) -> bool:
    """True when :func:`theory.pretraining.solve_pretraining` dispatches to the RS iteration
    (:func:`theory.pretraining.general.solve`, softmax), the one solve a start can shorten; the
    linear direct / factorized ones are closed forms, the Bayes one a state evolution."""
    return cfg.pretrain.estimator != "bayes" and cfg.model.attention != "linear"


def predict_pretraining(cfg: Config, *, start: PretrainState | None = None) -> PretrainState:
    """Pre-training fixed point (dispatch in :mod:`theory.pretraining`). ``start``: a
    neighbouring point's state to start the RS iteration from (continuation; used where the
    solver iterates, ignored for the closed forms); the state records it in ``solver["start"]``."""
    if start is not None and _general_pretraining(cfg):
        from .pretraining import general

        state = general.solve(cfg, init=start)
        return replace(state, solver={**state.solver,
                                      "start": [float(start.Q), float(start.M), float(start.V)]})
    from .pretraining import solve_pretraining

    return solve_pretraining(cfg)


def continuation_start(result) -> tuple[float, float, float] | None:
    """The fine-tuning start a neighbouring point gives (continuation along a curve): (q, m, v)
    of the branch it selected, on its first MC draw (the draw the next point's branch search
    uses too), from a :func:`predict` result, a stored sweep record's ``diagnostics`` or a
    ``FinetuneState``; None where there is none to continue (the solve failed or did not
    converge, general u vᵀ LoRA, whose start needs the full 2 × 2 order parameters)."""
    if result is None:
        return None
    if isinstance(result, FinetuneState):
        return (float(result.q), float(result.m), float(result.v)) \
            if result.solver.get("converged", True) and "order_parameters" not in result.solver \
            else None
    solver = (result or {}).get("solver") or {}
    fin, branches = solver.get("finetune") or {}, solver.get("branches") or []
    if not branches or not fin.get("converged") or str(fin.get("kind", "")).startswith("general"):
        return None
    best = branches[0]   # sorted by objective: the selected (global) branch
    try:
        q, m, v = (float(best[k]) for k in ("q", "m", "v"))
    except (KeyError, TypeError, ValueError):
        return None
    return (q, m, v) if all(map(math.isfinite, (q, m, v))) and q > 0 and v > 0 else None


def predict_finetuning(cfg: Config, pre: PretrainState, *, start=None) -> FinetuneState:
    """LoRA RS fixed point fed by the pre-training order parameters: symmetric w wᵀ (T28–T32)
    or general u vᵀ (T33). ``start``: (q, m, v) of a neighbouring point (see
    :func:`continuation_start`), or its ``FinetuneState`` (then continued per MC repeat and per
    sample from the neighbour's engine solution), solved first; once it converges it stands in
    for the cold start of its branch's label, while the other label's start still runs as a
    branch search (:func:`theory.engine.find_branches`), so the choice by free energy and the
    "several fixed points" flag still see both branches (symmetric LoRA only; the general u vᵀ
    solve ignores it)."""
    if cfg.finetune.lora == "general":
        from .finetuning import general_lora

        return general_lora.solve(cfg, pre)
    from .finetuning import lora

    if isinstance(start, FinetuneState) and start.solution is not None:
        # the engine continues the neighbour's selected branch (dropped if it does not converge)
        init, qmv = start, tuple(float(t) for t in start.solution.best.x)
    elif isinstance(start, FinetuneState):
        init = qmv = continuation_start(start)
    else:
        init = qmv = None if start is None else tuple(map(float, start))
    state = lora.solve(cfg, pre, init=init)
    return replace(state, solver={**state.solver,
                                  "start": None if qmv is None else list(map(float, qmv))})


def pretrain_state_from_measured(pre: PretrainState, *, Q: float, M: float, Q0: float,
                                 tau_hat: float | None = None) -> PretrainState:
    """The theory's pre-training state with (Q, M, Q0) replaced by values measured on a given Ŝ
    (issue 4: fine-tuning theory fed by measured order parameters). V and the hats are kept."""
    return replace(pre, Q=float(Q), M=float(M), Q0=float(Q0),
                   tau_hat=pre.tau_hat if tau_hat is None else float(tau_hat),
                   flags=pre.flags + ("fine-tuning fed by measured (Q, M, Q0)",))


def predict(cfg: Config, *, pre: PretrainState | None = None, bayes_bound: bool = False,
            stages: tuple[str, ...] = ("pretrain", "finetune"), start=None,
            pre_start: PretrainState | None = None) -> dict:
    """Every metric of MODEL.md §4 predicted for ``cfg`` (see the module docstring).

    Continuation along a curve: ``start`` is a neighbouring point's :func:`predict` result (or
    its (q, m, v), :func:`continuation_start`, or its ``FinetuneState`` from
    :func:`predict_states`, which continues every MC repeat and every sample's prox) for the
    fine-tuning solve, ``pre_start`` a neighbouring pre-training state (used when ``pre`` is not
    given); each point keeps its own branch search over the other label and its own flags
    (:func:`predict_finetuning`)."""
    return predict_states(cfg, pre=pre, bayes_bound=bayes_bound, stages=stages, start=start,
                          pre_start=pre_start)[0]


def predict_states(cfg: Config, *, pre: PretrainState | None = None, bayes_bound: bool = False,
                   stages: tuple[str, ...] = ("pretrain", "finetune"), start=None,
                   pre_start: PretrainState | None = None):
    """:func:`predict`, returning ``(result, pre, fin)``: the result and the solved states
    (``fin`` None without the fine-tuning stage), which a curve passes on to its next point
    (``start=fin``, ``pre_start=pre``)."""
    t_start = time.perf_counter()
    out: dict = {"config": cfg.to_dict(), "solver": {}, "flags": []}
    if start is not None and not (isinstance(start, tuple) and len(start) == 3) and \
            not isinstance(start, FinetuneState):
        start = continuation_start(start)
    if pre is None:
        pre = predict_pretraining(cfg, start=pre_start)
    out["pretrain"] = {k: _entry(pre.metrics, pre.mc_err, k, _single_repeat(pre))
                       for k in PRETRAIN_METRICS}
    out["solver"]["pretrain"] = dict(pre.solver)
    out["flags"] += [f"pretrain: {f}" for f in pre.flags]
    out["finetune"] = None
    out["delta_eff"] = out["delta_eff_train"] = None
    out["bayes_finetune"] = None
    fin = None
    if "finetune" in stages:
        fin = predict_finetuning(cfg, pre, start=start)
        out["finetune"] = {k: _entry(fin.metrics, fin.mc_err, k, _single_repeat(fin))
                           for k in FINETUNE_METRICS}
        for k in _FROZEN:
            if k in fin.metrics:
                out["finetune"][k] = _frozen_entry(fin.metrics[k], cfg, pre, fin, k)
        for k in ("delta_eff", "delta_eff_train"):
            out[k] = _frozen_entry(getattr(fin, k), cfg, pre, fin, k)
        out["solver"]["finetune"] = dict(fin.solver)
        out["solver"]["branches"] = [dict(b) for b in fin.branches]
        out["solver"]["recalibration_c"] = float(fin.c)
        out["flags"] += [f"finetune: {f}" for f in fin.flags]
        if bayes_bound:
            merge_bayes_bound(out, predict_bayes_bound(cfg, pre))
    out["meta"] = {**provenance(), "seconds": time.perf_counter() - t_start}
    return out, pre, fin


def predict_bayes_bound(cfg: Config, pre: PretrainState) -> dict:
    """The Bayes-optimal fine-tuning bound (T38–T40) as a block of :func:`predict`'s result:
    ``{"bayes_finetune": {metric: entry}, "solver": {...}, "flags": [...]}``. It does not read
    ``finetune.lam``, ``finetune.lora`` or ``finetune.recalibrate`` (see :func:`bayes_bound_key`),
    so a sweep solves it once for every λ′ that shares the rest."""
    from .finetuning import bayes as bayes_finetune

    bo = bayes_finetune.solve(cfg, pre)
    return {"bayes_finetune": {k: _entry(bo.metrics, bo.mc_err, k, _single_repeat(bo))
                               for k in ("q", "m", "overlap", "test_error", "test_error_clean")},
            "solver": dict(bo.solver), "flags": [f"bayes_finetune: {f}" for f in bo.flags]}


def merge_bayes_bound(result: dict, bound: dict) -> dict:
    """Put a :func:`predict_bayes_bound` block into a :func:`predict` result (in place)."""
    result["bayes_finetune"] = bound["bayes_finetune"]
    result["solver"]["bayes_finetune"] = bound["solver"]
    result["flags"] += list(bound["flags"])
    return result


def pretrain_key(cfg: Config) -> str:
    """Digest of what the pre-training theory reads (model, pretrain, theory): configs sharing it
    share one :func:`predict_pretraining` solve."""
    return cfg.digest(sections=("model", "pretrain", "theory"))


def bayes_bound_key(cfg: Config) -> str:
    """Digest of what the Bayes bound reads: the theory sections with the fine-tuning fields that
    only the LoRA estimator uses (λ′, LoRA kind, recalibration) set to their defaults."""
    default = FinetuneConfig()
    finetune = replace(cfg.finetune, lam=default.lam, lora=default.lora,
                       recalibrate=default.recalibrate)
    return replace(cfg, finetune=finetune).digest(sections=("model", "pretrain", "finetune",
                                                             "theory"))


def converged(result: dict, blocks: tuple[str, ...] | None = None) -> bool:
    """True when every solver block of a :func:`predict` result (or those named in ``blocks``:
    "pretrain", "finetune", "bayes_finetune") reports convergence."""
    blocks = [v for k, v in result.get("solver", {}).items() if isinstance(v, dict)
              and (blocks is None or k in blocks)]
    return all(b.get("converged", True) for b in blocks)
