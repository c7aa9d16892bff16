"""The error-vs-alignment mismatch map (THEORY.md §6, "Mismatch regime").

For a grid of two config fields (typically ``finetune.alpha`` × ``finetune.lam``) the theory is
solved with fresh (``finetune.reuse = false``) and reused (``true``) fine-tuning sequences.
A point is marked where test error and overlap disagree:

* ``reuse_disagrees``: reuse improves one of (test error, overlap) and worsens the other,
  i.e. sign(Δtest) = sign(Δoverlap) with Δ = reused − fresh (lower error is better, higher
  overlap is better);
* along the y axis, for each x and each mode, ``argmin_y test_error`` and
  ``argmax_y overlap`` are reported; they disagree when they differ.

Both marks require the differences to exceed ``Z_SIGNIFICANT`` times their Monte Carlo error
(errors of independent solves added in quadrature), so MC noise between two nearly equal
points is never reported as a disagreement; ``trusted`` marks the cells where neither mode's
solve flags itself as doubtful (not converged, RS doubtful): a mark on an untrusted cell is a
statement about the RS fixed point only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..config import Config
from ..predict import converged, predict, predict_pretraining, pretrain_key

__all__ = ["MismatchMap", "mismatch_map", "Z_SIGNIFICANT"]

Z_SIGNIFICANT = 2.0   # a difference counts when it exceeds this many combined MC errors


@dataclass(frozen=True)
class MismatchMap:
    x_field: str
    y_field: str
    x_values: tuple
    y_values: tuple
    test_error: dict       # mode -> (nx, ny) array, mode in {"fresh", "reused"}
    overlap: dict
    reuse_disagrees: np.ndarray   # (nx, ny) bool, significant beyond MC error
    best_y: dict           # mode -> {"test_error": [y per x], "overlap": [y per x],
                           #          "disagree": [bool per x, significant beyond MC error]}
    test_error_err: dict = None   # mode -> (nx, ny) MC errors
    overlap_err: dict = None
    trusted: np.ndarray = None    # (nx, ny) bool: no doubt flag in either mode
    notes: tuple = ()

    def to_dict(self) -> dict:
        return {"x_field": self.x_field, "y_field": self.y_field,
                "x_values": list(self.x_values), "y_values": list(self.y_values),
                "test_error": {k: v.tolist() for k, v in self.test_error.items()},
                "overlap": {k: v.tolist() for k, v in self.overlap.items()},
                "test_error_err": {k: v.tolist() for k, v in self.test_error_err.items()},
                "overlap_err": {k: v.tolist() for k, v in self.overlap_err.items()},
                "reuse_disagrees": self.reuse_disagrees.tolist(), "best_y": self.best_y,
                "trusted": self.trusted.tolist(), "notes": list(self.notes)}


def mismatch_map(cfg: Config, x_field: str, x_values, y_field: str, y_values) -> MismatchMap:
    """Solve the theory on the grid for both modes and mark the disagreements."""
    x_values, y_values = tuple(float(v) for v in x_values), tuple(float(v) for v in y_values)
    shape = (len(x_values), len(y_values))
    modes = ("fresh", "reused")
    test, test_err, overlap, overlap_err = ({m: np.full(shape, np.nan) for m in modes}
                                            for _ in range(4))
    trusted = np.ones(shape, bool)
    notes = []
    pretrain_states: dict = {}
    for i, x in enumerate(x_values):
        for j, y in enumerate(y_values):
            for mode, reuse in (("fresh", "false"), ("reused", "true")):
                point = cfg.with_overrides([f"{x_field}={x!r}", f"{y_field}={y!r}",
                                            f"finetune.reuse={reuse}"])
                # x and y are usually fine-tuning fields: one pre-training solve serves the grid
                pre_key = pretrain_key(point)
                if pre_key not in pretrain_states:
                    pretrain_states[pre_key] = predict_pretraining(point)
                result = predict(point, pre=pretrain_states[pre_key], bayes_bound=False)
                for store, err, key in ((test, test_err, "test_error"),
                                        (overlap, overlap_err, "overlap")):
                    entry = result["finetune"][key]
                    store[mode][i, j] = entry["value"]
                    err[mode][i, j] = _err(entry["mc_err"])
                flags = [f for f in result["flags"] if f.startswith("finetune")]
                if not converged(result) or any(_doubt(f) for f in flags):
                    trusted[i, j] = False
                notes += [f"{x_field}={x:g}, {y_field}={y:g}, {mode}: {f}" for f in flags]
    d_test = test["reused"] - test["fresh"]
    d_overlap = overlap["reused"] - overlap["fresh"]
    sig_test = np.abs(d_test) > Z_SIGNIFICANT * np.hypot(test_err["reused"], test_err["fresh"])
    sig_overlap = np.abs(d_overlap) > Z_SIGNIFICANT * np.hypot(overlap_err["reused"],
                                                               overlap_err["fresh"])
    disagree = (np.sign(d_test) == np.sign(d_overlap)) & sig_test & sig_overlap
    best_y = {}
    for mode in modes:
        rows = []
        for i in range(shape[0]):
            te, ov = test[mode][i], overlap[mode][i]
            if not (np.isfinite(te).any() and np.isfinite(ov).any()):
                rows.append((math.nan, math.nan, False))
                continue
            jt, jo = int(np.nanargmin(te)), int(np.nanargmax(ov))
            # significant: the overlap-optimal y costs test error, and the error-optimal y costs
            # overlap, each beyond Z_SIGNIFICANT combined MC errors
            cost_test = te[jo] - te[jt] > Z_SIGNIFICANT * math.hypot(test_err[mode][i, jo],
                                                                    test_err[mode][i, jt])
            cost_overlap = ov[jo] - ov[jt] > Z_SIGNIFICANT * math.hypot(overlap_err[mode][i, jo],
                                                                       overlap_err[mode][i, jt])
            rows.append((y_values[jt], y_values[jo], bool(jt != jo and cost_test and cost_overlap)))
        best_y[mode] = {"test_error": [r[0] for r in rows], "overlap": [r[1] for r in rows],
                        "disagree": [r[2] for r in rows]}
    return MismatchMap(x_field, y_field, x_values, y_values, test, overlap, disagree, best_y,
                       test_err, overlap_err, trusted, tuple(notes))


def _doubt(flag: str) -> bool:
    """A flag that makes a cell untrusted (informational ones, e.g. "2 fixed points found; the
    lowest objective is reported", do not)."""
    return "not converged" in flag or "RS doubtful" in flag or "failed" in flag


def _err(value) -> float:
    """An MC error as a number (0 where the solver reports none)."""
    return float(value) if value is not None and math.isfinite(float(value)) else 0.0
