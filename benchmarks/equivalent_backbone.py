"""Trained vs Gaussian-equivalent backbone, paired by seed (issue 15 item 1). Not part of pytest.

    python benchmarks/equivalent_backbone.py --d 150 --seeds 4 --out results_scratch/eqbb.json
    python benchmarks/equivalent_backbone.py --table results_scratch/eqbb.json

Per point and seed s: the trained backbone (M7); the equivalent backbone with the theory's (Q, M)
("eq-theory"); and the equivalent backbone with the trained backbone's realised (Q, M) of the same
seed ("eq-matched", via sim.backbone_Q/M). Same seed → same teacher, spike, fine-tuning
sequences (pool), noises, LoRA inits and test sets for all three (simulations/experiment.py), so
the paired differences isolate what the backbone carries beyond (Q, M, Q0): T25/T26/T36 say
nothing at leading order.
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np

import simulations  # noqa: F401
from simulations.experiment import finetune_on, pretrain_backbone
from theory.config import Config

POINTS = {
    "linear": {"model": {"attention": "linear"}},
    "softmax": {},
    "softmax-select": {"finetune": {"selection": "smallest_score", "pool_alpha": 6.0}},
    "linear-scarce": {"model": {"attention": "linear"}, "finetune": {"alpha": 1.0}},
}
METRICS = ("finetune.test_error", "finetune.overlap", "finetune.q", "finetune.m", "delta_eff",
           "delta_eff_train")


def run(d: int, seeds: int, out: str, points) -> None:
    rows = []
    for name in points:
        cfg = Config().replace(sim={"d": d}, **POINTS[name])
        eq = cfg.replace(sim={"backbone": "equivalent"})
        for s in range(seeds):
            t0 = time.time()
            tr = finetune_on(cfg, pretrain_backbone(cfg, s), s)
            et = finetune_on(eq, pretrain_backbone(eq, s), s)
            Q, M = tr["pretrain.Q"], tr["pretrain.M"]
            em_cfg = eq.replace(sim={"backbone_Q": Q, "backbone_M": M})
            em = finetune_on(em_cfg, pretrain_backbone(em_cfg, s), s)
            for kind, rec in (("trained", tr), ("eq-theory", et), ("eq-matched", em)):
                rows.append({"point": name, "seed": s, "backbone": kind,
                             "Q": rec["pretrain.Q"], "M": rec["pretrain.M"],
                             **{k: rec[k] for k in METRICS},
                             "converged": rec["diagnostics"]["finetune"]["converged"]})
            print(f"{name} seed {s}: {time.time() - t0:.0f} s  test "
                  f"{tr['finetune.test_error']:.4f} / {et['finetune.test_error']:.4f} / "
                  f"{em['finetune.test_error']:.4f}", flush=True)
            with open(out, "w") as fh:
                json.dump({"d": d, "seeds": seeds, "rows": rows}, fh, indent=1)


def _ms(x):
    x = np.asarray(x, float)
    return x.mean(), x.std(ddof=1) / math.sqrt(x.size)


def table(path: str) -> str:
    blob = json.load(open(path))
    rows = blob["rows"]
    lines = [f"d = {blob['d']}, seeds 0..{blob['seeds'] - 1}; mean ± sem over seeds; "
             "Δ = trained − equivalent, paired by seed (mean ± sem of the per-seed differences), "
             "z = Δ/sem(Δ).", ""]
    for metric in ("finetune.test_error", "finetune.overlap", "delta_eff", "delta_eff_train"):
        lines += [f"**{metric}**", "",
                  "| point | Q, M (trained, mean) | Q, M (eq-theory, seed 0) | trained | eq-theory | eq-matched "
                  "| Δ vs eq-theory (z) | Δ vs eq-matched (z) |", "|---|---|---|---|---|---|---|---|"]
        for name in dict.fromkeys(r["point"] for r in rows):
            by = {k: sorted((r for r in rows if r["point"] == name and r["backbone"] == k),
                            key=lambda r: r["seed"]) for k in ("trained", "eq-theory", "eq-matched")}
            n = min(len(v) for v in by.values())
            vals = {k: np.array([r[metric] for r in v[:n]]) for k, v in by.items()}
            cells = [f"{m:.4f} ± {e:.4f}" for m, e in (_ms(vals[k]) for k in by)]
            diffs = []
            for k in ("eq-theory", "eq-matched"):
                m, e = _ms(vals["trained"] - vals[k])
                diffs.append(f"{m:+.4f} ± {e:.4f} ({m / e if e > 0 else float('nan'):+.1f})")
            qm_t = f"{np.mean([r['Q'] for r in by['trained'][:n]]):.3f}, " \
                   f"{np.mean([r['M'] for r in by['trained'][:n]]):.3f}"
            qm_e = f"{by['eq-theory'][0]['Q']:.3f}, {by['eq-theory'][0]['M']:.3f}"
            lines.append(f"| {name} (n={n}) | {qm_t} | {qm_e} | " + " | ".join(cells) + " | "
                         + " | ".join(diffs) + " |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--d", type=int, default=150)
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--points", default=",".join(POINTS))
    ap.add_argument("--out", default="results_scratch/eqbb.json")
    ap.add_argument("--table")
    args = ap.parse_args()
    if args.table:
        print(table(args.table))
    else:
        run(args.d, args.seeds, args.out, args.points.split(","))
