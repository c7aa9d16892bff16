"""Benchmark of the finite-d pipeline (issue 2). Not part of pytest.

    python benchmarks/bench_simulate.py [--dims 150 300] [--seeds 2]

For each d: wall time per seed of the whole pipeline (``simulate_seed``: pre-training,
fine-tuning with restarts, automatic-size test evaluation) after compilation, and of its parts
(``pretrain_backbone``, ``finetune_on``); then the achieved FLOP/s of the pre-training
value-and-gradient (factorized, softmax, values output) against the f64 matmul peak of this machine
measured with a jax matmul. FLOPs are counted analytically (4·n·T·d·P for the two d×P products of
the forward and backward pass, plus the T×T score terms) and by XLA's cost analysis.

    python benchmarks/bench_simulate.py --lam-sweep            # issue 13: 10-point λ′ sweep
    python benchmarks/bench_simulate.py --large 1600 --attention softmax   # issue 15
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time

import numpy as np

import jax
import jax.numpy as jnp

import simulations  # noqa: F401  (float64)
from simulations import data, model, train
from simulations.experiment import finetune_on, pretrain_backbone, simulate_seed
from theory.config import Config


def _best_time(fn, repeats):
    jax.block_until_ready(fn())
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        best = min(best, time.perf_counter() - t0)
    return best


def matmul_peak(size=2048, repeats=5) -> float:
    """f64 GFLOP/s of a jitted size×size matmul (best of ``repeats``)."""
    k1, k2 = jax.random.split(jax.random.PRNGKey(0))
    a = jax.random.normal(k1, (size, size))
    b = jax.random.normal(k2, (size, size))
    f = jax.jit(jnp.matmul)
    return 2 * size**3 / _best_time(lambda: f(a, b), repeats) / 1e9


def gradient_flops(cfg: Config, repeats=10) -> dict:
    """Achieved GFLOP/s of the pre-training value_and_grad at cfg's point."""
    d, T, n, P = cfg.sim.d, cfg.model.T, cfg.n_pretrain, cfg.student_width
    k = jax.random.split(jax.random.PRNGKey(1), 4)
    W0 = data.teacher_factor(k[0], d, cfg.teacher_rank)
    pd = data.pretrain_data(k[1], k[2], W0, n=n, T=T, delta=cfg.pretrain.delta,
                            attention=cfg.model.attention, beta=cfg.model.beta)
    G = model.gram(pd.X)
    W = 0.5 * jax.random.normal(k[3], (d, P))
    vg = jax.jit(jax.value_and_grad(lambda W: train.pretrain_factorized_objective(
        W, pd.X, G, pd.A_target, lam=cfg.pretrain.lam, attention=cfg.model.attention,
        beta=cfg.model.beta, output=cfg.model.output)))
    seconds = _best_time(lambda: vg(W), repeats)
    analytic = 4.0 * n * T * d * P + 6.0 * n * T * T * P
    try:
        cost = vg.lower(W).compile().cost_analysis()
        cost = cost[0] if isinstance(cost, (list, tuple)) else cost
        xla = float(cost.get("flops", float("nan")))
    except Exception:  # noqa: BLE001  (cost analysis is optional)
        xla = float("nan")
    return {"seconds": seconds, "analytic_gflop": analytic / 1e9, "xla_gflop": xla / 1e9,
            "gflops": analytic / seconds / 1e9}


def pipeline_times(cfg: Config, seeds: int) -> dict:
    """Per-seed wall times after compilation (compiled on seed 1000, timed on seeds 0..)."""
    simulate_seed(cfg, 1000)
    pretrain_backbone(cfg, 1000)
    finetune_on(cfg, pretrain_backbone(cfg, 1000))
    whole, pre, fine, steps = [], [], [], []
    for s in range(seeds):
        t0 = time.perf_counter()
        rec = simulate_seed(cfg, s)
        whole.append(time.perf_counter() - t0)
        steps.append((rec["diagnostics"]["pretrain"]["steps"], rec["diagnostics"]["finetune"]["steps"],
                      rec["diagnostics"]["n_test"]))
        t0 = time.perf_counter()
        bb = pretrain_backbone(cfg, s)
        jax.block_until_ready(bb["arrays"]["S_hat"])
        pre.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        finetune_on(cfg, bb)
        fine.append(time.perf_counter() - t0)
    mean = lambda x: sum(x) / len(x)  # noqa: E731
    return {"whole": mean(whole), "pretrain": mean(pre), "finetune+test": mean(fine),
            "steps": steps}


def lam_sweep(d: int = 30, points: int = 10) -> dict:
    """Issue 13: wall time of a ``points``-point λ′ simulation sweep on one shared backbone, in
    this (fresh) process, compilation included (run with HDLORA_JAX_CACHE=off semantics: the
    library never turns the persistent cache on). Uses only the public API, so the same
    function times older commits (PYTHONPATH=<old tree>)."""
    cfg = Config().replace(sim={"d": d, "restarts": 4}, pretrain={"alpha": 0.2})
    lams = list(np.geomspace(0.01, 1.0, points))
    t0 = time.perf_counter()
    bb = pretrain_backbone(cfg, 0)
    t1 = time.perf_counter()
    per_point = []
    for lam in lams:
        s = time.perf_counter()
        finetune_on(cfg.replace(finetune={"lam": float(lam)}), bb)
        per_point.append(time.perf_counter() - s)
    return {"d": d, "pretrain_s": t1 - t0, "sweep_s": sum(per_point), "per_point_s": per_point,
            "load": os.getloadavg()}


def large_finetune(d: int, attention: str, alpha1: float = 1.0) -> dict:
    """Issue 15: one seed of fine-tuning with the equivalent backbone at dimension ``d``: wall
    time of each stage (theory (Q, M), backbone draw, fine-tuning + test, compilation included)
    and the process's peak resident memory."""
    cfg = Config().replace(sim={"d": d, "backbone": "equivalent", "seeds": 1},
                           model={"attention": attention}, finetune={"alpha": alpha1})
    from simulations.backbone import equivalent_targets

    t0 = time.perf_counter()
    equivalent_targets(cfg)
    t1 = time.perf_counter()
    bb = pretrain_backbone(cfg, 0)
    jax.block_until_ready(bb["arrays"]["S_hat"])
    t2 = time.perf_counter()
    rec = finetune_on(cfg, bb)
    t3 = time.perf_counter()
    return {"d": d, "attention": attention, "alpha1": alpha1, "theory_s": t1 - t0,
            "backbone_s": t2 - t1, "finetune_test_s": t3 - t2,
            "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,
            "n_test": rec["diagnostics"]["n_test"], "test_error": rec["finetune.test_error"],
            "overlap": rec["finetune.overlap"], "converged": rec["diagnostics"]["finetune"]["converged"],
            "load": os.getloadavg()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dims", type=int, nargs="+", default=[150, 300])
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--lam-sweep", action="store_true", help="time a 10-point lambda' sweep")
    parser.add_argument("--large", type=int, help="time equivalent-backbone fine-tuning at this d")
    parser.add_argument("--attention", default="linear")
    args = parser.parse_args()
    if args.lam_sweep:
        print(json.dumps(lam_sweep()))
        return
    if args.large:
        print(json.dumps(large_finetune(args.large, args.attention)))
        return
    print(f"jax {jax.__version__}, backend {jax.default_backend()}, devices {jax.devices()}")
    peak = matmul_peak()
    print(f"f64 matmul peak (2048^3, jax): {peak:.1f} GFLOP/s\n")
    print("| d | n | n' | whole pipeline s/seed | pretrain s | finetune+test s | "
          "(pretrain steps, finetune steps, n_test) | grad s | grad GFLOP (analytic/XLA) | "
          "grad GFLOP/s | % of peak |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for d in args.dims:
        cfg = Config().replace(sim={"d": d})
        times = pipeline_times(cfg, args.seeds)
        g = gradient_flops(cfg)
        print(f"| {d} | {cfg.n_pretrain} | {cfg.n_finetune} | {times['whole']:.2f} | "
              f"{times['pretrain']:.2f} | {times['finetune+test']:.2f} | {times['steps']} | "
              f"{g['seconds'] * 1e3:.1f} ms | {g['analytic_gflop']:.2f} / {g['xla_gflop']:.2f} | "
              f"{g['gflops']:.1f} | {100 * g['gflops'] / peak:.0f}% |", flush=True)


if __name__ == "__main__":
    main()
