"""Simulation evidence for the split of the two optima along pre-training λ (issue 14).

    python -m figures.mismatch_evidence run --d 100 --store results/mismatch_evidence
    python -m figures.mismatch_evidence report --store results/mismatch_evidence \
        [--theory results/figures/mismatch_pretraining]

``run`` executes the spec ``figures/specs/mismatch_pretraining_evidence.toml`` at one d (its
``sim.d`` axis restricted to that value; ``--seeds`` overrides the count) into one store, so the
dimensions can be run one after the other and resumed. ``report`` prints, per (d, mode), the
seed-paired differences between the overlap-optimal and the test-optimal λ
(value(λ_ov) − value(λ_te), mean ± sem of the per-seed differences: a seed draws the same teacher
and data at every λ) next to the theory's difference when a theory store is given.
"""

from __future__ import annotations

import argparse
import math
import tomllib

import numpy as np

from simulations.sweeps import load_table, run_sweep
from simulations.sweeps.spec import spec_from_dict

from .common import SPEC_DIR

SPEC = SPEC_DIR / "mismatch_pretraining_evidence.toml"
METRICS = ("finetune.overlap", "finetune.test_error")


def evidence_spec(d: int, seeds: int | None = None):
    """The evidence sweep at one dimension ``d``."""
    data = tomllib.loads(SPEC.read_text())
    data["sweep"]["grid"]["sim.d"] = [int(d)]
    if seeds is not None:
        data["sweep"]["seeds"] = int(seeds)
    return spec_from_dict(data)


def paired_rows(table, lam_overlap: float, lam_test: float, theory=None) -> list[dict]:
    """Per (d, reuse, metric): the seed-paired difference value(λ_ov) − value(λ_te) of the
    simulation, and the theory's difference (MC errors in quadrature) from ``theory`` (a tidy
    table) where it has both λ for that mode."""
    sim = table[table.source == "simulation"]
    rows = []
    for (d, reuse), group in sim.groupby(["sim.d", "finetune.reuse"]):
        for metric in METRICS:
            sel = group[group.metric == metric]
            at = lambda lam: sel[np.isclose(sel["pretrain.lam"].astype(float), lam)] \
                .set_index("seed")["value"]  # noqa: E731
            a, b = at(lam_overlap), at(lam_test)
            seeds = sorted(set(a.index) & set(b.index))
            diffs = np.array([float(a[s]) - float(b[s]) for s in seeds])
            n = diffs.size
            row = {"d": int(d), "reuse": bool(reuse), "metric": metric, "n": n,
                   "a_mean": float(a.mean()), "a_sem": _sem(a.to_numpy()),
                   "b_mean": float(b.mean()), "b_sem": _sem(b.to_numpy()),
                   "diff": float(diffs.mean()) if n else math.nan, "diff_sem": _sem(diffs)}
            row["z_vs_zero"] = row["diff"] / row["diff_sem"] if row["diff_sem"] > 0 else math.nan
            row.update(_theory_diff(theory, reuse, metric, lam_overlap, lam_test))
            if math.isfinite(row.get("theory", math.nan)):
                scale = math.hypot(row["diff_sem"], row["theory_err"])
                row["z"] = (row["diff"] - row["theory"]) / scale if scale > 0 else math.nan
            rows.append(row)
    return rows


def _theory_diff(theory, reuse, metric, a, b) -> dict:
    if theory is None:
        return {}
    th = theory[(theory.source == "theory") & (theory.metric == metric)
                & (theory["finetune.reuse"] == reuse)]
    va = th[np.isclose(th["pretrain.lam"].astype(float), a)]
    vb = th[np.isclose(th["pretrain.lam"].astype(float), b)]
    if va.empty or vb.empty:
        return {}
    err = math.hypot(float(np.nan_to_num(va["error"].iloc[0])),
                     float(np.nan_to_num(vb["error"].iloc[0])))
    return {"theory_a": float(va["value"].iloc[0]), "theory_b": float(vb["value"].iloc[0]),
            "theory": float(va["value"].iloc[0]) - float(vb["value"].iloc[0]),
            "theory_err": err}


def _sem(values) -> float:
    values = np.asarray(values, float)
    return float(values.std(ddof=1) / math.sqrt(values.size)) if values.size > 1 else math.nan


def format_rows(rows, lam_overlap, lam_test) -> str:
    head = (f"| d | mode | metric | sim λ={lam_overlap:g} | sim λ={lam_test:g} | paired diff "
            "± sem (n) | z vs 0 | theory diff | z vs theory |\n|---|---|---|---|---|---|---|---|---|")
    lines = [head]
    for r in rows:
        th = (f"{r['theory']:+.4f} ± {r['theory_err']:.1g}" if "theory" in r else "—")
        z = f"{r['z']:+.2f}" if "z" in r else "—"
        lines.append(
            f"| {r['d']} | {'reused' if r['reuse'] else 'fresh'} | {r['metric']} | "
            f"{r['a_mean']:.4f} ± {r['a_sem']:.4f} | {r['b_mean']:.4f} ± {r['b_sem']:.4f} | "
            f"{r['diff']:+.4f} ± {r['diff_sem']:.4f} ({r['n']}) | {r['z_vs_zero']:+.1f} | {th} | {z} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the evidence sweep at one d")
    run.add_argument("--d", type=int, required=True)
    run.add_argument("--seeds", type=int)
    run.add_argument("--store", default="results/mismatch_evidence")
    run.add_argument("--workers", type=int, default=0)
    rep = sub.add_parser("report", help="seed-paired differences, per d and mode")
    rep.add_argument("--store", default="results/mismatch_evidence")
    rep.add_argument("--theory", help="a store with theory records at both lambda")
    rep.add_argument("--lam-overlap", type=float, default=0.001)
    rep.add_argument("--lam-test", type=float, default=0.03)
    args = ap.parse_args(argv)
    if args.command == "run":
        from theory.compile_cache import enable_compilation_cache

        enable_compilation_cache()
        run_sweep(evidence_spec(args.d, args.seeds), args.store, workers=args.workers,
                  progress=False)
        return 0
    theory = load_table(args.theory) if args.theory else None
    rows = paired_rows(load_table(args.store), args.lam_overlap, args.lam_test, theory)
    print(format_rows(rows, args.lam_overlap, args.lam_test))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
