"""Downstream-aware optimal pre-training (THEORY.md §4, "Optimal pre-training").

Pre-training reaches fine-tuning only through the pre-training order parameters (Δ_eff for linear
attention, T25; (Q, M) for softmax, T26), so the pre-training that minimises the fine-tuning test
error need not minimise the pre-training test error. :func:`optimize_pretraining` scans the
requested pre-training choices with the theory, refines continuous ones (``pretrain.lam``,
``pretrain.kappa``) by Brent's method in log scale on the bracket of the best grid point and its
neighbours (to the resolution of a golden-section search of ``refine_steps`` steps), and reports,
for each criterion, the optimal choice and every metric there:

* ``finetune.test_error`` (min) and ``finetune.overlap`` (max) — downstream;
* ``pretrain.test_error`` (min) and ``pretrain.mse`` (min) — pre-training.

Exact statement for linear attention with c = 1: Δ_eff = Δ'/2 + mse and the pre-training test
error is T(T+1)(mse + Δ/2) (T11, T25), so the pre-training-optimal and the downstream-optimal λ
coincide whenever the fine-tuning test error increases with Δ_eff. With recalibration
(c = M/Q) Δ_eff = Δ'/2 + Q0 − M²/Q is minimised by maximising M²/Q, which in general is not the
minimiser of mse: the optima differ.

Cost (issue 13): the pre-training criteria need only the pre-training solve, so their search
evaluates that stage alone (the fine-tuning is solved once more at each criterion's optimum, so
every reported optimum carries the downstream metrics); the pre-training state of each λ is
kept and shared; each new solve starts from the nearest evaluated choice (continuation in log
scale over the continuous fields, same categorical values): the pre-training iteration from its
state, the fine-tuning from its solution, as one more start — each point still runs its own
branch search and flags (:func:`theory.predict.predict_finetuning`). ``progress(text)`` is
called after every evaluated point (the CLI prints it to stderr).
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass

import numpy as np

from ..config import Config
from ..predict import converged, predict_pretraining, predict_states

__all__ = ["CRITERIA", "optimize_pretraining", "OptimalPretraining"]

#: criterion -> (metric, sense)
CRITERIA = {
    "finetune.test_error": ("finetune", "test_error", "min"),
    "finetune.overlap": ("finetune", "overlap", "max"),
    "pretrain.test_error": ("pretrain", "test_error", "min"),
    "pretrain.mse": ("pretrain", "mse", "min"),
}

CONTINUOUS = {"pretrain.lam": (1e-4, 10.0), "pretrain.kappa": (0.05, 4.0)}
CATEGORICAL = {"pretrain.estimator": ("direct", "factorized", "bayes")}


@dataclass(frozen=True)
class OptimalPretraining:
    """``best[criterion] = {"choice": {field: value}, "metrics": {...}, "beaten_by_unconverged":
    None | {"choice", "value"}}``; ``scan`` is every evaluated point (choice, metrics)."""

    best: dict
    scan: list
    fields: tuple


def _metrics(result: dict) -> dict:
    out = {}
    for block in ("pretrain", "finetune"):
        for key, entry in (result.get(block) or {}).items():
            out[f"{block}.{key}"] = entry["value"]
    out["delta_eff"] = result["delta_eff"]["value"] if result.get("delta_eff") else math.nan
    out["recalibration_c"] = result["solver"].get("recalibration_c", math.nan)
    return out


def _score(metrics: dict, criterion: str) -> float:
    """The criterion as a number to minimise; +inf where the theory failed or did not converge
    (such a choice is reported in the scan, never selected)."""
    if metrics.get("failed") or not metrics.get("converged", True):
        return math.inf
    block, key, sense = CRITERIA[criterion]
    value = metrics.get(f"{block}.{key}", math.nan)
    if value is None or not math.isfinite(value):
        return math.inf
    return value if sense == "min" else -value


def optimize_pretraining(cfg: Config, over=("pretrain.lam",), *, recalibrate: bool = False,
                         grid_points: int = 9, refine_steps: int = 8,
                         progress=None) -> OptimalPretraining:
    """Scan and refine the pre-training choices ``over`` (see the module docstring).
    ``recalibrate=True`` sets ``finetune.recalibrate = "optimal"`` (c = M/Q); ``progress``: an
    optional callable ``progress(text)`` called after each evaluated point."""
    over = tuple(over)
    for name in over:
        if name not in CONTINUOUS and name not in CATEGORICAL:
            raise ValueError(f"--over {name}: supported fields are "
                             + ", ".join([*CONTINUOUS, *CATEGORICAL]))
    if recalibrate:
        cfg = cfg.replace(finetune={"recalibrate": "optimal"})
    continuous = [n for n in over if n in CONTINUOUS]
    categorical = [n for n in over if n in CATEGORICAL]
    cache: dict[tuple, dict] = {}      # choice -> metrics (pre-training only, or every stage)
    states: dict[tuple, object] = {}   # choice -> pre-training state (or its exception)
    results: dict[tuple, object] = {}  # choice -> FinetuneState (fine-tuning starts)

    def nearest(key: tuple, pool: dict):
        """The evaluated choice closest to ``key`` in log scale (same categorical values)."""
        here = dict(key)
        best, dist = None, math.inf
        for other in pool:
            there = dict(other)
            if any(here.get(n) != there.get(n) for n in categorical) or other == key:
                continue
            d = sum(abs(math.log(here[n] / there[n])) for n in continuous
                    if n in here and n in there)
            if d < dist:
                best, dist = other, d
        return None if best is None else pool[best]

    def evaluate(choice: dict, full: bool = True) -> dict:
        key = tuple(sorted(choice.items()))
        if key in cache and (not full or cache[key].get("stage") != "pretrain"):
            return cache[key]
        t0 = time.perf_counter()
        point = cfg.with_overrides([f"{k}={_lit(v)}" for k, v in choice.items()])
        try:
            if key not in states:
                warm = nearest(key, {k: v for k, v in states.items()
                                     if not isinstance(v, Exception)})
                try:
                    states[key] = (predict_pretraining(point) if warm is None
                                   else predict_pretraining(point, start=warm))
                except (ValueError, ArithmeticError) as err:   # solved once, failed once
                    states[key] = err
                if progress is not None:   # a softmax pre-training solve takes a while: say so
                    progress(f"    pre-training at {_where(choice)} solved "
                             f"({'from a neighbour' if warm is not None else 'cold'}) in "
                             f"{time.perf_counter() - t0:.1f} s")
            if isinstance(states[key], Exception):
                raise states[key]
            stages = ("pretrain", "finetune") if full else ("pretrain",)
            result, _, fin = predict_states(point, pre=states[key], bayes_bound=False,
                                            stages=stages,
                                            start=nearest(key, results) if full else None)
        except (ValueError, ArithmeticError) as err:   # e.g. a solver outside its domain
            cache[key] = {"failed": f"{type(err).__name__}: {err}"}
        else:
            if full:
                results[key] = fin
            cache[key] = {**_metrics(result), "converged": converged(result),
                          **({} if full else {"stage": "pretrain", **_frozen(point, states[key])})}
        if progress is not None:
            progress(_progress_line(len(cache), choice, cache[key], full,
                                    time.perf_counter() - t0))
        return cache[key]

    cat_values = [CATEGORICAL[n] for n in categorical] or [()]
    combos = [dict(zip(categorical, c)) for c in itertools.product(*cat_values)] if categorical else [{}]
    best = {}
    for criterion in CRITERIA:
        candidates = []
        for combo in combos:
            if combo.get("pretrain.estimator", cfg.pretrain.estimator) == "bayes" or not continuous:
                candidates.append((dict(combo), evaluate(dict(combo))))
                continue
            # one continuous field at a time (coordinate search), starting at the config's value
            choice = dict(combo)
            # a pre-training criterion needs the pre-training stage only; the grid is solved
            # in full once (shared by every criterion, in order: continuation along it)
            full = CRITERIA[criterion][0] == "finetune"
            for name in continuous:
                low, high = CONTINUOUS[name]
                grid = np.geomspace(low, high, grid_points)
                scores = [_score(evaluate({**choice, name: float(v)}), criterion) for v in grid]
                i = int(np.argmin(scores))
                lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, grid_points - 1)]
                choice[name] = _refine_log(lambda v: _score(evaluate({**choice, name: v}, full),
                                                            criterion), lo, float(grid[i]), hi,
                                           refine_steps)
            candidates.append((choice, evaluate(choice, full)))
        choice, _ = min(candidates, key=lambda c: _score(c[1], criterion))
        metrics = evaluate(choice)   # every stage at the optimum (downstream metrics reported)
        best[criterion] = {"choice": choice, "metrics": metrics,
                           "beaten_by_unconverged": _beaten_by_unconverged(
                               cache, criterion, _score(metrics, criterion))}
    scan = [{"choice": dict(k), "metrics": v} for k, v in cache.items()]
    return OptimalPretraining(best=best, scan=scan, fields=over)


def _frozen(cfg: Config, pre) -> dict:
    """Δ_eff and c of a pre-training-only evaluation where they are closed forms in the
    pre-training (T25: every recalibration but "learned"), as the full solve reports them."""
    from ..finetuning import noise

    try:
        c = noise.resolve_c(cfg, pre)
        return {"delta_eff": float(noise.delta_eff(cfg, pre, c)), "recalibration_c": float(c)}
    except (NotImplementedError, ValueError, TypeError):
        return {}


def _where(choice: dict) -> str:
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                     for k, v in choice.items()) or "(config)"


def _progress_line(n: int, choice: dict, metrics: dict, full: bool, seconds: float) -> str:
    where = _where(choice)
    if metrics.get("failed"):
        return f"[{n}] {where}: failed ({metrics['failed']}) {seconds:.1f} s"
    shown = ["pretrain.test_error"] + (["finetune.test_error", "finetune.overlap"] if full else [])
    values = ", ".join(f"{m.split('.')[0][:2]}.{m.split('.')[1]}={metrics.get(m, math.nan):.4g}"
                       for m in shown)
    stage = "" if full else " (pre-training only)"
    conv = "" if metrics.get("converged", True) else " NOT CONVERGED"
    return f"[{n}] {where}: {values}{stage}{conv} {seconds:.1f} s"


def _beaten_by_unconverged(cache: dict, criterion: str, best_score: float) -> dict | None:
    """The evaluated choice that the theory did not converge at but whose value beats the reported
    optimum (if any): the optimum may then lie where the solver is not trusted, and the user is
    told so rather than shown an optimum at the edge of the converged region."""
    block, key, sense = CRITERIA[criterion]
    rival = None
    for choice, metrics in cache.items():
        if metrics.get("failed") or metrics.get("converged", True):
            continue
        value = metrics.get(f"{block}.{key}", math.nan)
        if value is None or not math.isfinite(value):
            continue
        score = value if sense == "min" else -value
        if score < best_score and (rival is None or score < rival[0]):
            rival = (score, {"choice": dict(choice), "value": value})
    return None if rival is None else rival[1]


#: golden-section shrink factor per step: ``refine_steps`` fixes the resolution of the refinement
#: as that of a golden-section search of that many steps on the bracket
GOLDEN = (math.sqrt(5) - 1) / 2


def _refine_log(f, low: float, mid: float, high: float, steps: int) -> float:
    """Minimise f on [low, high] in log scale, f(mid) the best grid value (``low``, ``high`` its
    grid neighbours); returns the best point seen (``mid`` included).

    Brent's method (parabolic steps, golden-section fallback; scipy ``minimize_scalar``) started
    from the bracket (low, mid, high), whose values the scan has already evaluated (``f`` is
    memoised by the caller), to the resolution a golden-section search of ``steps`` steps would
    reach: a final interval of width ≈ (log high − log low)·GOLDEN^steps. Where mid is not
    strictly below both ends (a grid edge, ties), the bounded Brent method on [low, high] with that
    resolution. Measured at the MODEL.md §6 default (benchmarks/README.md, step 8): 43 → 35
    evaluations for the four criteria, the same optima within that resolution."""
    from scipy.optimize import minimize_scalar

    a, b, c = math.log(low), math.log(mid), math.log(high)
    width = max(c - a, 1e-12)
    resolution = width * GOLDEN ** steps
    seen = {}
    s_mid = 1.0 + (b - a) / width
    exact = {1.0: low, s_mid: mid, 2.0: high}    # the grid points themselves (memoised values)

    def g(s):                     # s = (log x − a)/width + 1 ∈ [1, 2]: relative ≈ absolute tol
        s = float(s)
        x = exact[s] if s in exact else math.exp(a + (s - 1.0) * width)
        seen[x] = f(x)
        return seen[x]

    fa, fb, fc = g(1.0), g(s_mid), g(2.0)
    if fb < fa and fb < fc:
        # Brent stops when the interval is within ≈ 4·xtol·|s| ≤ 8·xtol (in s) of its midpoint
        minimize_scalar(g, bracket=(1.0, s_mid, 2.0), method="brent",
                        options={"xtol": resolution / width / 8.0, "maxiter": 4 * steps + 8})
    else:
        minimize_scalar(g, bounds=(1.0, 2.0), method="bounded",
                        options={"xatol": resolution / width / 2.0, "maxiter": 4 * steps + 8})
    return min(seen, key=seen.get)


def _lit(value) -> str:
    return f'"{value}"' if isinstance(value, str) else repr(value)
