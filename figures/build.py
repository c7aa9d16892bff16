"""``hdlora figures``: run each figure's sweep (cached, resumable) and draw it."""

from __future__ import annotations

import importlib
import time
from pathlib import Path

from simulations.sweeps import load_table, run_sweep

from . import EXTRA_FIGURES, FIGURES
from .common import caption, load_figure_spec, save

__all__ = ["build_figures"]

FIGURE_DIR = Path(__file__).resolve().parent


def build_figures(names=None, *, quick: bool = False, workers: int = 2, scheduler=None,
                  results_root: str = "results/figures", progress: bool = True) -> dict:
    """Build the named figures (all by default); returns ``{name: {"paths", "seconds"}}``."""
    names = list(names) if names else list(FIGURES)
    known = FIGURES + EXTRA_FIGURES
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown figure {unknown[0]!r}; known: {', '.join(known)}")
    report = {}
    cluster = client = None
    if scheduler is None and workers > 0:
        # One cluster for every figure (no start-up per figure). Full runs restart its workers
        # between figures: a worker that compiled every solver of several full figures ran out of
        # JIT section memory once ("LLVM ERROR: Unable to allocate section memory", 5 figures at
        # d = 150; Dask restarted the worker and re-ran its task). Quick runs keep the workers:
        # a restart costs each figure ~10-40 s of tracing again (measured: the persistent cache
        # saves the XLA compilation, not the tracing), the bulk of a quick figure's time.
        from dask.distributed import Client, LocalCluster

        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                               dashboard_address=":0", silence_logs=40)
        scheduler = cluster.scheduler_address
        client = Client(cluster)
    try:
        for index, name in enumerate(names):
            if client is not None and index > 0 and not quick:
                client.restart()
            report[name] = _build_one(name, quick=quick, workers=workers, scheduler=scheduler,
                                      results_root=results_root, progress=progress)
    finally:
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()
    return report


def _build_one(name: str, *, quick: bool, workers: int, scheduler, results_root: str,
               progress: bool) -> dict:
    start = time.perf_counter()
    spec, figure = load_figure_spec(name, quick=quick)
    store = Path(results_root) / spec.name
    run_sweep(spec, str(store), workers=workers, scheduler=scheduler, progress=progress)
    table = load_table(store)
    module = importlib.import_module(f"figures.{name}")
    fig = module.plot(table, spec, figure)
    command = f"hdlora figures {name}" + (" --quick" if quick else "")
    stem = (store / name) if quick else (FIGURE_DIR / name)
    paths = save(fig, stem, caption(spec, figure) + f"\nMade by: {command}")
    return {"paths": [str(p) for p in paths], "seconds": time.perf_counter() - start}
