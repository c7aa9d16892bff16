"""The results store: one JSON file per finished task, written atomically.

Layout under the store root (default ``results/<sweep name>/``)::

    spec.json                        the sweep spec as run (axes, seeds, base config)
    theory/<point_id>.json           one theory point
    simulate/<point_id>_s<seed>.json one simulation point and seed

A record holds the axis values, the resolved config and its digest, the seed, every metric of
theory/schema.py (value and error), solver/optimiser diagnostics and the provenance (package
versions, git commit, time). Files are written to a temporary name in the same directory and
renamed (``os.replace`` is atomic on POSIX), so a killed writer leaves either the whole record
or nothing, concurrent writers never see a partial file, and the existence of a record means the
task is finished (that is how ``resume`` skips it).

Loading gives a tidy table (:func:`load_table`, one row per record × metric) — chosen as the
primary form because sweeps with zipped axes or unfinished points are ragged and the tidy form
keeps the provenance beside every number — and :func:`to_dataset` turns it into an
``xarray.Dataset`` with the sweep axes as dimensions.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable

import numpy as np

__all__ = ["ResultStore", "load_table", "to_dataset"]


def _jsonable(x: Any):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.floating, np.integer, np.bool_)):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    if hasattr(x, "item") and getattr(x, "shape", None) == ():
        return x.item()
    return x


class ResultStore:
    """A directory of atomically written task records (see the module docstring)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def path(self, kind: str, point_id: str, seed: int | None = None) -> Path:
        name = point_id if seed is None else f"{point_id}_s{seed}"
        return self.root / kind / f"{name}.json"

    def has(self, kind: str, point_id: str, seed: int | None = None) -> bool:
        return self.path(kind, point_id, seed).exists()

    def write(self, kind: str, point_id: str, record: dict, seed: int | None = None) -> Path:
        """Write one record atomically (temp file + fsync + rename)."""
        target = self.path(kind, point_id, seed)
        target.parent.mkdir(parents=True, exist_ok=True)
        record = {**record, "written_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.stem}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as fh:
                json.dump(_jsonable(record), fh, indent=1, default=float)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return target

    def write_spec(self, spec_record: dict) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        target = self.root / "spec.json"
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".spec.", suffix=".tmp")
        with os.fdopen(fd, "w") as fh:
            json.dump(_jsonable(spec_record), fh, indent=1)
        os.replace(tmp, target)

    def records(self, kind: str | None = None) -> Iterable[dict]:
        kinds = [kind] if kind else ["theory", "simulate"]
        for k in kinds:
            folder = self.root / k
            if not folder.is_dir():
                continue
            for file in sorted(folder.glob("*.json")):
                with open(file) as fh:
                    yield json.load(fh)


def _config_value(config: dict, dotted: str):
    section, _, field = dotted.partition(".")
    return config.get(section, {}).get(field)


def load_table(root: str | Path):
    """Tidy ``pandas.DataFrame``: columns ``source`` (theory | simulation), ``seed`` (-1 for
    theory), the axis fields, ``metric``, ``value``, ``error`` (theory MC error; NaN for a single
    seed), ``point_id``, ``config_digest``, ``git_commit``. The axis columns are the union of the
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
                "config_digest": rec["config_digest"],
                "git_commit": rec.get("meta", {}).get("git_commit")}
        for metric, value in rec["metrics"].items():
            err = rec.get("errors", {}).get(metric)
            rows.append({**base, "metric": metric,
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
