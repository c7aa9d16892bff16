"""The results schema shared by ``hdlora simulate`` and ``hdlora theory`` (MODEL.md §4).

Every output is a JSON object with the blocks ``config``, ``pretrain``, ``finetune``, ``delta_eff``,
``delta_eff_train`` and ``meta``. Inside ``pretrain`` and ``finetune`` the keys are the metric names
of MODEL.md §4 without their section prefix (``pretrain.Q`` is ``out["pretrain"]["Q"]``).
A simulation stores each metric as ``{"mean", "sem", "values"}`` (per-seed values); a theory
prediction stores ``{"value", "mc_err"}`` (``mc_err`` is the Monte-Carlo standard error, 0 for
closed forms, null when not estimated). :func:`metric_key` and :func:`split_metric` convert between
the dotted names and the blocks.
"""

from __future__ import annotations

__all__ = ["PRETRAIN_METRICS", "FINETUNE_METRICS", "TOP_METRICS", "ALL_METRICS",
           "split_metric", "metric_key"]

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
