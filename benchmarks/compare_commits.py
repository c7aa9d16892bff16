"""Theory numbers and solver times of two checkouts side by side (issue 13 "Agreement").

Runs ``theory.predict.predict`` at a set of points in a fresh subprocess per (checkout, point)
(``PYTHONPATH`` = the checkout), with a private persistent compilation cache per checkout that a
first pass fills (``--warm``, default on), and prints a table: per point and metric the old and new
value ± MC error, z = (new − old)/√(err_old² + err_new²), and the timing ratio new/old of the
pre-training solve, the fine-tuning solve and the whole process.

Usage: python benchmarks/compare_commits.py --old /tmp/old --new . [--points softmax,linear,...]
       [--no-warm] [--json out.json]
Points: linear, softmax (MODEL.md §6 default), reuse (T34: T = 2, κ0 = 0.5, α = 0.2, α' = 3,
λ' = 0.1), selection (smallest_score, pool α = 2α'), general (u vᵀ LoRA, linear),
softmax_scarce (α' = 1.2), softmax_lam05 (pre-training λ = 0.5), softmax_zero (λ = 1000, α' = 2).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time

POINTS = {
    "linear": {"model": {"attention": "linear"}},
    "softmax": {},
    "reuse": {"model": {"T": 2}, "pretrain": {"kappa0": 0.5, "alpha": 0.2},
              "finetune": {"alpha": 3.0, "lam": 0.1, "reuse": True}},
    "selection": {"finetune": {"selection": "smallest_score", "pool_alpha": 8.0}},
    "general": {"model": {"attention": "linear"}, "finetune": {"lora": "general"}},
    # scarce data (α' = 1.2, RS doubtful) and the pre-training threshold of the zero backbone
    # (λ_c ≈ 0.55 at the default: softmax λ = 0.5 just below, λ = 1000 far above)
    "softmax_scarce": {"finetune": {"alpha": 1.2}},
    "softmax_lam05": {"pretrain": {"lam": 0.5}},
    "softmax_zero": {"pretrain": {"lam": 1000.0}, "finetune": {"alpha": 2.0}},
}
METRICS = [("pretrain", "Q"), ("pretrain", "M"), ("pretrain", "test_error"),
           ("finetune", "q"), ("finetune", "m"), ("finetune", "overlap"),
           ("finetune", "test_error")]

WORKER = r"""
import json, os, sys, time
t0 = time.perf_counter()
from theory.compile_cache import enable_compilation_cache
enable_compilation_cache(os.environ["CMP_CACHE"])
from theory.config import Config
from theory.predict import predict
cfg = Config.from_dict(json.loads(os.environ["CMP_POINT"]))
out = predict(cfg)
sv = out["solver"]
print("CMPJSON" + json.dumps({"pretrain": out["pretrain"], "finetune": out["finetune"],
      "t_pre": sv["pretrain"].get("seconds"), "t_ft": sv["finetune"].get("seconds"),
      "t_proc": time.perf_counter() - t0, "converged": sv["finetune"].get("converged")}))
"""


def run(checkout: str, point: dict, cache: str) -> dict:
    env = dict(os.environ, PYTHONPATH=os.path.abspath(checkout), CMP_POINT=json.dumps(point),
               CMP_CACHE=cache)
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", WORKER], env=env, capture_output=True, text=True,
                       cwd=os.path.abspath(checkout))
    wall = time.perf_counter() - t0
    line = [x for x in p.stdout.splitlines() if x.startswith("CMPJSON")]
    if not line:
        raise RuntimeError(f"{checkout}: {p.stderr[-2000:]}")
    res = json.loads(line[0][7:])
    res["wall"] = wall
    return res


def fmt(e):
    return "None" if e is None else f"{e:.2g}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--old", default="/tmp/old")
    ap.add_argument("--new", default=".")
    ap.add_argument("--points", default=",".join(POINTS))
    ap.add_argument("--no-warm", action="store_true", help="skip the cache-filling first pass")
    ap.add_argument("--json")
    args = ap.parse_args()
    names = args.points.split(",")
    caches = {w: f"/tmp/hdlora_cmp_cache_{w}" for w in ("old", "new")}
    dirs = {"old": args.old, "new": args.new}
    print(f"load: {os.getloadavg()}", flush=True)
    results = {}
    for name in names:
        if not args.no_warm:
            for w in ("old", "new"):
                run(dirs[w], POINTS[name], caches[w])
        # measured pass, old and new back to back
        results[name] = {w: run(dirs[w], POINTS[name], caches[w]) for w in ("old", "new")}
        r = results[name]
        print(f"\n## {name}  (load {os.getloadavg()[0]:.1f})", flush=True)
        print("| metric | old ± err | new ± err | z |\n|---|---|---|---|")
        for blk, k in METRICS:
            o, n = r["old"][blk][k], r["new"][blk][k]
            eo, en = o["mc_err"], n["mc_err"]
            se = math.hypot(eo or 0.0, en or 0.0)
            z = (n["value"] - o["value"]) / se if se > 0 else float("nan")
            print(f"| {blk}.{k} | {o['value']:.5g} ± {fmt(eo)} | {n['value']:.5g} ± {fmt(en)} "
                  f"| {z:+.2f} |")
        for t in ("t_pre", "t_ft", "wall"):
            a, b = r["old"][t], r["new"][t]
            print(f"| time {t} | {a:.1f} s | {b:.1f} s | ratio new/old {b / a:.2f} |")
        print(f"| converged | {r['old']['converged']} | {r['new']['converged']} | |", flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1)


if __name__ == "__main__":
    main()
