"""Downstream-aware pre-training: pre-training and fine-tuning test errors vs pre-training lambda,
with the two theory optima marked (argmin over the grid); one row per value of ``figure.hue``
(e.g. one per model setting) when the spec has one."""

import numpy as np

from .common import curve_data, plot_metric, plt, theory_trusted


def plot(table, spec, figure):
    x, hue = figure["x"], figure.get("hue")
    values = [None] if not hue else sorted(table[hue].dropna().unique(), key=str)
    fig, axes = plt.subplots(len(values), 2, figsize=(10, 4 * len(values)), squeeze=False)
    for row, value in zip(axes, values):
        where = None if value is None else {hue: value}
        tag = "" if value is None else f" ({hue} = {value})"
        for ax, metric, label in [(row[0], "pretrain.test_error", "pre-training test error"),
                                  (row[1], "finetune.test_error", "fine-tuning test error")]:
            plot_metric(ax, table, metric, x, where=where, label=label)
            ax.set(xscale="log", xlabel="pre-training lambda", ylabel=label + tag)
        for metric, style in [("pretrain.test_error", ":"), ("finetune.test_error", "--")]:
            xs, ys, _ = curve_data(table, metric, x, source="theory", where=where)
            _, ok = theory_trusted(table, metric, x, where=where)
            ys = np.where(ok, ys, np.nan) if xs.size else ys  # no optimum at a flagged point
            if xs.size and np.isfinite(ys).any():
                best = xs[np.nanargmin(ys)]
                for ax in row:
                    ax.axvline(best, ls=style, color="k", alpha=0.6,
                               label=f"argmin {metric}: {best:.3g}")
        row[1].legend(fontsize=8)
    fig.suptitle(figure.get("title", spec.name))
    return fig
