"""Drawing of :class:`theory.applications.mismatch.MismatchMap` (``hdlora mismatch-map --figure``)
and the issue-14 map figure (linear and softmax, over (λ, α′) and (λ, α)).

    python -m figures.mismatch_maps MAP.json [MAP.json ...] --out figures/mismatch_maps.png

One row per map: per mode (fresh, reused), the test error over (x, y) with, per column x, the
test-optimal y (▼, white) and the overlap-optimal y (▲, black), edged red where the split is
significant (:func:`theory.applications.mismatch.strength`); cells the theory flags (RS doubtful,
not converged) are hatched; last panel: the test error the overlap-optimal choice costs, relative
to the optimum (%, solid, ± MC error), and the overlap it gains (dashed, right axis), against x. The JSON files are
``hdlora mismatch-map ... --json`` outputs.
"""

from __future__ import annotations

import argparse
import json
from types import SimpleNamespace

import numpy as np

from .common import plt

__all__ = ["draw_map", "save_map"]


def _ns(result):
    """A map as attributes (a MismatchMap or its to_dict() / --json form)."""
    if isinstance(result, dict):
        arr = lambda d: {k: np.asarray(v, float) for k, v in d.items()}  # noqa: E731
        return SimpleNamespace(**{**result, "test_error": arr(result["test_error"]),
                                  "overlap": arr(result["overlap"]),
                                  "trusted": np.asarray(result["trusted"], bool)})
    return result


def draw_map(axes, result, title: str = "") -> None:
    """Draw one map on ``len(modes) + 1`` axes."""
    mm = _ns(result)
    modes = list(mm.test_error)
    xs = [v for v in mm.x_values]
    ys = list(mm.y_values)
    xlabels = [f"{v:g}" if isinstance(v, float) else "-" for v in xs]
    for ax, mode in zip(axes, modes):
        data = np.asarray(mm.test_error[mode], float)
        im = ax.imshow(data.T, origin="lower", aspect="auto", cmap="viridis")
        plt.colorbar(im, ax=ax, label="test error")
        best = mm.best_y[mode]
        for i in range(len(xs)):
            for key, marker, colour in (("y_test", "v", "w"), ("y_overlap", "^", "k")):
                y = best[key][i]
                if y in ys:
                    ax.plot(i, ys.index(y), marker, ms=10, mfc=colour, mec="r" if
                            best["disagree"][i] else "grey")
            for j in range(len(ys)):
                if not mm.trusted[i, j]:
                    ax.add_patch(plt.Rectangle((i - .5, j - .5), 1, 1, fill=False, hatch="//",
                                               ec="0.6", lw=0))
        ax.set_xticks(range(len(xs)), xlabels)
        ax.set_yticks(range(len(ys)), [f"{v:g}" if isinstance(v, float) else str(v)
                                        for v in ys])
        ax.set(xlabel=mm.x_field or "", ylabel=mm.y_field, title=f"{title} {mode}".strip())
    ax = axes[len(modes)]
    twin = ax.twinx()
    for mode, marker in zip(modes, "os^dv"):
        best = mm.best_y[mode]
        rel = 100 * np.asarray(best["test_cost_rel"], float)
        err = 100 * np.asarray(best["test_cost_rel_err"], float)
        bars = ax.errorbar(range(len(xs)), rel, yerr=err, fmt=marker + "-", capsize=3,
                           label=f"{mode}: test cost")
        twin.errorbar(range(len(xs)), best["overlap_gain"], yerr=best["overlap_gain_err"],
                      fmt=marker + "--", mfc="none", capsize=2, color=bars[0].get_color(),
                      alpha=0.7, label=f"{mode}: overlap gain")
    twin.set_ylabel("overlap gain of the overlap-optimal y (dashed)")
    ax.set_xticks(range(len(xs)), xlabels)
    ax.set(xlabel=mm.x_field or "", ylabel="test-error cost of the overlap-optimal y (%)",
           title=f"{title} cost".strip())
    ax.axhline(0, color="0.7", lw=0.8)
    ax.legend(fontsize=8)


def save_map(result, path: str, title: str = ""):
    """One map as an image (the ``--figure`` of ``hdlora mismatch-map``)."""
    n = len(_ns(result).test_error) + 1
    fig, axes = plt.subplots(1, n, figsize=(4.6 * n, 3.8))
    draw_map(axes, result, title)
    fig.savefig(path, bbox_inches="tight", dpi=130)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("maps", nargs="+", help="hdlora mismatch-map --json outputs")
    ap.add_argument("--titles", help="row titles separated by ';'")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    maps = [json.loads(open(p).read()) for p in args.maps]
    titles = args.titles.split(";") if args.titles else [""] * len(maps)
    n = max(len(m["test_error"]) for m in maps) + 1
    fig, axes = plt.subplots(len(maps), n, figsize=(4.6 * n, 3.6 * len(maps)), squeeze=False)
    for row, mm, title in zip(axes, maps, titles):
        draw_map(row, mm, title)
    fig.tight_layout()
    fig.savefig(args.out, bbox_inches="tight", dpi=120)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
