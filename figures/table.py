"""Theory next to simulation for every point of a figure's (or any sweep's) results store.

    python -m figures.table results/figures/mismatch [--metrics finetune.test_error,finetune.overlap]
    python -m figures.table STORE --paired pretrain.lam=0.18,0.27   # same seeds, value(a) − value(b)

One markdown row per (point, metric): theory value ± MC error, simulation mean ± sem over seeds
(n seeds), z = (theory − sim)/√(sem² + err²) (:func:`theory.schema.z_score`, the sign of every
hdlora output) and the theory's flags (not converged, RS doubtful). An error that cannot be
estimated (one MC repeat, one seed) prints ``?`` and its z ``n/a``. At a single d, z also
contains the O(1/√d)–O(1/d) finite-size offset (docs/THEORY.md §1). A record file that cannot
be read is skipped with a warning naming it; a store that is not one exits with status 2.

``--paired AXIS=A,B`` compares two values of one axis seed by seed (a simulation seed draws the
same teacher and data at every point of a sweep): the per-seed difference value(A) − value(B)
cancels most of the seed-to-seed spread and the common finite-size offset, so a small predicted
difference can be tested where the unpaired curves overlap.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

from simulations.sweeps import ResultStore, load_table
from simulations.sweeps.store import theory_flags
from theory.schema import known, split_metric, z_score

__all__ = ["comparison_rows", "format_table", "paired_difference"]

DEFAULT_METRICS = ("pretrain.test_error", "finetune.test_error", "finetune.overlap")


def _theory_flags(store_root) -> dict:
    return {rec["point_id"]: [text for _, text in theory_flags(rec)]
            for rec in ResultStore(store_root).records("theory")}


def comparison_rows(store_root, metrics=DEFAULT_METRICS) -> tuple[list[dict], list[str]]:
    """Rows of theory vs simulation and the axes they are labelled by."""
    table = load_table(store_root)
    spec = json.loads((ResultStore(store_root).root / "spec.json").read_text())
    axes = [a for a in spec["axes"] if a in table.columns]
    flags = _theory_flags(store_root)
    rows = []
    for point_id, sel in table.groupby("point_id", sort=False):
        setting = {a: sel[a].iloc[0] for a in axes}
        for metric in metrics:
            th = sel[(sel.source == "theory") & (sel.metric == metric)]
            sim = sel[(sel.source == "simulation") & (sel.metric == metric)]["value"].to_numpy()
            if th.empty and sim.size == 0:
                continue
            t_val = float(th["value"].iloc[0]) if not th.empty else math.nan
            t_err = float(th["error"].iloc[0]) if not th.empty else math.nan
            mean = float(np.mean(sim)) if sim.size else math.nan
            sem = float(np.std(sim, ddof=1) / math.sqrt(sim.size)) if sim.size > 1 else math.nan
            z = z_score(t_val, t_err, mean, sem)
            rows.append({**setting, "metric": metric, "theory": t_val, "theory_err": t_err,
                         "sim_mean": mean, "sim_sem": sem, "n": int(sim.size), "z": z,
                         "flags": "; ".join(flags.get(point_id, []))})
    return rows, axes


def _pm(value, err, digits: str) -> str:
    """``value ± err``: ``?`` for an unknown error, ``nan`` for an undefined value."""
    v = f"{value:.4g}" if known(value) else "nan"
    return f"{v} ± {format(err, digits) if known(err) else '?'}"


def _z(z) -> str:
    return f"{z:+.2f}" if known(z) else "n/a"


def format_table(rows, axes) -> str:
    head = axes + ["metric", "theory", "simulation (n)", "z", "theory flags"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        lines.append("| " + " | ".join([str(r[a]) for a in axes] + [
            r["metric"], _pm(r["theory"], r["theory_err"], ".1g"),
            f"{_pm(r['sim_mean'], r['sim_sem'], '.2g')} ({r['n']})", _z(r["z"]),
            r["flags"] or "—"]) + " |")
    return "\n".join(lines)


def paired_difference(store_root, metric: str, axis: str, a, b) -> dict:
    """Theory and seed-paired simulation difference of ``metric`` between ``axis = a`` and
    ``axis = b`` (every other axis must have one value). Theory error: the two MC errors in
    quadrature; simulation: mean ± sem of the per-seed differences over the seeds present at both."""
    table = load_table(store_root)
    if axis not in table.columns:
        raise ValueError(f"--paired: {axis!r} is not an axis of this store "
                         f"(columns: {', '.join(c for c in table.columns if '.' in c)})")
    sel = table[table.metric == metric]
    at = lambda value: sel[np.isclose(sel[axis].astype(float), float(value))]  # noqa: E731
    rows_a, rows_b = at(a), at(b)
    th_a, th_b = rows_a[rows_a.source == "theory"], rows_b[rows_b.source == "theory"]
    if th_a.empty or th_b.empty:
        raise ValueError(f"no theory for {metric} at {axis} = {a} and {b}")
    theory = float(th_a["value"].iloc[0]) - float(th_b["value"].iloc[0])
    err_a, err_b = float(th_a["error"].iloc[0]), float(th_b["error"].iloc[0])
    err = math.hypot(err_a, err_b) if known(err_a) and known(err_b) else math.nan
    sim_a = rows_a[rows_a.source == "simulation"].set_index("seed")["value"]
    sim_b = rows_b[rows_b.source == "simulation"].set_index("seed")["value"]
    seeds = sorted(set(sim_a.index) & set(sim_b.index))
    diffs = np.array([float(sim_a[s]) - float(sim_b[s]) for s in seeds])
    mean = float(diffs.mean()) if diffs.size else math.nan
    sem = float(diffs.std(ddof=1) / math.sqrt(diffs.size)) if diffs.size > 1 else math.nan
    return {"metric": metric, "axis": axis, "a": a, "b": b, "theory": theory, "theory_err": err,
            "sim_mean": mean, "sim_sem": sem, "n": int(diffs.size),
            "sim_z_vs_zero": mean / sem if known(sem) and sem > 0 else math.nan,
            "z": z_score(theory, err, mean, sem)}


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m figures.table",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("store")
    ap.add_argument("--metrics", default=",".join(DEFAULT_METRICS))
    ap.add_argument("--paired", metavar="AXIS=A,B",
                    help="seed-paired difference value(A) - value(B) along AXIS")
    return ap


def parse_paired(text: str) -> tuple[str, float, float]:
    """``"pretrain.lam=0.18,0.27"`` -> ``("pretrain.lam", 0.18, 0.27)``; ValueError naming
    ``--paired`` otherwise."""
    axis, sep, values = text.partition("=")
    parts = values.split(",")
    try:
        if not sep or not axis or len(parts) != 2:
            raise ValueError
        a, b = (float(v) for v in parts)
    except ValueError:
        raise ValueError(f"--paired {text!r}: expected AXIS=A,B with two numbers, e.g. "
                         "pretrain.lam=0.18,0.27") from None
    return axis, a, b


def main(argv=None) -> int:
    from simulations.cli_io import plain_warnings

    args = parser().parse_args(argv)
    plain_warnings("figures.table")
    try:
        return _main(args)
    except ValueError as err:
        print(f"figures.table: {err}", file=sys.stderr)
        return 2


def _main(args) -> int:
    store = Path(args.store)
    if not (store / "spec.json").is_file():
        raise ValueError(f"{str(store)!r} is not a results store (no spec.json)")
    for metric in args.metrics.split(","):
        try:
            if not metric.startswith("bayes_finetune."):   # the bound's metrics (T38-T40)
                split_metric(metric)
        except KeyError as err:
            raise ValueError(f"--metrics: {err.args[0]}") from None
    if load_table(store).empty:
        raise ValueError(f"{str(store)!r} holds no readable records")
    if args.paired:
        axis, a, b = parse_paired(args.paired)
        print(f"| metric | theory: {axis}={a:g} − {b:g} | simulation: paired mean ± sem (n) "
              "| sim z vs 0 | z vs theory |\n|---|---|---|---|---|")
        for metric in args.metrics.split(","):
            r = paired_difference(args.store, metric, axis, a, b)
            print(f"| {metric} | {_pm(r['theory'], r['theory_err'], '.1g')} | "
                  f"{_pm(r['sim_mean'], r['sim_sem'], '.2g')} ({r['n']}) | "
                  f"{_z(r['sim_z_vs_zero'])} | {_z(r['z'])} |")
        return 0
    rows, axes = comparison_rows(args.store, args.metrics.split(","))
    print(format_table(rows, axes))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
