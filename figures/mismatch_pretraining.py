"""Mismatch along pre-training λ (issue 14): fresh vs reused fine-tuning sequences.

Panels: fine-tuning test error and overlap against pre-training λ (theory lines, simulation
markers), the theory's test-optimal λ (▼) and overlap-optimal λ (▲) of each mode marked on
both; and the mechanism, the effective noise the LoRA is tested at (Δ_eff, the backbone's test
residual) and trained at (Δ_eff,train: the training residual on reused sequences, T35), theory
and measured. Simulation markers: the figure's own sweep (d = spec's ``sim.d``) and, when the
store named by ``[figure] evidence`` exists (``python -m figures.mismatch_evidence run --d D``),
its seed averages at each d (open markers, one shape per d).
"""

from pathlib import Path

import numpy as np

from matplotlib.ticker import NullFormatter

from .common import curve_data, plot_metric, plt, theory_trusted

# fresh: solid line, circles; reused: dotted line, squares (as in figures/mismatch.py)
_STYLE = {False: ("-", "o"), True: (":", "s")}
_NAME = {False: "fresh", True: "reused"}
_COLOR = {False: "C0", True: "C3"}


def optima(table, x: str, reuse: bool) -> dict:
    """The theory's test-optimal and overlap-optimal ``x`` for one mode, over the points the
    solver trusts (NaN if none: an optimum at a flagged point is not claimed)."""
    sub = table[table["finetune.reuse"] == reuse]
    out = {}
    for metric, pick in (("finetune.test_error", np.nanargmin), ("finetune.overlap", np.nanargmax)):
        xs, ys, _ = curve_data(sub, metric, x, source="theory")
        _, ok = theory_trusted(sub, metric, x)
        ys = np.where(ok, ys, np.nan) if xs.size else ys
        out[metric] = float(xs[pick(ys)]) if xs.size and np.isfinite(ys).any() else float("nan")
    return out


_EVIDENCE_MARKERS = "DPh*X"


def _overlay_evidence(axes, figure, x) -> None:
    """Seed means ± sem of the evidence store at each of its d (open markers)."""
    root = figure.get("evidence")
    if not root or not Path(root).is_dir():
        return
    from simulations.sweeps import load_table

    table = load_table(root)
    if table.empty or "sim.d" not in table:
        return
    for k, d in enumerate(sorted(table["sim.d"].dropna().unique())):
        for reuse in (False, True):
            sub = table[(table["sim.d"] == d) & (table["finetune.reuse"] == reuse)]
            for ax, metric in ((axes[0], "finetune.test_error"), (axes[1], "finetune.overlap"),
                               (axes[2], "delta_eff_train")):
                xs, ys, se = curve_data(sub, metric, x, source="simulation")
                if xs.size:
                    n = int(sub[sub.metric == metric]["seed"].nunique())
                    ax.errorbar(xs, ys, yerr=se, fmt=_EVIDENCE_MARKERS[k % 5], mfc="none",
                                ms=6, capsize=2, color=_COLOR[reuse],
                                label=f"sim d = {int(d)}, {n} seeds"
                                if (ax is axes[0] and reuse) else None)


def plot(table, spec, figure):
    x = figure["x"]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for reuse in (False, True):
        sub = table[table["finetune.reuse"] == reuse]
        linestyle, marker = _STYLE[reuse]
        color = plot_metric(axes[0], sub, "finetune.test_error", x, label=_NAME[reuse],
                            linestyle=linestyle, marker=marker, color=_COLOR[reuse])
        plot_metric(axes[1], sub, "finetune.overlap", x, color=color, linestyle=linestyle,
                    marker=marker)
        best = optima(table, x, reuse)
        for ax, metric in ((axes[0], "finetune.test_error"), (axes[1], "finetune.overlap")):
            for which, symbol in (("finetune.test_error", "v"), ("finetune.overlap", "^")):
                xs, ys, _ = curve_data(sub, metric, x, source="theory")
                hit = xs == best[which]
                if hit.any():
                    ax.plot(xs[hit], ys[hit], symbol, ms=11, mfc="none", mec=color, mew=1.5)
    _overlay_evidence(axes, figure, x)
    # mechanism: the residual the LoRA is tested at (same backbone in both modes) and trained at
    reused = table[table["finetune.reuse"] == True]  # noqa: E712
    plot_metric(axes[2], reused, "delta_eff", x, color="k", label="Delta_eff (test residual)")
    plot_metric(axes[2], reused, "delta_eff_train", x, linestyle=":", marker="s",
                color=_COLOR[True], label="Delta_eff,train, reused (training residual)")
    fresh = table[table["finetune.reuse"] == False]  # noqa: E712
    plot_metric(axes[2], fresh, "delta_eff_train", x, linestyle="--", marker="x",
                color=_COLOR[False], label="Delta_eff,train, fresh (= Delta_eff)")
    axes[0].plot([], [], "v", mfc="none", mec="k", label="test-optimal lambda (theory)")
    axes[0].plot([], [], "^", mfc="none", mec="k", label="overlap-optimal lambda (theory)")
    for ax in axes:
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("pre-training lambda")
    axes[0].set_ylabel("fine-tuning test error (fresh sequences)")
    axes[1].set_ylabel("overlap o_w")
    axes[2].set_ylabel("effective noise")
    axes[0].legend(fontsize=8)
    axes[2].legend(fontsize=7)
    fig.suptitle(figure.get("title", spec.name))
    return fig
