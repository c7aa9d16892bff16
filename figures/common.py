"""Shared plotting and spec handling for the figures (thin: no maths lives here).

A figure spec is a sweep spec (simulations/sweeps/spec.py) plus a ``[figure]`` table::

    [figure]
    title = "..."
    x = "finetune.alpha"            # x axis (a sweep axis)
    hue = "finetune.lam"            # one curve per value (optional)
    [figure.quick]                  # --quick: overrides of the sweep for a small, fast run
    seeds = 2
    "sim.d" = 40
    "theory.mc_samples" = 4000
    thin = 2                        # keep every 2nd value of each grid axis (but the hue's)
    [figure.quick.grid]             # or give an axis's quick values outright (wins over thin)
    "finetune.alpha" = [1.5, 4.0]
"""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from simulations.sweeps.spec import SweepSpec, spec_from_dict  # noqa: E402

SPEC_DIR = Path(__file__).resolve().parent / "specs"

__all__ = ["load_figure_spec", "curve_data", "theory_trusted", "plot_metric", "caption", "save",
           "plt", "UNTRUSTED_NOTE"]

#: how the figures show theory points whose solver flags them (``load_table``'s ``trusted``)
UNTRUSTED_NOTE = ("faded line segments and grey x: theory flagged untrusted at that point "
                  "(not converged or RS doubtful)")


def load_figure_spec(name: str, *, quick: bool) -> tuple[SweepSpec, dict]:
    """The sweep spec of a figure (quick overrides applied) and its ``[figure]`` table."""
    data = tomllib.loads((SPEC_DIR / f"{name}.toml").read_text())
    figure = data.pop("figure", {})
    if quick:
        data = copy.deepcopy(data)
        overrides = dict(figure.get("quick", {}))
        thin = int(overrides.pop("thin", 1))
        quick_grid = dict(overrides.pop("grid", {}))
        sweep = data.setdefault("sweep", {})
        if "seeds" in overrides:
            sweep["seeds"] = overrides.pop("seeds")
        unknown = set(quick_grid) - set(sweep.get("grid", {}))
        if unknown:
            raise ValueError(f"figure {name!r}: [figure.quick.grid] axis {sorted(unknown)[0]!r} "
                             "is not an axis of [sweep.grid]")
        for key, values in list(sweep.get("grid", {}).items()):
            if key in quick_grid:
                sweep["grid"][key] = list(quick_grid[key])
            elif key != figure.get("hue"):
                sweep["grid"][key] = values[::thin] if len(values) > 2 else values
        for dotted, value in overrides.items():
            section, field = dotted.split(".")
            data.setdefault("base", {}).setdefault(section, {})[field] = value
        sweep["name"] = sweep["name"] + "-quick"
    return spec_from_dict(data), figure


def _select(table, metric: str, source: str, where: dict | None):
    sel = table[(table.metric == metric) & (table.source == source)]
    for key, value in (where or {}).items():
        sel = sel[np.isclose(sel[key].astype(float), float(value))] \
            if not isinstance(value, str) else sel[sel[key] == value]
    return sel


def theory_trusted(table, metric: str, x: str, *, where: dict | None = None):
    """(x values, trusted) of the theory of ``metric`` along ``x``: False where the point's
    solver flags it (``load_table``'s ``trusted`` column; all True for a table without it)."""
    sel = _select(table, metric, "theory", where)
    if sel.empty:
        return np.array([]), np.array([], bool)
    xs = np.array(sorted(sel[x].unique()), dtype=float)
    if "trusted" not in sel:
        return xs, np.ones(xs.size, bool)
    ok = sel.groupby(x)["trusted"].all().reindex(xs).to_numpy()
    return xs, ok.astype(bool)


def curve_data(table, metric: str, x: str, *, source: str, where: dict | None = None):
    """(x values, mean, error bar) of one metric along ``x`` for one source.
    Simulation: mean over seeds and its standard error; theory: value and MC error."""
    sel = _select(table, metric, source, where)
    if sel.empty:
        return np.array([]), np.array([]), np.array([])
    groups = sel.groupby(x)["value"]
    xs = np.array(sorted(groups.groups.keys()), dtype=float)
    if source == "simulation":
        mean = groups.mean().reindex(xs).to_numpy()
        count = groups.count().reindex(xs).to_numpy()
        sem = (groups.std(ddof=1).reindex(xs) / np.sqrt(count)).to_numpy()
        return xs, mean, np.nan_to_num(sem)
    err = sel.groupby(x)["error"].first().reindex(xs).to_numpy()
    return xs, groups.first().reindex(xs).to_numpy(), np.nan_to_num(err)


def plot_metric(ax, table, metric: str, x: str, *, where=None, label=None, color=None,
                bayes_metric: str | None = None, linestyle: str = "-", marker: str = "o"):
    """Theory as a line, the Bayes bound dashed, simulations as markers with sem bars.
    Theory points the solver flags (:func:`theory_trusted`) are drawn as grey x and every line
    segment touching one is faded (:data:`UNTRUSTED_NOTE`), so an untrusted value never looks
    like a prediction."""
    xs, ys, _ = curve_data(table, metric, x, source="theory", where=where)
    line = None
    if xs.size:
        _, ok = theory_trusted(table, metric, x, where=where)
        # trusted runs solid (a flagged point breaks the line), carrying the label and colour
        (line,) = ax.plot(xs, np.where(ok, ys, np.nan), linestyle=linestyle, color=color,
                          label=label)
        color = line.get_color()
        if not ok.all():
            # the whole curve faded beneath the trusted runs, the flagged points as grey x
            ax.plot(xs, ys, linestyle=linestyle, color=color, alpha=0.3)
            ax.plot(xs[~ok], ys[~ok], "x", color="0.45", ms=6, mew=1.5)
    if bayes_metric:
        bx, by, _ = curve_data(table, bayes_metric, x, source="theory", where=where)
        if bx.size:
            ax.plot(bx, by, "--", color=color, alpha=0.8)
    sx, sy, se = curve_data(table, metric, x, source="simulation", where=where)
    if sx.size:
        ax.errorbar(sx, sy, yerr=se, fmt=marker, ms=4, capsize=2, color=color,
                    label=None if line is not None else label)
    return color


def caption(spec: SweepSpec, figure: dict) -> str:
    base = spec.base
    m, p, f, s = base.model, base.pretrain, base.finetune, base.sim
    varying = ", ".join(spec.axes)
    bayes = "dashed: Bayes-optimal bound; " if spec.bayes_bound else ""
    return (f"{figure.get('title', spec.name)}. Lines: theory (RS; {UNTRUSTED_NOTE}); {bayes}"
            f"markers: simulation at d = {s.d}, mean ± sem over {len(spec.seeds)} seeds. "
            f"T = {m.T}, {m.attention} (beta = {m.beta}), output = {m.output}; pre-training "
            f"{p.estimator}, kappa0 = {p.kappa0}, kappa = {p.kappa}, alpha = {p.alpha}, "
            f"Delta = {p.delta}, lambda = {p.lam}; fine-tuning alpha' = {f.alpha}, "
            f"lambda' = {f.lam}, q0* = {f.q0star}, recalibrate = {f.recalibrate}; varied: "
            f"{varying}.")


def save(fig, out_stem: Path, text: str) -> list[Path]:
    out_stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [out_stem.with_suffix(".png"), out_stem.with_suffix(".pdf"),
             out_stem.with_suffix(".txt")]
    fig.savefig(paths[0], dpi=130, bbox_inches="tight")
    fig.savefig(paths[1], bbox_inches="tight")
    paths[2].write_text(text + "\n")
    plt.close(fig)
    return paths
