"""MC repeats on threads (``theory.engine.Settings.workers``) against one thread, in one process.

Solves the MODEL.md §6 default (pre-training and fine-tuning, ``theory.predict.predict_states``)
after a warm-up, alternating workers = 1 and workers = the process's cores, and prints the solver
times and whether the numbers are the same. Run it unpinned on an otherwise idle machine (pinned to
one core the default is already 1 worker).

Usage: python benchmarks/bench_threads.py [--rounds 3] [--set section.field=value ...]
"""

from __future__ import annotations

import argparse
import os
import time

from theory.config import Config
from theory.engine import settings as engine_settings
from theory.predict import predict_states


def solve(cfg, workers: int):
    cores = engine_settings.available_cores
    engine_settings.available_cores = lambda: workers
    try:
        t0 = time.perf_counter()
        res, pre, fin = predict_states(cfg)
        return time.perf_counter() - t0, pre.solver["seconds"], fin.solver.get("seconds"), res
    finally:
        engine_settings.available_cores = cores


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--set", action="append", default=[])
    args = ap.parse_args()
    cfg = Config().with_overrides(args.set)
    n = engine_settings.available_cores()
    solve(cfg, 1)
    solve(cfg, n)                                            # warm-up (compilation)
    rows = {1: [], n: []}
    for r in range(args.rounds):
        for w in ((1, n) if r % 2 == 0 else (n, 1)):
            rows[w].append(solve(cfg, w))
    print(f"cores {n}, load {os.getloadavg()[0]:.1f}")
    print("| workers | total s | pre-training s | fine-tuning s | overlap |")
    print("|---|---|---|---|---|")
    for w, rs in rows.items():
        for tot, tp, tf, res in rs:
            print(f"| {w} | {tot:.2f} | {tp:.2f} | {tf:.2f} | {res['finetune']['overlap']['value']!r} |")


if __name__ == "__main__":
    main()
