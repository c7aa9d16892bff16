"""Timing of the fine-tuning RS solver (THEORY.md T28–T31; issue 4 "Speed").

1. A 30-point α' curve, softmax, T = 3, continuation (``lora.solve_curve``), after compilation.
2. The same equations solved the way precursor codes do: plain numpy loops over the Monte-Carlo
   draws with ``scipy.optimize.minimize`` (BFGS) per prox, finite-difference free; one hat
   evaluation (one fixed-point iteration) per point on 2–3 points, compared with one jitted
   channel evaluation of :mod:`theory.finetuning.lora` on the same draws. Prints the ratio.

Usage: python benchmarks/bench_theory_finetune.py [--n 2000] [--points 30] [--lam 0.05]
       [--skip-curve] [--alpha-min 0.5]
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
from scipy.optimize import minimize

import theory  # noqa: F401  (x64)
from theory.config import Config
from theory.finetuning import lora
from theory.states import PretrainState

PRE = PretrainState(Q=2.47, M=2.02, Q0=2.0, V=1.0)   # illustrative pre-training state


def precursor_iteration(S, data, q, m, v, n):
    """One hat evaluation with numpy/scipy loops over samples (the precursor style)."""
    T, q0, beta = S.T, S.q0, S.beta
    xi, eta = np.asarray(data["xi_t"])[:n], np.asarray(data["eta"])[:n]
    Sst, Htea = np.asarray(data["Sst"])[:n], np.asarray(data["Htea"])[:n]
    sp = np.sqrt(q0 - m * m / q)

    def sm(H):
        e = np.exp(beta * (H - H.max(-1, keepdims=True)))
        return e / e.sum(-1, keepdims=True)

    f2 = 0.0
    for i in range(n):
        om = np.sqrt(q) * xi[i]
        ze = m / np.sqrt(q) * xi[i] + sp * eta[i]
        Y = sm(Htea[i] + np.outer(ze, ze) - q0 * np.eye(T))
        F = lambda z: np.sum((z - om) ** 2) / (2 * v) + np.sum(
            (sm(Sst[i] + np.outer(z, z) - q * np.eye(T)) - Y) ** 2)
        best = min((minimize(F, z0, method="BFGS") for z0 in (om, -om)), key=lambda r: r.fun)
        f = (best.x - om) / v
        f2 += f @ f
    return f2 / n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--points", type=int, default=30)
    ap.add_argument("--precursor-n", type=int, default=200)
    ap.add_argument("--lam", type=float, default=0.05, help="finetune.lam of the curve")
    ap.add_argument("--skip-curve", action="store_true", help="only the precursor ratio")
    ap.add_argument("--alpha-min", type=float, default=0.5, help="curve from alpha-min to 6")
    args = ap.parse_args()
    cfg = Config().replace(theory={"mc_samples": args.n, "mc_repeats": 1, "tol": 1e-5},
                           finetune={"lam": args.lam})
    alphas = np.linspace(args.alpha_min, 6.0, args.points)
    if not args.skip_curve:
        lora.solve_curve(cfg, PRE, alphas[:2])                       # compile
        t = time.perf_counter()
        out = lora.solve_curve(cfg, PRE, alphas)
        t_curve = time.perf_counter() - t
        print(f"{args.points}-point softmax curve (N = {args.n}, lam' = {args.lam}): {t_curve:.1f} s;"
              f" spinodals: {out['spinodals']}", flush=True)
        for a, s in zip(out["alphas"], out["states"]):
            print(f"  alpha'={a:.2f} q={s.q:.4f} m={s.m:.4f} o={s.metrics['overlap']:.4f} "
                  f"test={s.metrics['test_error']:.4f} branches={s.solver['n_branches']} "
                  f"iterations={s.solver['iterations']} converged={s.solver['converged']} "
                  f"rs_doubtful={s.solver['rs_doubtful']}", flush=True)
    # one channel evaluation: jax vs precursor loops, same draws, per sample
    S = lora._Setup(cfg, PRE)
    data = S.data(jax.random.PRNGKey(0))
    run = lora._channel_fn(S.kind, S.beta, S.T, True)
    for (q, m, v) in [(1.0, 0.8, 0.05), (0.8, 0.5, 0.05)]:
        x = jnp.array([q, m, v])
        jax.block_until_ready(run(x, S.q0, jnp.zeros((S.n, S.T)), data))
        t = time.perf_counter()
        jax.block_until_ready(run(x, S.q0, jnp.zeros((S.n, S.T)), data))
        t_jax = (time.perf_counter() - t) / S.n
        t = time.perf_counter()
        precursor_iteration(S, data, q, m, v, args.precursor_n)
        t_pre = (time.perf_counter() - t) / args.precursor_n
        print(f"(q, m, v) = ({q}, {m}, {v}): per sample jax {t_jax * 1e6:.1f} us, precursor "
              f"{t_pre * 1e6:.1f} us, ratio {t_pre / t_jax:.1f}x")


if __name__ == "__main__":
    main()
