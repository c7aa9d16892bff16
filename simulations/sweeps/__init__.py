"""Sweeps: a TOML spec (:mod:`.spec`), Dask execution with resume (:mod:`.runner`) and an
atomic, provenance-carrying results store (:mod:`.store`)."""

from .runner import SweepReport, run_sweep
from .spec import SpecError, SweepSpec, load_spec
from .store import CorruptRecordWarning, ResultStore, load_table, to_dataset

__all__ = ["run_sweep", "SweepReport", "load_spec", "SweepSpec", "SpecError", "ResultStore",
           "load_table", "to_dataset", "CorruptRecordWarning"]
