"""Error against time of the fine-tuning channel's sampling (issue 13, variance reduction).

For each sampling ("mc": i.i.d. normal draws, η antithetic — the default; "qmc": scrambled Sobol
base points, same antithetic η) and each N, solves the symmetric LoRA fixed point (T28–T31) on R
independent replicates (the engine's MC repeats; for qmc independent Owen scramblings) and
prints the spread of q, m, test error over the replicates (the error of ONE replicate: the
honest error bar is spread/√R), the time per replicate, and the efficiency 1/(spread²·time)
relative to mc at the same N.

Usage: PYTHONPATH=. python benchmarks/bench_qmc.py [--point linear|softmax] [--n 1000,4000]
       [--repeats 6]
"""

from __future__ import annotations

import argparse
import os
import time

import jax
import numpy as np

import theory  # noqa: F401  (x64)
from theory import engine
from theory.compile_cache import enable_compilation_cache
from theory.config import Config
from theory.finetuning import lora
from theory.states import PretrainState

PRE = PretrainState(Q=2.47, M=2.02, Q0=2.0, V=1.0)   # illustrative pre-training state
POINTS = {"linear": {"model": {"attention": "linear"}}, "softmax": {}}


def run(cfg, sampling, R):
    S = lora._Setup(cfg, PRE, sampling=sampling)
    settings = engine.Settings.from_config(cfg, repeats=R)
    t0 = time.perf_counter()
    sol = engine.solve(lora.LoraChannel(S), settings, jax.random.PRNGKey(cfg.theory.seed),
                       lora._starts(S))
    dt = time.perf_counter() - t0
    return sol, dt, sol.repeats


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--point", default="linear", choices=list(POINTS))
    ap.add_argument("--n", default="1000,4000")
    ap.add_argument("--repeats", type=int, default=6)
    args = ap.parse_args()
    enable_compilation_cache(os.environ.get("HDLORA_BENCH_CACHE", "/tmp/hdlora_bench_engine"))
    base = Config.from_dict(POINTS[args.point])
    out = []
    for n in [int(x) for x in args.n.split(",")]:
        cfg = base.replace(theory={"mc_samples": n})
        run(cfg.replace(theory={"mc_repeats": 1}), "mc", 1)             # compile at this N
        for sampling in ("mc", "qmc"):
            sol, dt, rows = run(cfg, sampling, args.repeats)
            sd = {k: float(np.std([r[k] for r in rows], ddof=1))
                  for k in ("q", "m", "overlap", "test_error")}
            out.append((n, sampling, dt / args.repeats, sd, sol.metrics, sol.result))
    print(f"point {args.point}, R = {args.repeats} replicates, load {os.getloadavg()[0]:.1f}")
    print("| N | sampling | s / replicate | sd(q) | sd(m) | sd(test) | q (mean) | test (mean) "
          "| efficiency vs mc (test) |")
    print("|---|---|---|---|---|---|---|---|---|")
    ref = {}
    for n, sampling, t, sd, M, res in out:
        eff = 1.0 / (sd["test_error"] ** 2 * t)
        ref.setdefault(n, eff)
        print(f"| {n} | {sampling} | {t:.2f} | {sd['q']:.2g} | {sd['m']:.2g} | "
              f"{sd['test_error']:.2g} | {M['q']:.5f} | {M['test_error']:.4f} | "
              f"{eff / ref[n]:.2f} | {res}")


if __name__ == "__main__":
    main()
