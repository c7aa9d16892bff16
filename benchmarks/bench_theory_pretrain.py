"""Benchmark of the general RS pre-training solver (theory/pretraining/general.py, THEORY T6–T19).

Prints: (1) one softmax T = 3 fixed point (default config, direct and factorized) — compile time
and time after compilation; (2) a 30-point α curve with continuation; (3) Monte-Carlo size vs the
statistical error of the outputs (standard error over ``mc_repeats`` independent frozen samples).
Run: ``python benchmarks/bench_theory_pretrain.py [--quick]``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import theory  # noqa: F401  (x64)
from theory import Config
from theory.pretraining import general


def _cfg(est, alpha=0.2, lam=0.1, N=20000, R=1, tol=1e-6):
    return Config().with_overrides([f"pretrain.estimator='{est}'", f"pretrain.alpha={alpha}",
                                    f"pretrain.lam={lam}", f"theory.mc_samples={N}",
                                    f"theory.mc_repeats={R}", f"theory.tol={tol}"])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="smaller sizes")
    args = ap.parse_args()
    N = 5000 if args.quick else 20000
    print(f"== one fixed point, softmax T=3, (alpha, lam) = (0.2, 0.1), N = {N}, 1 repeat")
    print(f"{'estimator':>11} {'first (s)':>10} {'again (s)':>10} {'iters':>6} {'test':>9}")
    for est in ("direct", "factorized"):
        cfg = _cfg(est, N=N)
        t = time.perf_counter(); general.solve(cfg); t1 = time.perf_counter() - t
        t = time.perf_counter(); s = general.solve(cfg); t2 = time.perf_counter() - t
        print(f"{est:>11} {t1:10.2f} {t2:10.2f} {s.solver['iterations']:6d} "
              f"{s.metrics['test_error']:9.5f}")
    npts = 10 if args.quick else 30
    alphas = np.linspace(0.05, 0.5, npts)
    print(f"== {npts}-point alpha curve with continuation (direct, lam = 0.1, N = {N})")
    t = time.perf_counter()
    states = general.solve_curve(_cfg("direct", N=N), alphas)
    print(f"total {time.perf_counter() - t:.2f} s, iterations "
          f"{sum(s.solver['iterations'] for s in states)}")
    print("== MC size vs statistical error (direct, (0.2, 0.1), 4 repeats)")
    print(f"{'N':>7} " + " ".join(f"{k:>18}" for k in ("Q", "M", "test_error", "train_error")))
    for n in ((2000, 5000) if args.quick else (5000, 20000, 80000)):
        s = general.solve(_cfg("direct", N=n, R=4))
        print(f"{n:7d} " + " ".join(f"{s.metrics[k]:9.5f}±{s.mc_err[k]:.5f}"
                                   for k in ("Q", "M", "test_error", "train_error")))


if __name__ == "__main__":
    main()
