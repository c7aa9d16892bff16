"""The results store: one JSON file per finished task, written atomically, checked when read.

Layout under the store root (default ``results/<sweep name>/``)::

    spec.json                        the sweep spec as run (axes, seeds, base config)
    theory/<point_id>.json           one theory point
    simulate/<point_id>_s<seed>.json one simulation point and seed
    <kind>/.<name>.claim             a task claimed by a running sweep (see :mod:`.claims`)

A record holds the axis values, the resolved config and its digest, the seed, every metric of
theory/schema.py (value and error), solver/optimiser diagnostics and the provenance (package
versions, git commit, time). Files are written to a temporary name in the same directory and
renamed (:func:`simulations.jsonio.write_atomic`), with the process umask, as strict JSON (NaN is
written ``null``). A killed writer leaves either the whole record or nothing; a record that is
nevertheless unreadable (a truncated copy, a disk error, a hand edit) is detected: it does not
count as finished (:meth:`ResultStore.has` is False, so a resumed sweep redoes the task, with a
warning naming the file) and loading skips it with a :class:`CorruptRecordWarning` naming the
file, never a bare ``JSONDecodeError``.

Loading gives a tidy table (:func:`load_table`, one row per record × metric) — chosen as the
primary form because sweeps with zipped axes or unfinished points are ragged and the tidy form
keeps the provenance beside every number — and :func:`to_dataset` turns it into an
``xarray.Dataset`` with the sweep axes as dimensions.
"""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path
from typing import Iterable

import numpy as np

from simulations.jsonio import dumps, write_atomic

__all__ = ["ResultStore", "load_table", "to_dataset", "CorruptRecordWarning", "check_record",
           "theory_flags", "trusted_for", "stage_of_flag"]

#: keys every record has (a file without them is not a record of this store)
RECORD_KEYS = ("kind", "point", "point_id", "metrics")


class CorruptRecordWarning(UserWarning):
    """A record file that cannot be read or is not a record (the message names the file)."""


def check_record(path: Path) -> tuple[dict | None, str | None]:
    """``(record, None)`` for a valid record file, ``(None, reason)`` otherwise."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        return None, f"cannot be read ({err})"
    try:
        record = json.loads(text)
    except json.JSONDecodeError as err:
        return None, f"is not valid JSON (truncated or corrupt: {err})"
    if not isinstance(record, dict):
        return None, "is not a JSON object"
    missing = [k for k in RECORD_KEYS if k not in record]
    if missing:
        return None, f"is not a record (missing {', '.join(missing)})"
    if not isinstance(record["metrics"], dict) or not isinstance(record["point"], dict):
        return None, "is not a record (metrics and point must be objects)"
    return record, None


def _warn(path: Path, reason: str, action: str) -> None:
    warnings.warn(f"record {str(path)!r} {reason}: {action}", CorruptRecordWarning, stacklevel=3)


class ResultStore:
    """A directory of atomically written task records (see the module docstring)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def path(self, kind: str, point_id: str, seed: int | None = None) -> Path:
        name = point_id if seed is None else f"{point_id}_s{seed}"
        return self.root / kind / f"{name}.json"

    def has(self, kind: str, point_id: str, seed: int | None = None) -> bool:
        """True when the task's record exists and is a valid record; a file that is not (a
        truncated write, a corrupt copy) is reported with a warning and counts as not done."""
        target = self.path(kind, point_id, seed)
        if not target.exists():
            return False
        _, reason = check_record(target)
        if reason is not None:
            _warn(target, reason, "the task will be redone")
            return False
        return True

    def write(self, kind: str, point_id: str, record: dict, seed: int | None = None) -> Path:
        """Write one record atomically (temp file + fsync + rename, mode from the umask)."""
        record = {**record, "written_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        return write_atomic(self.path(kind, point_id, seed), dumps(record, indent=1))

    def write_spec(self, spec_record: dict) -> None:
        write_atomic(self.root / "spec.json", dumps(spec_record, indent=1))

    def records(self, kind: str | None = None) -> Iterable[dict]:
        """Every valid record (of ``kind``, or theory then simulate); an invalid file is skipped
        with a :class:`CorruptRecordWarning` naming it."""
        kinds = [kind] if kind else ["theory", "simulate"]
        for k in kinds:
            folder = self.root / k
            if not folder.is_dir():
                continue
            for file in sorted(folder.glob("*.json")):
                if file.name.startswith("."):
                    continue
                record, reason = check_record(file)
                if reason is not None:
                    _warn(file, reason, "skipped")
                    continue
                yield record


def _config_value(config: dict, dotted: str):
    section, _, field = dotted.partition(".")
    return config.get(section, {}).get(field)


def theory_flags(record: dict) -> list[tuple[str, str]]:
    """The trust flags of one theory record, as ``(stage, text)`` pairs: a solver block
    (``pretrain``, ``finetune``, ``bayes_finetune``) that did not converge or is RS doubtful
    (replicon λ_AT ≥ 1 or a multi-minimum fraction above 1 %, THEORY.md §9), or a point that is not
    available / failed (stage ``"point"``). Empty for a trusted point and for simulation records.
    One definition, read by :func:`load_table` (the ``trusted`` column the figures grey out) and
    by ``figures.table`` (the printed flags)."""
    if record.get("kind") != "theory":
        return []
    diag = record.get("diagnostics") or {}
    marks = []
    for stage, block in (diag.get("solver") or {}).items():
        if isinstance(block, dict):
            if block.get("converged") is False:
                result = block.get("result")
                how = f" ({result})" if result not in (None, "converged") else " (MC repeats)"
                marks.append((stage, f"{stage}: not converged{how}"))
            if block.get("rs_doubtful"):
                marks.append((stage, f"{stage}: RS doubtful"))
    if "not_available" in diag:
        marks.append(("point", "not available"))
    if "failed" in diag:
        marks.append(("point", f"failed ({diag['failed']})"))
    return marks


def stage_of_flag(text: str) -> str:
    """The stage of a printed flag (``"finetune: RS doubtful"`` → ``"finetune"``); a flag of the
    whole point (not available, failed) → ``"point"``."""
    head, sep, _ = text.partition(":")
    return head.strip() if sep and head.strip() in ("pretrain", "finetune", "bayes_finetune") \
        else "point"


def trusted_for(flags: list[tuple[str, str]], metric: str) -> bool:
    """Whether a theory ``metric`` is unaffected by ``flags`` (:func:`theory_flags`): a
    ``pretrain.*`` metric and the effective noises Δ_eff, Δ_eff,train (closed forms or samples of
    the pre-training state, T25, T34–T35) depend on the pre-training solve only; every other
    metric (fine-tuning, the Bayes bound) is built on the pre-training too, so any flag counts."""
    if metric.startswith("pretrain.") or metric in ("delta_eff", "delta_eff_train"):
        return not any(stage in ("pretrain", "point") for stage, _ in flags)
    return not flags


def load_table(root: str | Path):
    """Tidy ``pandas.DataFrame``: columns ``source`` (theory | simulation), ``seed`` (-1 for
    theory), the axis fields, ``metric``, ``value``, ``error`` (theory MC error; NaN for a single
    seed), ``point_id``, ``config_digest``, ``git_commit``, ``trusted`` (False for a theory metric
    its solver flags, :func:`trusted_for`; True for simulations). The axis columns are the union of the
    records' axes; a record without one of them is labelled from its resolved config."""
    import pandas as pd

    records = list(ResultStore(root).records())
    axes = sorted({key for rec in records for key in rec["point"]})
    rows = []
    for rec in records:
        source = "theory" if rec["kind"] == "theory" else "simulation"
        seed = -1 if rec.get("seed") is None else int(rec["seed"])
        # an axis absent from this record's point (a store shared by specs with different axes)
        # takes its value from the record's resolved config, so records are never mislabelled
        point = {key: rec["point"].get(key, _config_value(rec.get("config", {}), key))
                 for key in axes}
        base = {"source": source, "seed": seed, **point, "point_id": rec["point_id"],
                "config_digest": rec.get("config_digest"),
                "git_commit": rec.get("meta", {}).get("git_commit")}
        flags = theory_flags(rec)
        for metric, value in rec["metrics"].items():
            err = rec.get("errors", {}).get(metric)
            rows.append({**base, "metric": metric, "trusted": trusted_for(flags, metric),
                         "value": np.nan if value is None else float(value),
                         "error": np.nan if err is None else float(err)})
    return pd.DataFrame(rows)


def to_dataset(table, axes: list[str]):
    """``xarray.Dataset`` from a tidy table: dimensions ``axes + ["source", "seed"]`` (theory at
    seed −1), one data variable per metric (NaN where a task is missing), plus ``<metric>__err``
    for the theory MC errors."""
    import xarray as xr

    if table.empty:
        return xr.Dataset()
    index = list(axes) + ["source", "seed"]
    wide = table.pivot_table(index=index, columns="metric", values="value", aggfunc="first",
                             dropna=False)
    ds = xr.Dataset.from_dataframe(wide)
    errs = table[table.source == "theory"].pivot_table(
        index=index, columns="metric", values="error", aggfunc="first", dropna=False)
    if not errs.empty:
        err_ds = xr.Dataset.from_dataframe(errs.rename(columns=lambda m: f"{m}__err"))
        ds = ds.merge(err_ds, join="outer")
    return ds
