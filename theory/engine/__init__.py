"""One engine for the replica-symmetric solvers (THEORY.md §9; issue 13).

``solve(channel, settings, key, starts) -> Solution``: the whole solve protocol (warm/full phases,
Stein retry, branch search from several starts with the choice by free energy, MC repeats with
aggregation and errors, stall detection, flags) for any :class:`Channel` — a theory's equations
as pure functions of the order parameters, the frozen draws and the prox warm start.
:class:`Settings` (frozen) holds the solver's choices, :class:`Solution` / :class:`BranchResult`
(frozen) the answers with result codes. ``solve_branch`` solves one branch (continuation);
``choose`` picks the reported branch (the lowest objective among the stable ones).

Channels: symmetric LoRA (:mod:`theory.finetuning.lora`, T28–T32), general u vᵀ LoRA
(:mod:`theory.finetuning.general_lora`, T33), general-σ pre-training
(:mod:`theory.pretraining.channel`, T6–T19), the Bayes fine-tuning SE
(:class:`theory.finetuning.bayes.BayesSEChannel`, T38–T40: stability hook, every start on every
repeat). Not ported: the deterministic Bayes pre-training SE (T21–T23; :mod:`.channel`).
"""

from .channel import Channel
from .driver import choose, find_branches, flags_of, repeat_start, solve, solve_branch
from .linear_response import sample_row
from .repeats import aggregate, parallel_map, repeat_key
from .settings import RESULT_CODES, BranchResult, Settings, Solution, Start

__all__ = ["Channel", "Settings", "Start", "BranchResult", "Solution", "RESULT_CODES", "solve",
           "solve_branch", "find_branches", "choose", "repeat_key", "aggregate", "flags_of",
           "parallel_map", "repeat_start", "sample_row"]
