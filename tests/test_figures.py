"""Every figure module draws the expected curves from a table in the store's schema.

The sweeps behind the figures are exercised by ``hdlora figures --quick`` (CI step in
``.ci/run``); here each plotting module gets a synthetic tidy table with the columns of
``simulations.sweeps.store.load_table`` over its quick spec's points (theory value + 3 seeds
per point), so a change of the table schema or of a spec's axes that breaks a figure fails fast.
"""

from __future__ import annotations

import importlib

import numpy as np
import pandas as pd
import pytest

from figures import EXTRA_FIGURES, FIGURES
from figures.common import caption, load_figure_spec, plt, save

METRICS = ("pretrain.test_error", "pretrain.mse", "finetune.test_error", "finetune.overlap",
           "bayes_finetune.test_error", "bayes_finetune.overlap", "delta_eff")


def _synthetic_table(spec) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for point in spec.points():
        values = point.as_dict()
        for source, seeds in (("theory", [-1]), ("simulation", [0, 1, 2])):
            for seed in seeds:
                for metric in METRICS:
                    rows.append({"source": source, "seed": seed, **values,
                                 "point_id": point.point_id, "metric": metric,
                                 "value": float(rng.uniform(0.1, 1.0)),
                                 "error": 0.01 if source == "theory" else np.nan})
    return pd.DataFrame(rows)


def _curves(ax):
    """(theory lines, simulation error-bar containers) drawn on an axis. Theory lines are solid
    or dotted (reused sequences in the mismatch figure); dashed ones are Bayes bounds."""
    lines = [ln for ln in ax.get_lines() if ln.get_linestyle() in ("-", ":")
             and ln.get_marker() in ("None", None, "")]
    return lines, list(ax.containers)


@pytest.mark.parametrize("name", FIGURES + EXTRA_FIGURES)
def test_figure_draws_expected_curves(name, tmp_path):
    spec, figure = load_figure_spec(name, quick=True)
    table = _synthetic_table(spec)
    fig = importlib.import_module(f"figures.{name}").plot(table, spec, figure)
    axes = fig.get_axes()
    hue = figure.get("hue")
    n_hue = len({p.as_dict()[hue] for p in spec.points()}) if hue else 1
    lines, bars = _curves(axes[0])
    if name == "mismatch":        # one fresh and one reused curve per alpha'
        n_hue = 2 * len({p.as_dict()["finetune.alpha"] for p in spec.points()})
    if name == "pretraining":     # one curve per estimator; Bayes has no simulation
        assert len(lines) >= n_hue
    else:
        assert len(lines) >= n_hue, f"{name}: {len(lines)} theory lines for {n_hue} curves"
        assert len(bars) >= n_hue, f"{name}: {len(bars)} simulation series for {n_hue} curves"
    paths = save(fig, tmp_path / name, caption(spec, figure))
    assert all(p.exists() and p.stat().st_size > 0 for p in paths)
    plt.close("all")
