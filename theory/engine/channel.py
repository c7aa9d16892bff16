"""The channel protocol: what a replica-symmetric solver supplies to :mod:`theory.engine`.

A channel is the equations of one theory (the saddle point of THEORY.md T28–T31 for symmetric
LoRA, T33 for general u vᵀ LoRA, T6–T19 general-σ pre-training, the T38–T40 Bayes SE) written as
pure functions of the order parameters x (a flat float64 vector), the frozen draws of one MC
repeat and the per-sample warm start of the prox. The driver owns the protocol (§9): the two
phases, the Stein retry, the branch search, the choice by free energy, the MC repeats, their
aggregation and the flags; a channel owns no solver state.

Methods (all pure; ``data`` and ``warm`` are whatever the channel's jitted code takes):

``draws(key) -> data``
    the frozen common random numbers of one MC repeat (the driver folds the repeat index in).
``cold_warm(data) -> warm``
    the warm start before any evaluation (the first call of a cold branch is a full one).
``sanitize(x) -> x``
    x projected on the domain of the map (q ≥ 0, |m| ≤ √(q q0*), v > 0, PD matrices, ...).
``means(x, warm, data, full) -> (means, warm)``
    sample means of the hat ingredients at sanitize(x), each sample's prox started at ``warm``
    only (``full=False``: the cheap warm phase) or from every start of the multistart
    (``full=True``: the map whose fixed point is reported, with the flags' fractions).
``hats(x, means, force_stein) -> (hats, stein)``
    the conjugates (T30 / T33): derivative forms, or the Stein forms when the multi-minimum
    fraction is ≥ STEIN_THRESHOLD or ``force_stein``; ``stein`` says which were used.
``prior(hats) -> x``
    the prior step (T31 / T33): the next order parameters.
``record(x, hats, means, stein) -> dict``
    outputs of a solved branch: at least ``objective`` (the free energy at the saddle, by which
    the global branch is chosen), ``overlap`` and ``rs_doubtful``.
``outputs(branch, data) -> dict``
    the per-repeat metric row aggregated over repeats (``branch`` a
    :class:`~theory.engine.settings.BranchResult`); an optional entry ``"_se"`` maps metric names
    to their within-draw MC standard errors (sampled test formulas).
``label(record) -> str`` ; ``distinct(a, b) -> bool`` ; ``doubt(record) -> str | None``
    branch label, whether two records are different fixed points, and the "RS doubtful" flag.

Attribute ``stage``: a word for the flags ("fine-tuning", "pre-training", "SE").

Optional hook ``stability(x, data) -> (slope, kick)``: the slope of the undamped map at a solved
point x on the same draws (a scalar; for a vector map the spectral radius of its Jacobian) and the
displacement of the start from which an unstable point (slope ≥ 1) is left. With it every
:class:`~theory.engine.settings.BranchResult` carries ``slope`` (and the record ``slope``,
``stable``), the driver escapes from converged unstable points (plain damped steps, Anderson
again, plain to the end: :func:`theory.engine.driver.solve_branch`) and the choice of the branch
takes the lowest objective among the stable ones (flag "no stable <stage> fixed point found ..."
when there is none). With ``Settings.repeats_per_branch`` the ``outputs`` rows must carry
``objective`` and whatever ``distinct`` reads (the branches are compared by their repeat means).

Optional hook ``to_iter(x) -> y`` / ``from_iter(y) -> x``: the coordinates the damped/Anderson
iteration runs in (same fixed points; tol and the stall test then apply to y). The general-σ
pre-training iterates y = (log Q, atanh(M/√(Q Q0)), log V) so that no extrapolated step leaves
Q > 0, V > 0, M² < Q Q0. A map value outside the domain (``prior`` returning NaN, e.g. hats the
prior step rejects) is backtracked by :func:`theory.fixed_point.damped_fixed_point` (halfway
towards the last in-domain iterate, in y).

Channels: symmetric LoRA (:class:`theory.finetuning.lora.LoraChannel`), general u vᵀ LoRA
(:mod:`theory.finetuning.general_lora`), general-σ pre-training
(:class:`theory.pretraining.channel.PretrainChannel`: one start, the Stein latch carried in its
warm start, the iteration-coordinate hook), the Bayes fine-tuning SE
(:class:`theory.finetuning.bayes.BayesSEChannel`, T38–T40: no prox, no warm start, one phase
(``Settings.phase2_rounds = 0``), objective = −Φ (free entropy maximised), the stability hook,
every start on every repeat with ``Settings.repeats_per_branch``; its ``draws`` keeps the draws
fold_in(seed key, r) of repeat r, repeat 0 included).

Not ported: the Bayes pre-training SE (:mod:`theory.pretraining.bayes`, T21–T23), a
deterministic scalar map with its own Newton / regula-falsi step, no free entropy (it reports the
uninformative start's fixed point and flags a second one) and no draws (see its docstring).
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np

__all__ = ["Channel"]


@runtime_checkable
class Channel(Protocol):
    stage: str

    def draws(self, key) -> Any: ...

    def cold_warm(self, data) -> Any: ...

    def sanitize(self, x) -> np.ndarray: ...

    def means(self, x, warm, data, full: bool) -> tuple[dict, Any]: ...

    def hats(self, x, means: dict, force_stein: bool) -> tuple[tuple, bool]: ...

    def prior(self, hats: tuple) -> np.ndarray: ...

    def record(self, x, hats: tuple, means: dict, stein: bool) -> dict: ...

    def outputs(self, branch, data) -> dict: ...

    def label(self, record: dict) -> str: ...

    def distinct(self, a: dict, b: dict) -> bool: ...

    def doubt(self, record: dict) -> str | None: ...
