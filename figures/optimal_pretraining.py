"""Downstream-aware pre-training: fine-tuning and pre-training test errors vs pre-training lambda,
with the two optima marked (theory)."""

import numpy as np

from .common import curve_data, plot_metric, plt


def plot(table, spec, figure):
    x = figure["x"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, metric, label in [(axes[0], "pretrain.test_error", "pre-training test error"),
                              (axes[1], "finetune.test_error", "fine-tuning test error")]:
        plot_metric(ax, table, metric, x, label=label)
        ax.set(xscale="log", xlabel="pre-training lambda", ylabel=label)
    for ax_index, metric, style in [(0, "pretrain.test_error", ":"),
                                    (1, "finetune.test_error", "--")]:
        xs, ys, _ = curve_data(table, metric, x, source="theory")
        if xs.size and np.isfinite(ys).any():
            best = xs[np.nanargmin(ys)]
            for ax in axes:
                ax.axvline(best, ls=style, color="k", alpha=0.6,
                           label=f"argmin {metric}: {best:.3g}")
    axes[1].legend(fontsize=8)
    fig.suptitle(figure.get("title", spec.name))
    return fig
