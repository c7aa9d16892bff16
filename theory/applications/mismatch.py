"""The error-vs-alignment mismatch map (THEORY.md §6, "Mismatch regime").

For a grid of two config fields — fine-tuning fields (``finetune.alpha``, ``finetune.lam``,
``finetune.recalibrate``, ``finetune.reuse_fraction``) or pre-training ones (``pretrain.lam``,
``pretrain.alpha``, ``pretrain.kappa``, ...) — the theory is solved in each *mode* (by default
fresh, ``finetune.reuse = false``, and reused, ``true``; any set of overrides can be a mode).
The pre-training theory is solved once per pre-training value (:func:`theory.predict.pretrain_key`)
and shared by every fine-tuning value and every mode at that value.

Two marks, both required to exceed ``Z_SIGNIFICANT`` times their Monte Carlo error (errors of
independent solves added in quadrature), so MC noise between nearly equal points is never
reported as a disagreement:

* ``reuse_disagrees`` (when the modes are "fresh" and "reused"): reuse improves one of
  (test error, overlap) and worsens the other, i.e. sign(Δtest) = sign(Δoverlap) with
  Δ = reused − fresh (lower error is better, higher overlap is better);
* along the y axis, for each x and each mode, the test-optimal ``y_te = argmin_y test_error`` and
  the overlap-optimal ``y_ov = argmax_y overlap`` (``best_y``). Their disagreement is measured by
  :func:`strength`: the overlap gained by choosing y_ov instead of y_te,
  ``overlap_gain = o(y_ov) − o(y_te) ≥ 0``, and the test error it costs,
  ``test_cost = E(y_ov) − E(y_te) ≥ 0`` (absolute) and ``test_cost / E(y_te)`` (relative), each
  with its MC error; ``disagree`` when y_ov ≠ y_te and both exceed ``Z_SIGNIFICANT`` errors.

``trusted`` marks the cells where no mode's solve flags itself as doubtful (not converged, RS
doubtful): a mark on an untrusted cell is a statement about the RS fixed point only.
``x_field = None`` gives a one-dimensional scan along y (one column, no x override).

Continuation along x: for each y row and mode the cells are solved in the order of
``x_values``, each fine-tuning solve started from the solution of its left neighbour (and, when x
is a pre-training field, each new pre-training solve from the left neighbour's pre-training
state), as one more start: every cell still runs its own branch search and keeps its own flags
(:func:`theory.predict.predict_finetuning`). The chains (one per y row and mode) are independent
and run on ``workers`` threads; the pre-training solves run before them in the grid's order, so
the numbers do not depend on the threads.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field

import numpy as np

from ..config import Config
from ..engine import parallel_map
from ..engine.settings import available_cores
from ..predict import converged, predict_pretraining, predict_states, pretrain_key

__all__ = ["MismatchMap", "mismatch_map", "strength", "fraction_modes", "Z_SIGNIFICANT",
           "DEFAULT_MODES"]

Z_SIGNIFICANT = 2.0   # a difference counts when it exceeds this many combined MC errors
DEFAULT_MODES = {"fresh": ("finetune.reuse=false",), "reused": ("finetune.reuse=true",)}
#: metrics kept per cell (name in the map -> predict() entry)
_METRICS = {"test_error": ("finetune", "test_error"), "overlap": ("finetune", "overlap"),
            "delta_eff": ("delta_eff", None), "delta_eff_train": ("delta_eff_train", None)}


@dataclass(frozen=True)
class MismatchMap:
    x_field: str | None
    y_field: str
    x_values: tuple
    y_values: tuple
    test_error: dict       # mode -> (nx, ny) array
    overlap: dict
    reuse_disagrees: np.ndarray   # (nx, ny) bool, significant beyond MC error (fresh vs reused)
    best_y: dict           # mode -> {"test_error": [y_te per x], "overlap": [y_ov per x],
                           #          "disagree": [bool per x], + the strength() keys per x}
    test_error_err: dict = None   # mode -> (nx, ny) MC errors
    overlap_err: dict = None
    trusted: np.ndarray = None    # (nx, ny) bool: no doubt flag in any mode
    notes: tuple = ()
    extra: dict = field(default_factory=dict)   # "delta_eff"/"delta_eff_train"[_err] -> mode -> array
    pretrain_solves: int = 0      # number of pre-training theory solves the map needed

    def to_dict(self) -> dict:
        arrays = lambda d: {k: v.tolist() for k, v in d.items()}  # noqa: E731
        return {"x_field": self.x_field, "y_field": self.y_field,
                "x_values": list(self.x_values), "y_values": list(self.y_values),
                "test_error": arrays(self.test_error), "overlap": arrays(self.overlap),
                "test_error_err": arrays(self.test_error_err),
                "overlap_err": arrays(self.overlap_err),
                "reuse_disagrees": self.reuse_disagrees.tolist(), "best_y": self.best_y,
                "trusted": self.trusted.tolist(), "notes": list(self.notes),
                "extra": {k: arrays(v) for k, v in self.extra.items()},
                "pretrain_solves": self.pretrain_solves}


def mismatch_map(cfg: Config, x_field: str | None, x_values, y_field: str, y_values, *,
                 modes: dict | None = None, progress=None, workers: int | None = None
                 ) -> MismatchMap:
    """Solve the theory on the grid in every mode and measure where the optima disagree.

    ``modes``: name -> overrides (default :data:`DEFAULT_MODES`); ``progress``: optional callable
    ``progress(done, total, text)`` called after each solve; ``workers``: threads for the
    fine-tuning chains (one chain per y row and mode, continued along x; default: the cores of
    the process, :func:`theory.engine.settings.available_cores`). The pre-training solves run
    first, in the grid's order, so every number is the same for any ``workers``."""
    modes = dict(DEFAULT_MODES if modes is None else modes)
    x_values = (None,) if x_field is None else tuple(_value(v) for v in x_values)
    y_values = tuple(_value(v) for v in y_values)
    shape = (len(x_values), len(y_values))
    cells = [(i, j, mode) for i in range(shape[0]) for j in range(shape[1]) for mode in modes]
    points, wheres = {}, {}
    for i, j, mode in cells:
        x, y = x_values[i], y_values[j]
        axes = ([] if x_field is None else [f"{x_field}={_literal(x)}"]) \
            + [f"{y_field}={_literal(y)}"]
        points[i, j, mode] = cfg.with_overrides(list(modes[mode]) + axes)
        wheres[i, j, mode] = ("" if x_field is None else f"{x_field}={_fmt(x)}, ") \
            + f"{y_field}={_fmt(y)}, {mode}"
    # pass 1, in the grid's order: one pre-training solve per pre-training value, shared by the
    # fine-tuning values and modes at it, each started from its row's left neighbour
    pretrain_states: dict = {}
    left_pre: dict = {}    # (y index, mode) -> the left neighbour's pre-training state
    pre_of: dict = {}      # cell -> its pre-training state (or the error that solve raised)
    for cell in cells:
        i, j, mode = cell
        pre_key = pretrain_key(points[cell])
        if pre_key not in pretrain_states:
            try:
                warm = left_pre.get((j, mode))
                pretrain_states[pre_key] = (predict_pretraining(points[cell]) if warm is None
                                            else predict_pretraining(points[cell], start=warm))
            except (ValueError, ArithmeticError) as err:   # solved once, failed once
                pretrain_states[pre_key] = err
        pre_of[cell] = pretrain_states[pre_key]
        if not isinstance(pre_of[cell], Exception):
            left_pre[(j, mode)] = pre_of[cell]
    # pass 2: the fine-tuning chains, in parallel (each continued along x from its left
    # neighbour; a failed cell ends the continuation: its right neighbour starts cold)
    total, lock, done = len(cells), threading.Lock(), [0]

    def chain(row):
        j, mode = row
        outcome, left = {}, None
        for i in range(shape[0]):
            cell = (i, j, mode)
            try:
                pre = pre_of[cell]
                if isinstance(pre, Exception):
                    raise pre
                outcome[cell], _, left = predict_states(points[cell], pre=pre,
                                                        bayes_bound=False, start=left)
            except (ValueError, ArithmeticError) as err:
                outcome[cell], left = err, None
            with lock:
                done[0] += 1
                if progress is not None:
                    failed = isinstance(outcome[cell], Exception)
                    progress(done[0], total, wheres[cell] + (" (failed)" if failed else ""))
        return outcome

    rows = [(j, mode) for j in range(shape[1]) for mode in modes]
    outcomes: dict = {}
    for part in parallel_map(chain, rows, available_cores() if workers is None else workers):
        outcomes.update(part)
    values = {name: {m: np.full(shape, np.nan) for m in modes} for name in _METRICS}
    errors = {name: {m: np.full(shape, np.nan) for m in modes} for name in _METRICS}
    trusted = np.ones(shape, bool)
    notes = []
    for cell in cells:                      # assembled in the grid's order
        i, j, mode = cell
        result = outcomes[cell]
        if isinstance(result, Exception):
            # a solver that left its domain: the cell stays NaN and untrusted, the map goes on
            trusted[i, j] = False
            notes.append(f"{wheres[cell]}: failed: {type(result).__name__}: {result}")
            continue
        for name, (block, key) in _METRICS.items():
            entry = result[block] if key is None else (result[block] or {}).get(key)
            if entry:
                values[name][mode][i, j] = entry["value"]
                errors[name][mode][i, j] = _err(entry["mc_err"])
        # fine-tuning flags, and the pre-training doubts (its fixed point feeds every cell)
        flags = [f for f in result["flags"] if f.startswith("finetune") or _doubt(f)]
        if not converged(result) or any(_doubt(f) for f in flags):
            trusted[i, j] = False
        notes += [f"{wheres[cell]}: {f}" for f in flags]
    test, overlap = values["test_error"], values["overlap"]
    test_err, overlap_err = errors["test_error"], errors["overlap"]
    if {"fresh", "reused"} <= set(modes):
        d_test = test["reused"] - test["fresh"]
        d_overlap = overlap["reused"] - overlap["fresh"]
        sig_test = np.abs(d_test) > Z_SIGNIFICANT * np.hypot(test_err["reused"],
                                                             test_err["fresh"])
        sig_overlap = np.abs(d_overlap) > Z_SIGNIFICANT * np.hypot(overlap_err["reused"],
                                                                   overlap_err["fresh"])
        disagree = (np.sign(d_test) == np.sign(d_overlap)) & sig_test & sig_overlap
    else:
        disagree = np.zeros(shape, bool)
    best_y = {}
    for mode in modes:
        rows = [strength(y_values, test[mode][i], test_err[mode][i], overlap[mode][i],
                         overlap_err[mode][i]) for i in range(shape[0])]
        best_y[mode] = {key: [r[key] for r in rows] for key in rows[0]}
        # the names the map used before the strength measure
        best_y[mode]["test_error"] = best_y[mode]["y_test"]
        best_y[mode]["overlap"] = best_y[mode]["y_overlap"]
    extra = {}
    for name in ("delta_eff", "delta_eff_train"):
        extra[name], extra[name + "_err"] = values[name], errors[name]
    return MismatchMap(x_field, y_field, x_values, y_values, test, overlap, disagree, best_y,
                       test_err, overlap_err, trusted, tuple(notes), extra, len(pretrain_states))


def fraction_modes(fractions) -> dict:
    """Modes for partial reuse: ``"e=<e>"`` -> the overrides of reuse fraction e (e = 0: fresh
    sequences, ``reuse = false``; e > 0: ``reuse = true`` with ``reuse_fraction = e``)."""
    return {f"e={e:g}": (("finetune.reuse=false",) if e == 0 else
                         ("finetune.reuse=true", f"finetune.reuse_fraction={float(e)!r}"))
            for e in fractions}


def strength(y_values, test, test_err, overlap, overlap_err) -> dict:
    """The mismatch strength along one scan: test-optimal ``y_test``, overlap-optimal
    ``y_overlap``, ``overlap_gain = o(y_ov) − o(y_te)``, ``test_cost = E(y_ov) − E(y_te)`` and
    ``test_cost_rel = test_cost / E(y_te)``, each with its MC error (``*_err``; independent solves,
    quadrature; the ratio's by first-order propagation), and ``disagree``: y_ov ≠ y_te with both
    the gain and the cost beyond :data:`Z_SIGNIFICANT` errors. NaN where the scan has no value."""
    te, ov = np.asarray(test, float), np.asarray(overlap, float)
    te_e, ov_e = np.nan_to_num(np.asarray(test_err, float)), np.nan_to_num(
        np.asarray(overlap_err, float))
    nan = math.nan
    if not (np.isfinite(te).any() and np.isfinite(ov).any()):
        return {"y_test": nan, "y_overlap": nan, "overlap_gain": nan, "overlap_gain_err": nan,
                "test_cost": nan, "test_cost_err": nan, "test_cost_rel": nan,
                "test_cost_rel_err": nan, "disagree": False}
    jt, jo = int(np.nanargmin(te)), int(np.nanargmax(ov))
    gain, gain_err = ov[jo] - ov[jt], math.hypot(ov_e[jo], ov_e[jt])
    cost, cost_err = te[jo] - te[jt], math.hypot(te_e[jo], te_e[jt])
    # rel = E(y_ov)/E(y_te) - 1, the two solves independent
    rel = cost / te[jt]
    rel_err = (te[jo] / te[jt]) * math.hypot(te_e[jo] / te[jo], te_e[jt] / te[jt])
    significant = (jt != jo and cost > Z_SIGNIFICANT * cost_err
                   and gain > Z_SIGNIFICANT * gain_err)
    return {"y_test": y_values[jt], "y_overlap": y_values[jo], "overlap_gain": float(gain),
            "overlap_gain_err": float(gain_err), "test_cost": float(cost),
            "test_cost_err": float(cost_err), "test_cost_rel": float(rel),
            "test_cost_rel_err": float(rel_err), "disagree": bool(significant)}


def _value(v):
    """A grid value: a number where it parses as one, else the string (e.g. "optimal")."""
    try:
        return float(v)
    except (TypeError, ValueError):
        return str(v)


def _fmt(v) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def _literal(v) -> str:
    return repr(v) if isinstance(v, float) else f'"{v}"'


def _doubt(flag: str) -> bool:
    """A flag that makes a cell untrusted (informational ones, e.g. "2 fixed points found; the
    lowest objective is reported", do not)."""
    return "not converged" in flag or "RS doubtful" in flag or "failed" in flag


def _err(value) -> float:
    """An MC error as a number; NaN where it is unknown (a single MC repeat): a difference with
    an unknown error is never called significant (NaN comparisons are False)."""
    return float(value) if value is not None and math.isfinite(float(value)) else math.nan
