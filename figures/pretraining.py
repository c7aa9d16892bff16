"""Pre-training test error vs alpha for the direct, factorized and Bayes-optimal estimators."""

from .common import plot_metric, plt


def plot(table, spec, figure):
    x, hue = figure["x"], figure["hue"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for value in ["direct", "factorized", "bayes"]:
        if value not in set(table[hue].dropna()):
            continue
        where = {hue: value}
        color = plot_metric(axes[0], table, "pretrain.test_error", x, where=where, label=value)
        plot_metric(axes[1], table, "pretrain.mse", x, where=where, color=color)
    axes[0].set(xlabel="alpha (n = alpha d^2)", ylabel="pre-training test error")
    axes[1].set(xlabel="alpha (n = alpha d^2)", ylabel="reconstruction error mse")
    axes[0].legend()
    fig.suptitle(figure.get("title", spec.name))
    return fig
