"""Mismatch regime: fresh vs reused fine-tuning sequences, test error and overlap vs lambda'."""

from matplotlib.ticker import NullFormatter

from .common import plot_metric, plt

# fresh: solid line, circles; reused: dotted line, squares (dashed is kept for Bayes bounds)
_STYLE = {False: ("-", "o"), True: (":", "s")}


def plot(table, spec, figure):
    x = figure["x"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    alphas = sorted(table["finetune.alpha"].dropna().unique())
    for alpha in alphas:
        for reuse in (False, True):
            label = f"alpha' = {alpha:g}, {'reused' if reuse else 'fresh'}"
            sub = table[table["finetune.reuse"] == reuse]
            linestyle, marker = _STYLE[reuse]
            color = plot_metric(axes[0], sub, "finetune.test_error", x,
                                where={"finetune.alpha": alpha}, label=label,
                                linestyle=linestyle, marker=marker)
            plot_metric(axes[1], sub, "finetune.overlap", x, where={"finetune.alpha": alpha},
                        color=color, linestyle=linestyle, marker=marker)
    for ax in axes:
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("lambda'")
    axes[0].set_ylabel("fine-tuning test error (fresh sequences)")
    axes[1].set_ylabel("overlap o_w")
    axes[0].legend(fontsize=8)
    fig.suptitle(figure.get("title", spec.name))
    return fig
