"""Active fine-tuning: smallest-score selection from a pool vs random selection, same budget."""

from .common import plot_metric, plt


def plot(table, spec, figure):
    x, hue = figure["x"], figure["hue"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for value in sorted(table[hue].dropna().unique()):
        where = {hue: value}
        color = plot_metric(axes[0], table, "finetune.test_error", x, where=where, label=value)
        plot_metric(axes[1], table, "finetune.overlap", x, where=where, color=color)
    pool = spec.base.finetune.pool_alpha
    for ax, label in zip(axes, ["fine-tuning test error", "overlap o_w"]):
        ax.set(xlabel=f"labelled alpha' (pool alpha' = {pool:g}, rho = alpha'/pool)",
               ylabel=label)
    axes[0].legend()
    fig.suptitle(figure.get("title", spec.name))
    return fig
