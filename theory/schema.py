"""The results schema shared by ``hdlora simulate`` and ``hdlora theory`` (MODEL.md §4).

Every output is a JSON object with the blocks ``config``, ``pretrain``, ``finetune``, ``delta_eff``,
``delta_eff_train`` and ``meta``. Inside ``pretrain`` and ``finetune`` the keys are the metric names
of MODEL.md §4 without their section prefix (``pretrain.Q`` is ``out["pretrain"]["Q"]``).
A simulation stores each metric as ``{"mean", "sem", "values"}`` (per-seed values); a theory
prediction stores ``{"value", "mc_err"}`` (``mc_err`` is the Monte-Carlo standard error, 0 for
closed forms, null when it cannot be estimated, e.g. from a single MC repeat). :func:`metric_key`
and :func:`split_metric` convert between the dotted names and the blocks.

:func:`z_score` is the one theory-vs-simulation z of every output (``hdlora compare``,
``python -m figures.table``, ``hdlora validate``): z = (theory − simulation)/√(sem² + mc_err²),
positive when the theory lies above the simulation, None when either error is unknown.
"""

from __future__ import annotations

import math

__all__ = ["PRETRAIN_METRICS", "FINETUNE_METRICS", "TOP_METRICS", "ALL_METRICS",
           "split_metric", "metric_key", "z_score", "known"]

PRETRAIN_METRICS = (
    "test_error", "test_error_clean", "train_error", "objective", "Q", "M", "Q0", "mse",
)
FINETUNE_METRICS = (
    "test_error", "test_error_clean", "train_error", "objective", "q", "m", "overlap",
    "q0star", "baseline_error",
)
TOP_METRICS = ("delta_eff", "delta_eff_train")

ALL_METRICS = tuple(
    [f"pretrain.{k}" for k in PRETRAIN_METRICS]
    + [f"finetune.{k}" for k in FINETUNE_METRICS]
    + list(TOP_METRICS)
)


def split_metric(name: str) -> tuple[str, str | None]:
    """``"pretrain.Q"`` -> ``("pretrain", "Q")``; ``"delta_eff"`` -> ``("delta_eff", None)``."""
    if name in TOP_METRICS:
        return name, None
    block, _, key = name.partition(".")
    if block == "pretrain" and key in PRETRAIN_METRICS:
        return block, key
    if block == "finetune" and key in FINETUNE_METRICS:
        return block, key
    raise KeyError(f"unknown metric {name!r}; known: {', '.join(ALL_METRICS)}")


def metric_key(block: str, key: str | None) -> str:
    """Inverse of :func:`split_metric`."""
    return block if key is None else f"{block}.{key}"


def get_metric(result: dict, name: str) -> dict:
    """The entry of ``name`` in a result object (either kind)."""
    block, key = split_metric(name)
    entry = result[block]
    return entry if key is None else entry[key]


def known(x) -> bool:
    """True for a finite number (None and NaN mean unknown)."""
    try:
        return x is not None and math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


def z_score(theory, theory_err, simulation, simulation_err) -> float | None:
    """z = (theory − simulation)/√(simulation_err² + theory_err²).

    The sign convention of every hdlora output: z > 0 when the theory predicts more than the
    simulation measured. ``theory_err`` is the theory's MC error (0 for a closed form),
    ``simulation_err`` the standard error of the simulation (over seeds, or of an
    extrapolation). None when a value or an error is unknown (None/NaN: e.g. a single seed or a
    single MC repeat) or both errors are 0, so z is never inflated by an error taken as zero."""
    if not all(known(x) for x in (theory, theory_err, simulation, simulation_err)):
        return None
    scale = math.hypot(float(simulation_err), float(theory_err))
    if scale == 0:
        return None
    return (float(theory) - float(simulation)) / scale
