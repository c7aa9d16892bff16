"""Mismatch regime: fresh vs reused fine-tuning sequences, test error and overlap vs lambda'."""

from .common import plot_metric, plt


def plot(table, spec, figure):
    x = figure["x"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    alphas = sorted(table["finetune.alpha"].dropna().unique())
    for alpha in alphas:
        color = None
        for reuse in (False, True):
            label = f"alpha' = {alpha:g}, {'reused' if reuse else 'fresh'}"
            sub = table[table["finetune.reuse"] == reuse]
            color = plot_metric(axes[0], sub, "finetune.test_error", x,
                                where={"finetune.alpha": alpha}, label=label, color=color)
            plot_metric(axes[1], sub, "finetune.overlap", x, where={"finetune.alpha": alpha},
                        color=color)
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlabel("lambda'")
    axes[0].set_ylabel("fine-tuning test error (fresh sequences)")
    axes[1].set_ylabel("overlap o_w")
    axes[0].legend(fontsize=8)
    fig.suptitle(figure.get("title", spec.name))
    return fig
