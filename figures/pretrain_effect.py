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
    if "trusted" in theory:
        trusted = theory[theory.metric == "finetune.overlap"].groupby("point_id")["trusted"].all()
        wide = wide.join(trusted.rename("trusted"))
    else:
        wide["trusted"] = True
    for alpha, group in wide.groupby(x):
        group = group.sort_values("delta_eff")
        ok = group["trusted"].fillna(True).astype(bool).to_numpy()
        (line,) = axes[2].plot(group["delta_eff"], group["finetune.overlap"].where(ok), "o-",
                               ms=4, label=f"alpha' = {alpha:g}")
        if not ok.all():  # flagged theory: faded, grey x (as in plot_metric)
            axes[2].plot(group["delta_eff"], group["finetune.overlap"], "-", alpha=0.3,
                         color=line.get_color())
            axes[2].plot(group["delta_eff"][~ok], group["finetune.overlap"][~ok], "x",
                         color="0.45", ms=6, mew=1.5)
    axes[0].set(xlabel="alpha'", ylabel="fine-tuning test error")
    axes[1].set(xlabel="alpha'", ylabel="overlap o_w")
    axes[2].set(xlabel="Delta_eff (theory)", ylabel="overlap o_w (theory)")
    axes[0].legend(fontsize=8)
    axes[2].legend(fontsize=8)
    fig.suptitle(figure.get("title", spec.name))
    return fig
