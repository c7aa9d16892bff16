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
           "bayes_finetune.test_error", "bayes_finetune.overlap", "delta_eff",
           "delta_eff_train")


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
    if name == "mismatch_pretraining":   # fresh and reused; both optima marked in each mode;
        n_hue = 2                        # mechanism: Delta_eff and both Delta_eff,train
        optimum_marks = [ln for ln in axes[0].get_lines() if ln.get_marker() in ("v", "^")
                         and len(ln.get_xdata())]
        assert len(optimum_marks) == 4
        assert len(_curves(axes[2])[0]) == 2 and len(axes[2].get_lines()) >= 3
    if name == "pretraining":     # one curve per estimator; Bayes has no simulation
        assert len(lines) >= n_hue
    else:
        assert len(lines) >= n_hue, f"{name}: {len(lines)} theory lines for {n_hue} curves"
        assert len(bars) >= n_hue, f"{name}: {len(bars)} simulation series for {n_hue} curves"
    paths = save(fig, tmp_path / name, caption(spec, figure))
    assert all(p.exists() and p.stat().st_size > 0 for p in paths)
    plt.close("all")


def test_mismatch_map_figure_marks_both_optima(tmp_path):
    """The map drawing (hdlora mismatch-map --figure, figures/mismatch_maps.py) marks the
    test-optimal (v) and overlap-optimal (^) y of every column in every mode, from a map object
    or its JSON form."""
    import json

    from figures.mismatch_maps import draw_map, save_map
    from theory.applications.mismatch import MismatchMap, strength

    ys, xs = (0.001, 0.03, 0.3), (2.0, 3.0)
    rng = np.random.default_rng(1)
    test = {m: rng.uniform(0.2, 0.4, (2, 3)) for m in ("fresh", "reused")}
    overlap = {m: rng.uniform(0.8, 1.0, (2, 3)) for m in ("fresh", "reused")}
    err = {m: np.full((2, 3), 1e-3) for m in ("fresh", "reused")}
    best = {}
    for m in test:
        rows = [strength(ys, test[m][i], err[m][i], overlap[m][i], err[m][i]) for i in range(2)]
        best[m] = {k: [r[k] for r in rows] for k in rows[0]}
    mm = MismatchMap("finetune.alpha", "pretrain.lam", xs, ys, test, overlap,
                     np.zeros((2, 3), bool), best, err, err, np.ones((2, 3), bool))
    fig, axes = plt.subplots(1, 3)
    draw_map(axes, json.loads(json.dumps(mm.to_dict())))
    for ax, m in zip(axes[:2], ("fresh", "reused")):
        marks = {ln.get_marker(): [] for ln in ax.get_lines()}
        for ln in ax.get_lines():
            marks[ln.get_marker()].append((ln.get_xdata()[0], ln.get_ydata()[0]))
        assert sorted(marks["v"]) == [(i, ys.index(best[m]["y_test"][i])) for i in range(2)]
        assert sorted(marks["^"]) == [(i, ys.index(best[m]["y_overlap"][i])) for i in range(2)]
    assert len(axes[2].containers) == 2
    save_map(mm, tmp_path / "map.png")
    assert (tmp_path / "map.png").stat().st_size > 0
    plt.close("all")


def test_flagged_theory_is_marked_untrusted_in_the_table(tmp_path):
    """``load_table``'s ``trusted`` column: a fine-tuning solve flagged RS doubtful makes the
    point's fine-tuning metrics untrusted but not its pre-training metrics nor Δ_eff;
    a pre-training that did not converge makes every metric untrusted; simulations stay trusted."""
    from simulations.sweeps.store import ResultStore, load_table

    store = ResultStore(tmp_path)
    solver = {"ok": {"pretrain": {"converged": True}, "finetune": {"converged": True}},
              "ft": {"pretrain": {"converged": True},
                     "finetune": {"converged": True, "rs_doubtful": True}},
              "pt": {"pretrain": {"converged": False, "result": "stalled"},
                     "finetune": {"converged": True}}}
    for i, (pid, blocks) in enumerate(solver.items()):
        store.write("theory", pid, {"kind": "theory", "point": {"pretrain.lam": 0.1 * (i + 1)},
                                    "point_id": pid, "diagnostics": {"solver": blocks},
                                    "metrics": {"pretrain.test_error": 1.0,
                                                "finetune.test_error": 2.0, "delta_eff": 0.5}})
        store.write("simulate", pid, {"kind": "simulate", "point": {"pretrain.lam": 0.1 * (i + 1)},
                                      "point_id": pid, "seed": 0, "diagnostics": {},
                                      "metrics": {"finetune.test_error": 2.0}}, seed=0)
    table = load_table(tmp_path)
    th = table[table.source == "theory"].set_index(["point_id", "metric"])["trusted"]
    assert th["ok"].all()
    assert th[("ft", "pretrain.test_error")] and not th[("ft", "finetune.test_error")] \
        and th[("ft", "delta_eff")]
    assert not th["pt"].any()
    assert table[table.source == "simulation"]["trusted"].all()


def test_untrusted_theory_is_drawn_faded_and_not_an_optimum():
    """A flagged theory point breaks the solid line (NaN there), is drawn as a grey x over a
    faded copy of the curve, and is never reported as a theory optimum."""
    from figures.common import plot_metric
    from figures.mismatch_pretraining import optima

    xs = [0.001, 0.01, 0.1]
    rows = []
    for reuse in (False, True):
        for x, test, overlap, ok in zip(xs, (0.1, 0.3, 0.2), (0.99, 0.9, 0.8), (False, True, True)):
            for metric, value in (("finetune.test_error", test), ("finetune.overlap", overlap)):
                rows.append({"source": "theory", "seed": -1, "pretrain.lam": x,
                             "finetune.reuse": reuse, "point_id": f"{reuse}{x}",
                             "metric": metric, "value": value, "error": 0.01, "trusted": ok})
    table = pd.DataFrame(rows)
    fig, ax = plt.subplots()
    plot_metric(ax, table[table["finetune.reuse"] == False], "finetune.test_error",  # noqa: E712
                "pretrain.lam", label="theory")
    solid, faded, cross = ax.get_lines()
    assert np.isnan(solid.get_ydata()[0]) and np.isfinite(solid.get_ydata()[1:]).all()
    assert faded.get_alpha() == pytest.approx(0.3) and len(faded.get_xdata()) == 3
    assert cross.get_marker() == "x" and list(cross.get_xdata()) == [0.001]
    best = optima(table, "pretrain.lam", reuse=True)
    # the untrusted λ = 0.001 has the lowest test error and the highest overlap: not claimed
    assert best["finetune.test_error"] == 0.1 and best["finetune.overlap"] == 0.01
    plt.close("all")
