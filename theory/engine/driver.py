"""One driver of the RS solve protocol (THEORY.md §9) for every channel of :mod:`.channel`.

Per branch (:func:`solve_branch`): phase 1 (from a cold start: the channel's ``cold_warm``, or
the full multistart first with ``Settings.cold_full_first``) iterates the warm-only map x -> prior(hats(means(x,
warm))) (each sample's prox Newton started at its previous minimiser; damped, Anderson
accelerated, stall detection) to tol, then one step of the full multistart map checks that no
sample's best minimum changed; if one did, phase 1 resumes from the minima the full map chose (up
to ``phase2_rounds`` rounds, then "stalled"). A stalled derivative-form iteration is retried with
the Stein forms of the hats from the same start, within the iterations left, and kept only if it
converges (not when the stalled iteration was latched to the Stein forms already: the hat form
chosen by a full evaluation is kept by the warm evaluations after it, §9). The last full
evaluation is the reported one (not repeated). A channel may declare
the coordinates of the iteration (``to_iter`` / ``from_iter``, :mod:`.channel`).

Global solution (:func:`solve`): branches from every start (the first gets the whole cap, the
others ``branch_cap`` iterations and stop as "slow" once their residual rate says they cannot
converge; an unconverged search is dropped); the reported branch has the lowest free energy (the
channel's ``objective``: φ at the saddle, T31); MC repeats re-solve it on independent frozen draws
from the solved point (cap ``Settings.repeat_cap``); the per-repeat rows are averaged with errors
(:func:`aggregate`); flags: not converged, Stein retries, RS doubtful, several fixed points.
"""

from __future__ import annotations

import dataclasses
import math
import time

import numpy as np

from ..fixed_point import damped_fixed_point
from .settings import BranchResult, Settings, Solution, Start

__all__ = ["solve_branch", "find_branches", "solve", "repeat_key", "aggregate", "flags_of"]


def _within(a, b, tol) -> bool:
    a, b = np.asarray(a, float), np.asarray(b, float)
    return bool(np.max(np.abs(a - b)) <= tol * (1.0 + np.max(np.abs(a))))


def solve_branch(channel, data, start: Start, settings: Settings, *, cap: int | None = None,
                 slow: int | None = None, discard_unconverged: bool = False):
    """Solve one branch from ``start`` on ``data`` (module docstring). Returns a
    :class:`BranchResult`, or None for an unconverged search with ``discard_unconverged``."""
    t0 = time.perf_counter()
    cap = settings.max_iter if cap is None else int(cap)
    cold_full = start.warm is None and settings.cold_full_first
    st = dict(warm=channel.cold_warm(data) if start.warm is None else start.warm,
              full=cold_full, phase2=False, stein=False, latch=False, last=None)

    def evaluate(x, full):
        xs = channel.sanitize(x)
        means, st["warm"] = channel.means(xs, st["warm"], data, full)
        st["last"] = (xs, means, full)
        return xs, means

    # iteration coordinates (optional channel hook): the damped/Anderson iteration runs on
    # y = to_iter(x) (same fixed points; e.g. logs keep Q, V > 0), the channel sees x = from_iter(y)
    to_it = getattr(channel, "to_iter", None) or (lambda x: np.asarray(x, float))
    from_it = getattr(channel, "from_iter", None) or (lambda y: np.asarray(y, float))

    def step(y):
        # the first call of a cold branch needs every start; then warm polish (phase 1) or the
        # full multistart map (phase 2)
        full, st["full"] = st["full"], st["phase2"]
        xs, means = evaluate(from_it(y), full)
        # the hat form (§9) is chosen by each full (multistart) evaluation and kept by the warm
        # evaluations after it: a warm call sees one start and cannot detect multiple minima, so
        # without the latch the two phases would iterate different maps (derivative forms in
        # phase 1, Stein forms at the phase-2 step) and stall
        hats, stein = channel.hats(xs, means, st["stein"] or (st["latch"] and not full))
        if full:
            st["latch"] = stein
        return to_it(channel.prior(hats))

    kw = dict(damping=settings.damping, tol=settings.tol, anderson=settings.anderson)

    def two_phases(x_start, first_full, budget):
        x, used, full_first, sol2 = np.asarray(x_start, float), 0, first_full, None
        for _ in range(settings.phase2_rounds):
            st["phase2"], st["full"] = False, full_first
            sol1 = damped_fixed_point(step, x, max_iter=max(budget - used - 1, 1),
                                      stall=settings.stall, slow=slow, **kw)
            used += sol1.iterations
            if not sol1.converged or budget - used < 1:
                return dataclasses.replace(sol1, iterations=used)
            st["phase2"] = st["full"] = True
            sol2 = damped_fixed_point(step, sol1.value, max_iter=1, **kw)
            used += 1
            if sol2.converged:
                return dataclasses.replace(sol2, iterations=used)
            x, full_first = sol2.value, False
        return dataclasses.replace(sol2, result="stalled", iterations=used)

    sol = two_phases(to_it(start.x), cold_full, cap)
    stein_retry = False
    # the retry is skipped when the stalled iteration was latched to the Stein forms by its last
    # full evaluation: it would iterate the same map again
    if settings.stein_retry and sol.result == "stalled" and not st["latch"] and \
            cap - sol.iterations >= 2:
        # the derivative hats jump with the few samples near a fold of the prox; the Stein forms
        # (T30) hold for any measurable prox, jumps included
        st["stein"] = True
        retry = two_phases(to_it(start.x), True, cap - sol.iterations)
        if retry.converged:
            sol = dataclasses.replace(retry, iterations=sol.iterations + retry.iterations)
            stein_retry = True
        else:
            st["stein"] = False
    if discard_unconverged and not sol.converged:
        return None
    x_sol = from_it(sol.value)
    xs, last = channel.sanitize(x_sol), st["last"]
    if sol.converged and last is not None and last[2] and \
            _within(to_it(xs), to_it(last[0]), settings.tol):
        xs, means = last[0], last[1]       # the last full evaluation is within tol: report it
    else:
        xs, means = evaluate(x_sol, True)
    hats, stein = channel.hats(xs, means, st["stein"])      # a full evaluation: its own form
    record = dict(channel.record(xs, hats, means, stein), stein_retry=stein_retry,
                  converged=sol.converged, result=sol.result, iterations=sol.iterations,
                  residual=float(sol.residual), seconds=time.perf_counter() - t0)
    return BranchResult(x=np.asarray(xs, float), record=record, hats=tuple(hats),
                        result=sol.result, iterations=sol.iterations,
                        residual=float(sol.residual), seconds=record["seconds"],
                        stein_retry=stein_retry, warm=st["warm"],
                        stein_latched=bool(stein))


def find_branches(channel, data, starts, settings: Settings) -> list[BranchResult]:
    """Solve from every start (the first solved one with the full cap, the others as branch
    searches); keep the distinct converged fixed points, lowest ``objective`` (free energy) first.

    Continuation (``Start.continuation``, a neighbour's solution, listed first): it is solved with
    the full cap and dropped if it does not converge (the cold protocol then runs unchanged);
    once it converges, the cold start *named* like the label of its branch ("informative" /
    "uninformative") is skipped — that branch is already followed — while every start of another
    label still runs as a branch search, so a second branch (a transition along the curve) is
    still found and flagged. A continued point therefore costs the warm-started branch plus the
    other label's search, instead of both cold solves."""
    found: list[BranchResult] = []
    followed: set[str] = set()
    for s in starts:
        if s.name in followed:
            continue
        search = bool(found)
        r = solve_branch(channel, data, s, settings,
                         cap=min(settings.branch_cap, settings.max_iter) if search else None,
                         slow=settings.branch_slow if search else None,
                         discard_unconverged=search or s.continuation)
        if r is None:
            continue
        label = channel.label(r.record)
        r.record.update(start=s.name, label=label)
        if s.continuation and r.result == "converged":
            followed.add(label)
        if all(channel.distinct(r.record, f.record) for f in found):
            found.append(r)
    found.sort(key=lambda b: b.record["objective"])
    return found


def aggregate(rows) -> tuple[dict, dict]:
    """Mean of each metric over the R repeat rows and its MC error: the spread over repeats
    (std/√R, None when R = 1: unknown, never 0) ⊕ the within-draw error ``_se`` of sampled
    formulas (√(mean se²/R))."""
    R = len(rows)
    keys = [k for k in rows[0] if k != "_se"]
    mean = {k: float(np.mean([r[k] for r in rows])) for k in keys}
    err = {k: (float(np.std([r[k] for r in rows], ddof=1) / math.sqrt(R)) if R > 1 else None)
           for k in keys}
    for k in rows[0].get("_se", {}):
        within = math.sqrt(np.mean([r["_se"][k] ** 2 for r in rows]) / R)
        err[k] = math.sqrt(err[k] ** 2 + within ** 2) if err[k] is not None else None
    return mean, err


def flags_of(channel, converged: bool, best: dict, n_found: int, stein_retries: int) -> list:
    """The warnings a solution carries (never a silent doubtful answer)."""
    flags = []
    if not converged:
        flags.append(f"{channel.stage} fixed point not converged")
    if stein_retries:
        flags.append(f"Stein hats after a stalled derivative-form iteration ({stein_retries} of "
                     "the solves: selected branch and MC repeats)")
    doubt = channel.doubt(best)
    if doubt:
        flags.append(doubt)
    if n_found > 1:
        flags.append(f"{n_found} fixed points found; the lowest objective is reported")
    return flags


def _same_shapes(a, b) -> bool:
    import jax

    sa, sb = (jax.tree_util.tree_map(np.shape, t) for t in (a, b))
    return jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b) and sa == sb


def repeat_key(key, i: int):
    """The key of MC repeat ``i`` (THEORY.md §9): repeat 0 draws from ``key`` itself, repeat
    i > 0 from ``fold_in(key, i)`` — the one rule for every solver and curve."""
    import jax

    return key if i == 0 else jax.random.fold_in(key, i)


def solve(channel, settings: Settings, key, starts, *, previous: Solution | None = None) -> Solution:
    """Global RS solution of ``channel``: branches from ``starts`` (a sequence of
    :class:`Start`) on the draws of ``key``, the lowest free energy kept, ``settings.repeats``
    MC repeats (draws of :func:`repeat_key`) started at it, aggregated (module docstring).

    ``previous``: the :class:`Solution` of a neighbouring point solved on the same draws (a
    curve; same key and sample count). Its selected branch becomes a continuation start
    (order parameters and per-sample prox solutions), and each MC repeat starts
    from the neighbour's solution on the same draw when that solved the same branch label.
    The cold starts of the other labels still run (:func:`find_branches`), so the branch search
    and the flags are a cold solve's; only the iterations change (within ``tol``). The Stein
    latch is not carried over: each point chooses its hat forms at its own first full
    evaluation (carried along a curve, one RS-doubtful point would put every later point on the
    noisier Stein forms)."""
    t0 = time.perf_counter()
    data = channel.draws(key)
    if previous is not None and not _same_shapes(previous.best.warm, channel.cold_warm(data)):
        previous = None                # another sample count: nothing to continue per sample
    if previous is not None:
        b = previous.best
        starts = [Start("continued", b.x, warm=b.warm, continuation=True)] + list(starts)
    found = find_branches(channel, data, starts, settings)
    best = found[0]
    rows, results = [channel.outputs(best, data)], [best]
    for i in range(1, settings.repeats):
        d_i = channel.draws(repeat_key(key, i))
        start = Start("repeat", best.x)
        if previous is not None and i < len(previous.repeat_branches):
            r_prev = previous.repeat_branches[i]
            if r_prev.result != "nonfinite" and \
                    channel.label(r_prev.record) == best.record["label"]:
                start = Start("repeat", r_prev.x, warm=r_prev.warm)
        r_i = solve_branch(channel, d_i, start, settings,
                           cap=settings.repeat_cap(best.iterations))
        rows.append(channel.outputs(r_i, d_i))
        results.append(r_i)
    converged = all(r.converged for r in results)
    retries = sum(int(r.stein_retry) for r in results)
    metrics, err = aggregate(rows)
    result = best.result if not best.converged else (
        "converged" if converged else "repeat_unconverged")
    stats = dict(converged=converged, result=best.result, iterations=best.iterations,
                 residual=best.residual, seconds=time.perf_counter() - t0,
                 n_branches=len(found), mc_repeats=settings.repeats, stein_retries=retries,
                 repeat_iterations=tuple(r.iterations for r in results),
                 continued=previous is not None)
    return Solution(value=best.x, result=result, best=best,
                    branches=tuple(b.record for b in found), repeats=tuple(rows),
                    metrics=metrics, mc_err=err,
                    flags=tuple(flags_of(channel, converged, best.record, len(found), retries)),
                    stats=stats, repeat_branches=tuple(results))
