"""Frozen settings of the RS solve protocol and the frozen results it returns (THEORY.md §9).

optimistix-like: the solver's choices are an immutable settings object, the answers immutable
solutions carrying a result code; nothing is changed after construction. The defaults are the
constants of :mod:`theory.solver_constants` (one definition each) and the ``[theory]`` table of a
:class:`theory.config.Config` (:meth:`Settings.from_config`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from .. import solver_constants as C

__all__ = ["Settings", "Start", "BranchResult", "Solution", "RESULT_CODES"]

#: result codes of a branch / solution (those of :class:`theory.fixed_point.FixedPointSolution`)
RESULT_CODES = ("converged", "max_iter", "stalled", "slow", "nonfinite")


@dataclass(frozen=True)
class Settings:
    """How the driver solves (§9). Numbers only; the channel owns the equations.

    ``tol``, ``damping``, ``max_iter``: the damped/Anderson iteration (theory.max_iter caps each
    branch solve, both phases and the Stein retry together); ``repeats``: MC repeats (independent
    frozen draws, R ≥ 1); ``anderson``, ``stall``, ``phase2_rounds``, ``branch_cap``,
    ``branch_slow``, ``repeat_cap_factor``, ``anderson_max_step``: :mod:`theory.solver_constants`; ``stein_retry``: retry
    a stalled derivative-form iteration with the Stein forms of the hats (T30);
    ``cold_full_first``: the first map evaluation of a cold start is the full multistart; by
    default it is the warm-only prox from the channel's ``cold_warm`` (the phase-2 full step
    still checks every sample's minimum, so the reported point is a fixed point of the full map
    either way; measured: same numbers to 5 digits, 3–4 fewer full calls per solve, solve time
    0.6–0.8×, benchmarks/README.md). The Stein retry always starts with a full evaluation.
    ``phase2_rounds = 0``: one phase, no full-map check (a channel whose map has no warm/full
    distinction, e.g. the Bayes SE: the check would be a redundant evaluation).

    Stability (channels with the ``stability`` hook, :mod:`.channel`): a converged point where
    the slope of the map is ≥ 1 is left by ``plain_escape`` plain damped steps from the kicked
    start, then Anderson again, then plain iteration to the end of the cap
    (:func:`.driver.solve_branch`).
    ``repeats_per_branch``: every start is a branch solved on every MC repeat (common random
    numbers; repeat i > 0 starts at the branch's repeat-0 solution) and the branches are compared
    by their repeat-mean objective, instead of the branch search on the first draws with repeats
    of the selected branch only (:func:`.driver.solve`)."""

    tol: float = 1e-7
    damping: float = 0.5
    max_iter: int = 1000
    repeats: int = 1
    anderson: int = C.ANDERSON_MEMORY
    anderson_max_step: float = C.ANDERSON_MAX_STEP
    stall: int | None = C.STALL_ITERATIONS
    phase2_rounds: int = C.PHASE2_ROUNDS
    branch_cap: int = C.BRANCH_SEARCH_CAP
    branch_slow: int | None = C.BRANCH_SEARCH_SLOW
    repeat_cap_factor: int = C.REPEAT_CAP_FACTOR
    stein_retry: bool = True
    cold_full_first: bool = False
    plain_escape: int = C.PLAIN_ESCAPE
    repeats_per_branch: bool = False
    #: threads solving the MC repeats i > 0 (independent given the selected branch; each solve
    #: is deterministic, so the numbers do not depend on it). Default: the cores this process
    #: may run on (``os.sched_getaffinity``), so a process pinned to one core stays sequential.
    workers: int = field(default_factory=lambda: available_cores())

    @classmethod
    def from_config(cls, cfg, *, repeats: int | None = None, **overrides) -> "Settings":
        th = cfg.theory
        return cls(tol=float(th.tol), damping=float(th.damping), max_iter=int(th.max_iter),
                   repeats=int(th.mc_repeats if repeats is None else repeats), **overrides)

    def repeat_cap(self, iterations: int) -> int:
        """Cap of an MC repeat started at the solved point: min(max_iter, max(100, k·its))."""
        return int(min(self.max_iter, max(100, self.repeat_cap_factor * iterations)))


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity; ``os.cpu_count()`` where the platform
    has no affinity)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class Start:
    """A start of a branch solve: a name, order parameters x and (optionally) the per-sample
    warm start of the prox (then the first map evaluation is warm-only, as in continuation)."""

    name: str
    x: np.ndarray
    warm: Any = field(default=None, repr=False)
    #: a continuation start (a neighbour's solution): once it converges, the cold start named
    #: like its branch's label is not solved again (:func:`theory.engine.driver.find_branches`)
    continuation: bool = False
    #: the first map evaluation is the full multistart even without a warm start (an MC
    #: repeat started at a point solved on other draws where samples had several minima,
    #: :func:`theory.engine.driver.repeat_start`: the multistart picks the minima of that point
    #: at once, whereas the warm-only map from the channel's ``cold_warm`` may first converge to
    #: another fixed point — softmax default, α′ = 1: 47 warm iterations to q = 0.81, THEORY.md §9)
    full_first: bool = False


@dataclass(frozen=True)
class BranchResult:
    """One solved branch on one set of draws.

    ``x`` the (sanitised) order parameters; ``record`` the channel's outputs at x (a dict with at
    least ``objective``, the free energy at the saddle used to choose the global branch);
    ``hats`` the conjugates at x; ``result`` a code of :data:`RESULT_CODES`; ``warm`` the
    per-sample prox solutions at x (for continuation; not in the repr)."""

    x: np.ndarray
    record: Mapping
    hats: tuple
    result: str
    iterations: int
    residual: float
    seconds: float
    stein_retry: bool = False
    warm: Any = field(default=None, repr=False)
    #: slope of the map at x (channels with the ``stability`` hook; None: not checked)
    slope: float | None = None
    #: the means of the reported (full) evaluation at x, per-sample arrays included where the
    #: channel returns them (:mod:`.linear_response`; not in the repr)
    means: Any = field(default=None, repr=False)

    @property
    def converged(self) -> bool:
        return self.result == "converged"

    @property
    def stable(self) -> bool:
        """The slope of the map at x is < 1 (True when the channel has no stability hook)."""
        return self.slope is None or self.slope < 1.0


@dataclass(frozen=True)
class Solution:
    """The answer of :func:`theory.engine.solve`.

    ``value``: order parameters of the selected (lowest free energy among the stable ones, if
    any) branch on the first draws; ``result``: its result code, or ``"repeat_unconverged"``
    when it converged but an MC repeat did not (``"branch_unconverged"``: with
    ``repeats_per_branch``, another compared branch did not); ``best``: that
    :class:`BranchResult`; ``branches``: every distinct converged fixed point found (records,
    lowest objective first, each with ``start`` and ``label``; with ``repeats_per_branch`` the
    repeat-mean records of the distinct branches, unconverged ones included); ``repeats``: the
    per-repeat output rows (R of them, the first from ``best``); ``metrics`` / ``mc_err``: the
    rows averaged over repeats with their MC errors (None when unknown: one repeat); ``flags``:
    human-readable warnings; ``stats``: counts and times; ``starts`` (``repeats_per_branch``
    only): one summary per start, in order (:func:`theory.engine.driver.solve`)."""

    value: np.ndarray
    result: str
    best: BranchResult
    branches: tuple
    repeats: tuple
    metrics: Mapping
    mc_err: Mapping
    flags: tuple
    stats: Mapping
    starts: tuple = ()
    #: the solved branch on every repeat's draws (repeat 0 is ``best``): what a neighbouring
    #: point continues from (:func:`theory.engine.solve`'s ``previous``)
    repeat_branches: tuple = field(default=(), repr=False)

    @property
    def converged(self) -> bool:
        return self.result == "converged"
