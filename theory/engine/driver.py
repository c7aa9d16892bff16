"""One driver of the RS solve protocol (THEORY.md §9) for every channel of :mod:`.channel`.

Per branch (:func:`solve_branch`): phase 1 (from a cold start: the channel's ``cold_warm``, or
the full multistart first with ``Settings.cold_full_first``) iterates the warm-only map x -> prior(hats(means(x,
warm))) (each sample's prox Newton started at its previous minimiser; damped, Anderson
accelerated, stall detection) to tol, then one step of the full multistart map checks that no
sample's best minimum changed; if one did, phase 1 resumes from the minima the full map chose (up
to ``phase2_rounds`` rounds, then "stalled"; "stalled" at once when a round's phase-1 fixed point
repeats an earlier round's: a cycle of the minima choices). A stalled derivative-form iteration is retried with
the Stein forms of the hats from the same start, within the iterations left, and kept only if it
converges — also when the stalled iteration was latched to the Stein forms (the hat form chosen by
a full evaluation is kept by the warm evaluations after it, §9): the retry uses the Stein forms
from its first evaluation on, a different map from the latched path's until its first full
evaluation, so a retry round that reaches a phase-1 fixed point of the stalled pass from which
that pass iterated the Stein forms to its end stops ("stalled": it would retrace the pass,
:func:`_retraced`). The last full
evaluation is the reported one (not repeated). A channel may declare
the coordinates of the iteration (``to_iter`` / ``from_iter``, :mod:`.channel`).

Global solution (:func:`solve`): branches from every start (the first gets the whole cap, the
others ``branch_cap`` iterations and stop as "slow" once their residual rate says they cannot
converge; an unconverged search is dropped); the reported branch has the lowest free energy (the
channel's ``objective``: φ at the saddle, T31); MC repeats re-solve it on independent frozen draws
from the solved point (cap ``Settings.repeat_cap``; their first evaluation the full multistart,
``Start.full_first``), or, along a curve, from the neighbour's repeats — then beside the branch
search, on the other threads (:func:`solve`); the per-repeat rows are averaged with errors
(:func:`aggregate`); flags: not converged, Stein retries, RS doubtful, several fixed points.

Stability (channels with the optional ``stability(x, data) -> (slope, kick)`` hook, e.g. the
Bayes SE, T39): Anderson mixing can land on an unstable fixed point (slope of the map ≥ 1, e.g.
q = 0 above weak recovery) that the plain iteration would leave. Every solved branch carries its
slope; a converged unstable point is left by ``Settings.plain_escape`` plain damped steps from
x + kick, then Anderson again, and if that lands on an unstable point too, by plain iteration
from there to the end of the cap (all within the branch's cap). The choice takes the lowest
objective among the *stable* branches; unstable ones only when none is stable (flagged "no stable
... fixed point found"). With ``Settings.repeats_per_branch`` every start is a branch solved on
every repeat (common random numbers) and the branches are compared by their repeat means (the
Bayes protocol: maximal free entropy = minimal objective −Φ).
"""

from __future__ import annotations

import dataclasses
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..fixed_point import damped_fixed_point
from .linear_response import sample_row
from .repeats import aggregate, parallel_map, repeat_key
from .settings import BranchResult, Settings, Solution, Start
from .stability import escape_unstable as _escape

__all__ = ["solve_branch", "find_branches", "solve", "choose", "repeat_key", "aggregate",
           "flags_of", "parallel_map"]


#: run the continued MC repeats of a curve point beside its branch search (:func:`solve`);
#: False: after it (the same numbers, tests/test_engine.py)
SPECULATE = True


def _within(a, b, tol) -> bool:
    a, b = np.asarray(a, float), np.asarray(b, float)
    return bool(np.max(np.abs(a - b)) <= tol * (1.0 + np.max(np.abs(a))))


def solve_branch(channel, data, start: Start, settings: Settings, *, cap: int | None = None,
                 slow: int | None = None, discard_unconverged: bool = False):
    """Solve one branch from ``start`` on ``data`` (module docstring). Returns a
    :class:`BranchResult`, or None for an unconverged search with ``discard_unconverged``."""
    t0 = time.perf_counter()
    cap = settings.max_iter if cap is None else int(cap)
    cold_full = start.warm is None and (settings.cold_full_first or start.full_first)
    st = dict(warm=channel.cold_warm(data) if start.warm is None else start.warm,
              full=cold_full, phase2=False, stein=False, latch=False, last=None, end=None)

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

    def two_phases(x_start, first_full, budget, anderson=settings.anderson, slow=slow,
                   rounds=None, seen=()):
        kw = dict(damping=settings.damping, tol=settings.tol, anderson=anderson,
                  anderson_max_step=settings.anderson_max_step)
        x, used, full_first, sol2 = np.asarray(x_start, float), 0, first_full, None
        if settings.phase2_rounds < 1:     # one phase: the map has no warm/full distinction
            st["phase2"], st["full"] = False, full_first
            return damped_fixed_point(step, x, max_iter=max(budget, 1), stall=settings.stall,
                                      slow=slow, **kw)
        # the phase-1 fixed point of every round, and whether the round iterated the Stein
        # forms throughout (phase 1 latched, and its full step latched again): the caller's
        # list, from which a retry's ``seen`` is made (:func:`_retraced`)
        rounds = [] if rounds is None else rounds
        for index in range(settings.phase2_rounds):
            st["phase2"], st["full"] = False, full_first
            sol1 = damped_fixed_point(step, x, max_iter=max(budget - used - 1, 1),
                                      stall=settings.stall, slow=slow, **kw)
            used += sol1.iterations
            if not sol1.converged or budget - used < 1:
                st["end"] = "phase 1"
                return dataclasses.replace(sol1, iterations=used)
            # a cycle: this round's phase-1 fixed point is an earlier round's (not the last
            # one's) to tol, so the full step would choose the same minima again and every
            # further round repeats the cycle — the "stalled" of the last round, rounds earlier
            # (the recurrences seen are exact to ≈ 1e-9 at tol = 1e-7: the same warm-started
            # path; the cycles are 1e-3 wide, e.g. q at the MODEL.md §6 default, MC repeat 1)
            # ``seen`` (:func:`_retraced`): rounds of the stalled pass that a Stein retry would
            # retrace from there (the same x to tol, hence the same per-sample minima, and the
            # same map), so it would not converge either
            if any(_within(sol1.value, v, settings.tol) for k, v in seen if index >= k) or \
                    any(_within(sol1.value, v, settings.tol) for v, _ in rounds[:-1]):
                st["end"] = "cycle"
                return dataclasses.replace(sol1, result="stalled", iterations=used)
            latched = st["latch"]
            st["phase2"] = st["full"] = True
            sol2 = damped_fixed_point(step, sol1.value, max_iter=1, **kw)
            rounds.append((np.asarray(sol1.value, float), latched and st["latch"]))
            used += 1
            if sol2.converged:
                return dataclasses.replace(sol2, iterations=used)
            x, full_first = sol2.value, False
        st["end"] = "rounds"
        return dataclasses.replace(sol2, result="stalled", iterations=used)

    first_rounds: list = []
    sol = two_phases(to_it(start.x), cold_full, cap, rounds=first_rounds)
    stein_retry = False
    if settings.stein_retry and sol.result == "stalled" and \
            cap - sol.iterations >= 2:
        # the derivative hats jump with the few samples near a fold of the prox; the Stein forms
        # (T30) hold for any measurable prox, jumps included
        first_state = dict(st)
        st["stein"] = True
        retry = two_phases(to_it(start.x), True, cap - sol.iterations,
                           seen=_retraced(first_rounds, st["end"]))
        if retry.converged:
            sol = dataclasses.replace(retry, iterations=sol.iterations + retry.iterations)
            stein_retry = True
        else:
            # the stalled pass is reported: its per-sample minima and hat forms, not the
            # failed retry's (the reported evaluation below starts from them)
            st.update(first_state)
    slope = None
    if getattr(channel, "stability", None) is not None:
        x_fp = channel.sanitize(from_it(sol.value))
        slope, kick = channel.stability(x_fp, data)
        if sol.converged and slope >= 1.0:
            sol, slope = _escape(channel, data, two_phases, sol, x_fp, slope, kick, settings,
                                 cap, to_it, from_it)
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
    if slope is not None:
        record.update(slope=float(slope), stable=bool(slope < 1.0))
    return BranchResult(x=np.asarray(xs, float), record=record, hats=tuple(hats),
                        result=sol.result, iterations=sol.iterations,
                        residual=float(sol.residual), seconds=record["seconds"],
                        stein_retry=stein_retry, warm=st["warm"],
                        slope=None if slope is None else float(slope), means=means)


def _retraced(rounds, end: str) -> tuple:
    """The rounds (k, phase-1 fixed point) of a stalled pass from which a Stein retry would
    retrace it: those k such that every round from k to the end iterated the Stein forms
    (latched in phase 1 and at its full step). From such a state (the same x to tol, hence the
    same per-sample minima) the retry's map — Stein forms throughout — is the pass's map, and
    its budget is smaller, so it cannot converge: after a pass that ended in a cycle (``end``
    "cycle": the path is periodic) or a stalled phase 1 ("phase 1") from any of its rounds; after
    a pass that used up its rounds ("rounds") only at a retry round ≥ k (then the retry has no
    more rounds left than the pass had from k; the entries are (k, value), matched at retry
    rounds ≥ k, with k = 0 meaning any round). From the other rounds the pass used the
    derivative forms somewhere."""
    out = []
    for k in range(len(rounds) - 1, -1, -1):
        value, stein_round = rounds[k]
        if not stein_round:
            break
        out.append((k if end == "rounds" else 0, value))
    return tuple(out)


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


def flags_of(channel, converged: bool, best: dict, n_found: int, stein_retries: int,
             stable: bool = True) -> list:
    """The warnings a solution carries (never a silent doubtful answer)."""
    flags = []
    if not converged:
        flags.append(f"{channel.stage} fixed point not converged")
    if not stable:
        flags.append(f"no stable {channel.stage} fixed point found (slope of the {channel.stage} "
                     "map >= 1 at every branch)")
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


def choose(branches, stable=lambda b: b.stable, objective=lambda b: b.record["objective"]):
    """Index of the branch to report: the first stable branch in the order of increasing
    objective (stable sort: ties keep the given order), the lowest objective when none is stable
    (then the solution is flagged). On the branches of :func:`find_branches` (already in that
    order) it is the first stable one, or the first."""
    order = sorted(range(len(branches)), key=lambda i: objective(branches[i]))
    return next((i for i in order if stable(branches[i])), order[0])


def repeat_start(best: BranchResult) -> Start:
    """The start of an MC repeat at the point ``best`` solved on other draws: its order
    parameters; the first evaluation the full multistart when some samples had several minima
    there (``frac_multimin`` > 0 in its record: the warm-only iteration from the cold per-sample
    starts may then first converge to another fixed point, THEORY.md §9), warm-only otherwise
    (one full evaluation saved where every sample has one minimum)."""
    return Start("repeat", best.x, full_first=bool(best.record.get("frac_multimin", 0.0) > 0.0))


def solve(channel, settings: Settings, key, starts, *, previous: Solution | None = None) -> Solution:
    """Global RS solution of ``channel``: branches from ``starts`` (a sequence of
    :class:`Start`) on the draws of ``key``, the lowest free energy (among the stable branches)
    kept, ``settings.repeats`` MC repeats (draws of :func:`repeat_key`) started at it,
    aggregated (module docstring). With ``settings.repeats_per_branch``:
    :func:`.per_branch.solve_per_branch`.

    ``previous``: the :class:`Solution` of a neighbouring point solved on the same draws (a
    curve; same key and sample count). Its selected branch becomes a continuation start
    (order parameters and per-sample prox solutions), and each MC repeat starts
    from the neighbour's solution on the same draw when that solved the same branch label.
    The cold starts of the other labels still run (:func:`find_branches`), so the branch search
    and the flags are a cold solve's; only the iterations change (within ``tol``). The hat-form
    latch is not carried over: each point chooses its hat forms at its own full evaluations."""
    if settings.repeats_per_branch:
        from .per_branch import solve_per_branch

        return solve_per_branch(channel, settings, key, starts)
    t0 = time.perf_counter()
    data = channel.draws(key)
    if previous is not None and not _same_shapes(previous.best.warm, channel.cold_warm(data)):
        previous = None                # another sample count: nothing to continue per sample
    if previous is not None:
        b = previous.best
        starts = [Start("continued", b.x, warm=b.warm, continuation=True)] + list(starts)

    def continued(i, label):
        """Repeat i's start from the neighbour's solution on the same draws, if that solved the
        branch ``label`` (None otherwise)."""
        if previous is None or i >= len(previous.repeat_branches):
            return None
        r_prev = previous.repeat_branches[i]
        if r_prev.result == "nonfinite" or channel.label(r_prev.record) != label:
            return None
        return Start("repeat", r_prev.x, warm=r_prev.warm)

    def run_repeat(i, start, cap):
        d_i = channel.draws(repeat_key(key, i))
        r_i = solve_branch(channel, d_i, start, settings, cap=cap)
        return sample_row(channel, r_i, d_i), r_i

    # speculation along a curve: the repeats that continue from the neighbour when the selected
    # branch keeps the neighbour's label run on the other threads while the branches are
    # searched, with the whole cap; each is kept when the label is kept and it used no more
    # iterations than its cap (then it is the run the cap would have given: every solve is
    # deterministic and a cap only cuts a path), otherwise solved again below
    label0 = None if previous is None else previous.best.record["label"]
    todo = {i: s for i in range(1, settings.repeats)
            if SPECULATE and settings.workers > 1 and (s := continued(i, label0)) is not None}
    pool = ThreadPoolExecutor(max_workers=max(1, min(settings.workers - 1, len(todo)))) \
        if todo else None
    try:
        spec = {i: pool.submit(run_repeat, i, s, settings.max_iter) for i, s in todo.items()}
        found = find_branches(channel, data, starts, settings)
        best = next((b for b in found if b.stable), found[0])       # = choose(found)
        cap = settings.repeat_cap(best.iterations)
        kept = {}
        if best.record["label"] == label0:
            for i, fut in spec.items():
                row, r_i = fut.result()
                if r_i.iterations <= cap:
                    kept[i] = (row, r_i)
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    def repeat(i):
        if i in kept:
            return kept[i]
        start = continued(i, best.record["label"]) or repeat_start(best)
        return run_repeat(i, start, cap)

    done = parallel_map(repeat, range(1, settings.repeats), settings.workers)
    rows = [sample_row(channel, best, data)] + [row for row, _ in done]
    results = [best] + [r for _, r in done]
    converged = all(r.converged for r in results)
    retries = sum(int(r.stein_retry) for r in results)
    parts: dict = {}
    metrics, err = aggregate(rows, parts)
    result = best.result if not best.converged else (
        "converged" if converged else "repeat_unconverged")
    stats = dict(converged=converged, result=best.result, iterations=best.iterations,
                 residual=best.residual, seconds=time.perf_counter() - t0,
                 n_branches=len(found), mc_repeats=settings.repeats, stein_retries=retries,
                 repeat_iterations=tuple(r.iterations for r in results),
                 continued=previous is not None, speculative_repeats_kept=len(kept),
                 mc_err_parts=parts)
    flags = flags_of(channel, converged, best.record, len(found), retries,
                     stable=any(b.stable for b in found))
    return Solution(value=best.x, result=result, best=best,
                    branches=tuple(b.record for b in found), repeats=tuple(rows),
                    metrics=metrics, mc_err=err, flags=tuple(flags), stats=stats,
                    repeat_branches=tuple(results))
