"""Engine protocol variants side by side on one fine-tuning point (issue 13, step 3).

Solves the symmetric LoRA channel (T28–T31) with :func:`theory.engine.solve` under several
:class:`theory.engine.Settings` variants in one process, after a compilation pass, alternating the
order, and prints per variant: solve time, full (multistart) and warm-only channel calls with
their time, q, m, test error ± MC error, and z against the first (baseline) variant.

Usage: python benchmarks/bench_engine.py [--point softmax|linear|reuse|selection]
       [--variants base,warmfirst] [--rounds 1]
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import time

import jax

import theory  # noqa: F401  (x64)
from theory import engine
from theory.compile_cache import enable_compilation_cache
from theory.config import Config
from theory.finetuning import lora
from theory.states import PretrainState

PRE = PretrainState(Q=2.47, M=2.02, Q0=2.0, V=1.0)   # illustrative pre-training state
POINTS = {
    "softmax": {},
    "linear": {"model": {"attention": "linear"}},
    "reuse": {"model": {"T": 2}, "finetune": {"alpha": 3.0, "lam": 0.5, "reuse": True}},
    "selection": {"finetune": {"selection": "smallest_score", "pool_alpha": 8.0}},
}
VARIANTS = {"base": {}, "warmfirst": {"cold_full_first": False}, "tol6": {"tol": 1e-6},
            "tol5": {"tol": 1e-5}}


class Counting:
    """Wraps a channel: counts and times the full and warm-only ``means`` calls."""

    def __init__(self, ch):
        self.ch, self.n, self.t = ch, {True: 0, False: 0}, {True: 0.0, False: 0.0}

    def __getattr__(self, k):
        return getattr(self.ch, k)

    def means(self, x, warm, data, full):
        t0 = time.perf_counter()
        out = self.ch.means(x, warm, data, full)
        jax.block_until_ready(out)
        self.n[full] += 1
        self.t[full] += time.perf_counter() - t0
        return out


def solve(cfg, overrides):
    S = lora._Setup(cfg, PRE)
    ch = Counting(lora.LoraChannel(S))
    settings = dataclasses.replace(engine.Settings.from_config(cfg), **overrides)
    t0 = time.perf_counter()
    sol = engine.solve(ch, settings, jax.random.PRNGKey(cfg.theory.seed), lora._starts(S))
    return sol, time.perf_counter() - t0, ch


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--point", default="softmax", choices=list(POINTS))
    ap.add_argument("--variants", default="base,warmfirst")
    ap.add_argument("--rounds", type=int, default=1)
    args = ap.parse_args()
    enable_compilation_cache(os.environ.get("HDLORA_BENCH_CACHE", "/tmp/hdlora_bench_engine"))
    cfg = Config.from_dict(POINTS[args.point])
    names = args.variants.split(",")
    solve(cfg.replace(theory={"mc_repeats": 1}), {})            # compile
    rows = {n: [] for n in names}
    for r in range(args.rounds):
        for n in (names if r % 2 == 0 else names[::-1]):
            rows[n].append(solve(cfg, VARIANTS[n]))
    print(f"point {args.point}, N = {cfg.theory.mc_samples} × R = {cfg.theory.mc_repeats}, "
          f"load {os.getloadavg()[0]:.1f}")
    print("| variant | solve s | full calls (s) | warm calls (s) | q | m | test ± err | z(test) |")
    print("|---|---|---|---|---|---|---|---|")
    base = rows[names[0]][-1][0]
    for n in names:
        for sol, dt, ch in rows[n]:
            M, E = sol.metrics, sol.mc_err
            eb, en = base.mc_err["test_error"] or 0.0, E["test_error"] or 0.0
            se = math.hypot(eb, en)
            z = (M["test_error"] - base.metrics["test_error"]) / se if se > 0 else float("nan")
            print(f"| {n} | {dt:.1f} | {ch.n[True]} ({ch.t[True]:.1f}) | {ch.n[False]} "
                  f"({ch.t[False]:.1f}) | {M['q']:.5f} | {M['m']:.5f} | {M['test_error']:.4f} ± "
                  f"{en:.2g} | {z:+.2f} |  {sol.result}")


if __name__ == "__main__":
    main()
