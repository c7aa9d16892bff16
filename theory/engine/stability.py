"""Leaving a converged unstable fixed point (THEORY.md §9, "Bayes SE iteration"; channels with
the ``stability`` hook of :mod:`.channel`): split from :mod:`.driver`, which calls it from
:func:`.driver.solve_branch`."""

from __future__ import annotations

import dataclasses

import numpy as np

from .settings import Settings

__all__ = ["escape_unstable"]


def escape_unstable(channel, data, two_phases, sol, x_fp, slope, kick, settings: Settings,
                    cap: int, to_it, from_it):
    """Leave the unstable converged point ``x_fp`` (slope ≥ 1; the driver's docstring): plain damped
    steps (``plain_escape`` of them) from x_fp + kick, then Anderson again; if that converges to
    an unstable point too, plain iteration from it (+ its kick) to the end of the cap. Returns
    the last converged solution (the unstable one if no escape converged; its iterations count
    every attempt) and its slope."""
    used = sol.iterations
    for plain_cap, accel in ((settings.plain_escape, settings.anderson), (None, 0)):
        left = cap - used
        if left < 1:
            break
        start = to_it(np.asarray(x_fp, float) + np.asarray(kick, float))
        # plain runs are slow near a slope of 1 by design: never stopped as "slow"
        again = two_phases(start, False, left if plain_cap is None else min(plain_cap, left),
                           anderson=0, slow=None)
        used += again.iterations
        if not again.converged and cap - used >= 1:
            # Anderson again (the branch's own "slow" rule), or plain to the end (never "slow")
            again = two_phases(again.value, False, cap - used, anderson=accel,
                               **({} if accel else {"slow": None}))
            used += again.iterations
        if not again.converged:
            continue
        x_fp = channel.sanitize(from_it(again.value))
        slope, kick = channel.stability(x_fp, data)
        sol = again
        if slope < 1.0:
            break
    return dataclasses.replace(sol, iterations=used), slope
