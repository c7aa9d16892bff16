"""Fine-tuning curves for several pre-training lambdas, and their collapse against Delta_eff."""

from .common import plot_metric, plt


def plot(table, spec, figure):
    x, hue = figure["x"], figure["hue"]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for value in sorted(table[hue].dropna().unique()):
        where = {hue: value}
        color = plot_metric(axes[0], table, "finetune.test_error", x, where=where,
                            label=f"pre-training lambda = {value:g}")
        plot_metric(axes[1], table, "finetune.overlap", x, where=where, color=color)
    # collapse: theory overlap against theory Delta_eff, one marker set per alpha'
    theory = table[table.source == "theory"]
    wide = theory.pivot_table(index="point_id", columns="metric", values="value")
    points = theory.drop_duplicates("point_id").set_index("point_id")
    wide = wide.join(points[[x, hue]])
    for alpha, group in wide.groupby(x):
        group = group.sort_values("delta_eff")
        axes[2].plot(group["delta_eff"], group["finetune.overlap"], "o-", ms=4,
                     label=f"alpha' = {alpha:g}")
    axes[0].set(xlabel="alpha'", ylabel="fine-tuning test error")
    axes[1].set(xlabel="alpha'", ylabel="overlap o_w")
    axes[2].set(xlabel="Delta_eff (theory)", ylabel="overlap o_w (theory)")
    axes[0].legend(fontsize=8)
    axes[2].legend(fontsize=8)
    fig.suptitle(figure.get("title", spec.name))
    return fig
