"""The error-vs-alignment mismatch map (THEORY.md §6, "Mismatch regime").

For a grid of two config fields (typically ``finetune.alpha`` × ``finetune.lam``) the theory is
solved with fresh (``finetune.reuse = false``) and reused (``true``) fine-tuning sequences.
A point is marked where test error and overlap disagree:

* ``reuse_disagrees``: reuse improves one of (test error, overlap) and worsens the other,
  i.e. sign(Δtest) = sign(Δoverlap) with Δ = reused − fresh (lower error is better, higher
  overlap is better);
* along the y axis, for each x and each mode, ``argmin_y test_error`` and
  ``argmax_y overlap`` are reported; they disagree when they differ.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..config import Config
from ..predict import predict

__all__ = ["MismatchMap", "mismatch_map"]


@dataclass(frozen=True)
class MismatchMap:
    x_field: str
    y_field: str
    x_values: tuple
    y_values: tuple
    test_error: dict       # mode -> (nx, ny) array, mode in {"fresh", "reused"}
    overlap: dict
    reuse_disagrees: np.ndarray   # (nx, ny) bool
    best_y: dict           # mode -> {"test_error": [y per x], "overlap": [y per x]}
    notes: tuple = ()

    def to_dict(self) -> dict:
        return {"x_field": self.x_field, "y_field": self.y_field,
                "x_values": list(self.x_values), "y_values": list(self.y_values),
                "test_error": {k: v.tolist() for k, v in self.test_error.items()},
                "overlap": {k: v.tolist() for k, v in self.overlap.items()},
                "reuse_disagrees": self.reuse_disagrees.tolist(), "best_y": self.best_y,
                "notes": list(self.notes)}


def mismatch_map(cfg: Config, x_field: str, x_values, y_field: str, y_values) -> MismatchMap:
    """Solve the theory on the grid for both modes and mark the disagreements."""
    x_values, y_values = tuple(float(v) for v in x_values), tuple(float(v) for v in y_values)
    shape = (len(x_values), len(y_values))
    test = {m: np.full(shape, np.nan) for m in ("fresh", "reused")}
    overlap = {m: np.full(shape, np.nan) for m in ("fresh", "reused")}
    notes = []
    for i, x in enumerate(x_values):
        for j, y in enumerate(y_values):
            for mode, reuse in (("fresh", "false"), ("reused", "true")):
                point = cfg.with_overrides([f"{x_field}={x!r}", f"{y_field}={y!r}",
                                            f"finetune.reuse={reuse}"])
                result = predict(point, bayes_bound=False)
                test[mode][i, j] = result["finetune"]["test_error"]["value"]
                overlap[mode][i, j] = result["finetune"]["overlap"]["value"]
                notes += [f for f in result["flags"] if f not in notes]
    d_test = test["reused"] - test["fresh"]
    d_overlap = overlap["reused"] - overlap["fresh"]
    disagree = (np.sign(d_test) == np.sign(d_overlap)) & (d_test != 0)
    best_y = {}
    for mode in ("fresh", "reused"):
        best_y[mode] = {
            "test_error": [y_values[int(np.nanargmin(row))] if np.isfinite(row).any() else math.nan
                           for row in test[mode]],
            "overlap": [y_values[int(np.nanargmax(row))] if np.isfinite(row).any() else math.nan
                        for row in overlap[mode]],
        }
    return MismatchMap(x_field, y_field, x_values, y_values, test, overlap, disagree, best_y,
                       tuple(notes))
