"""``hdlora figures``: run each figure's sweep (cached, resumable) and draw it."""

from __future__ import annotations

import importlib
import time
from pathlib import Path

from simulations.sweeps import load_table, run_sweep

from . import FIGURES
from .common import caption, load_figure_spec, save

__all__ = ["build_figures"]

FIGURE_DIR = Path(__file__).resolve().parent


def build_figures(names=None, *, quick: bool = False, workers: int = 2, scheduler=None,
                  results_root: str = "results/figures", progress: bool = True) -> dict:
    """Build the named figures (all by default); returns ``{name: {"paths", "seconds"}}``."""
    names = list(names) if names else list(FIGURES)
    unknown = [n for n in names if n not in FIGURES]
    if unknown:
        raise ValueError(f"unknown figure {unknown[0]!r}; known: {', '.join(FIGURES)}")
    report = {}
    for name in names:
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
        report[name] = {"paths": [str(p) for p in paths],
                        "seconds": time.perf_counter() - start}
    return report
