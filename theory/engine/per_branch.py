"""Every start a branch on every repeat (``Settings.repeats_per_branch``): the protocol of the
Bayes fine-tuning SE (T39), where branches are compared by their repeat means (common random
numbers) and the choice needs the stability of every repeat. The per-branch solve, the choice
(:func:`.driver.choose`) and the aggregation (:func:`.repeats.aggregate`) are the driver's."""

from __future__ import annotations

import time

from .driver import aggregate, choose, flags_of, repeat_key, solve_branch
from .settings import Settings, Solution, Start

__all__ = ["solve_per_branch"]


def solve_per_branch(channel, settings: Settings, key, starts) -> Solution:
    """Every start a branch on every repeat (``Settings.repeats_per_branch``; the Bayes SE
    protocol, T39): on the draws of repeat 0 each start is solved with the full cap (a branch to
    compare, not a search: nothing is dropped), on repeat i > 0 from its repeat-0 solution (cap
    ``Settings.repeat_cap``). Each branch is summarised by its repeat means and errors
    (:func:`aggregate`; common random numbers across branches), is stable when every repeat is,
    and converged when every repeat is; a branch not :meth:`distinct` from an earlier start's is
    dropped; the reported branch has the lowest mean objective among the stable ones
    (:func:`choose`). ``Solution.starts`` holds every start's summary (``start``, ``label``, the
    repeat means of the rows, which carry ``objective``, also under ``metrics``; ``mc_err``,
    ``stable``, ``converged``, ``slope`` (the largest over repeats), ``distinct``, ``selected``,
    ``results`` (the :class:`BranchResult` of each repeat), ``rows``)."""
    t0 = time.perf_counter()
    datas = [channel.draws(repeat_key(key, i)) for i in range(settings.repeats)]
    summaries = []
    for s in starts:
        first = solve_branch(channel, datas[0], s, settings)
        results = [first] + [solve_branch(channel, d, Start("repeat", first.x), settings,
                                          cap=settings.repeat_cap(first.iterations))
                             for d in datas[1:]]
        rows = [channel.outputs(r, d) for r, d in zip(results, datas)]
        mean, err = aggregate(rows)
        slopes = [r.slope for r in results if r.slope is not None]
        summary = dict(mean, start=s.name, label=channel.label(first.record), metrics=mean,
                       mc_err=err, stable=all(r.stable for r in results),
                       converged=all(r.converged for r in results),
                       slope=max(slopes) if slopes else None, results=tuple(results),
                       rows=tuple(rows), selected=False)
        summary["distinct"] = all(channel.distinct(summary, o) for o in summaries
                                  if o["distinct"])
        summaries.append(summary)
    kept = [b for b in summaries if b["distinct"]]
    best = kept[choose(kept, stable=lambda b: b["stable"], objective=lambda b: b["objective"])]
    best["selected"] = True
    results = best["results"]
    converged = all(b["converged"] for b in summaries)
    retries = sum(int(r.stein_retry) for b in summaries for r in b["results"])
    result = results[0].result if not results[0].converged else (
        "converged" if converged else
        "repeat_unconverged" if not best["converged"] else "branch_unconverged")
    stats = dict(converged=converged, result=results[0].result,
                 iterations=results[0].iterations, residual=results[0].residual,
                 seconds=time.perf_counter() - t0, n_branches=len(kept), n_starts=len(starts),
                 mc_repeats=settings.repeats, stein_retries=retries,
                 repeat_iterations=tuple(r.iterations for r in results))
    flags = flags_of(channel, converged, results[0].record, len(kept), retries,
                     stable=any(b["stable"] for b in kept))
    return Solution(value=results[0].x, result=result, best=results[0],
                    branches=tuple(sorted(kept, key=lambda b: b["objective"])),
                    repeats=best["rows"], metrics=best["metrics"], mc_err=best["mc_err"],
                    flags=tuple(flags), stats=stats, starts=tuple(summaries))
