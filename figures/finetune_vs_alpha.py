"""Fine-tuning test error and overlap vs alpha' for several lambda' (MODEL.md §6 point)."""

from .common import plot_metric, plt


def plot(table, spec, figure):
    x, hue = figure["x"], figure["hue"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for value in sorted(table[hue].dropna().unique()):
        where = {hue: value}
        color = plot_metric(axes[0], table, "finetune.test_error", x, where=where,
                            label=f"{hue.split('.')[-1]} = {value:g}",
                            bayes_metric="bayes_finetune.test_error")
        plot_metric(axes[1], table, "finetune.overlap", x, where=where, color=color,
                    bayes_metric="bayes_finetune.overlap")
    axes[0].set(xlabel="alpha'", ylabel="fine-tuning test error")
    axes[1].set(xlabel="alpha'", ylabel="overlap o_w")
    axes[0].legend()
    fig.suptitle(figure.get("title", spec.name))
    return fig
