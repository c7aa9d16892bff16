"""Pre-training theory (THEORY.md §3): one entry point, :func:`solve_pretraining`.

Dispatch (each module documents its equations):

=========== ========== ====================================================
estimator   attention  solver
=========== ========== ====================================================
direct      linear     :func:`direct.solve_linear` (closed form T12)
factorized  linear     :func:`factorized.solve_linear` (two scalars, T18)
direct      softmax    :func:`general.solve` (RS, MC channel T6–T8 + T13)
factorized  softmax    :func:`general.solve` (RS, MC channel + T14–T19)
bayes       any        :func:`bayes.solve` (state evolution T22–T23)
=========== ========== ====================================================

The general RS solver also handles the linear case; the tests use that as a cross-check.
"""

from __future__ import annotations

from ..config import Config
from ..states import PretrainState

__all__ = ["solve_pretraining"]


def solve_pretraining(cfg: Config) -> PretrainState:
    """The pre-training fixed point for ``cfg`` (see the dispatch table above)."""
    estimator = cfg.pretrain.estimator
    linear = cfg.model.attention == "linear"
    if estimator == "bayes":
        from . import bayes

        return bayes.solve(cfg)
    if linear and estimator == "direct":
        from . import direct

        return direct.solve_linear(cfg)
    if linear and estimator == "factorized":
        from . import factorized

        return factorized.solve_linear(cfg)
    from . import general

    return general.solve(cfg)
