"""The fine-tuning landscape behind the restarts (issue 15 item 2, scarce data). Not part of pytest.

    taskset -c 1 python benchmarks/scarce_restarts.py --spec tests/validation/scarce_zero.toml \
        --alpha 0.5 --d 400 --seeds 0 1 2 3 --restarts 8 32 --official 32 --out OUT.json
    python benchmarks/scarce_restarts.py --table OUT.json

Per seed and restart count R: the fine-tuning set of ``simulations.experiment.finetune_on`` (same
backbone, spike, sequences and noise for every R: they are keyed by the seed, not by R), then the
L-BFGS runs of ``simulations.train.finetune_lora`` from its R starts (start 0 spectral, R − 1
random directions from the seed's "lora_init" key, the norm from the same grid search), but with
every run's minimiser kept, not only the best: objective L'/d, train error, q, m, overlap,
converged. The best of R = ``sim.restarts`` is what ``finetune_on`` reports (checked: the
``--official`` R is also run through ``finetune_on`` itself, which adds the test error). The
starts are nested: the first 8 of R = 32 are the 8 of R = 8 (``jax.random.normal`` of shape
(R, d) from one key gives the same leading rows with JAX's partitionable threefry, checked: the
first 8 objectives of R = 32 equal those of R = 8 to 1e-15), so R = 32 adds 24 starts.

Distinct minima: restart minimisers sorted by objective, grouped while consecutive objectives
differ by at most ``RESTART_RTOL`` (1e-6, relative; the simulator's success criterion) and their
overlaps by at most 1e-3 (w and −w are one model; the overlap uses |m|).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

import simulations  # noqa: F401  (float64)
from simulations import experiment, metrics, model, train
from simulations.data import purpose_key
from simulations.plan import split
from simulations.sweeps.spec import load_spec

OVERLAP_TOL = 1e-3


@partial(jax.jit, static_argnames=("plan", "restarts"))
def _all_restarts(root, bb, num, plan, restarts):
    fdata, w_star, c0 = experiment._finetune_data_impl(root, bb, plan, num)
    X, B, A_t = fdata.X, fdata.B, fdata.A_target
    G = model.gram(X)
    d = X.shape[-1]
    kw = dict(attention=plan.attention, beta=num["beta"], output=plan.output)
    lam = num["lam_ft"]
    fun = lambda p: train.finetune_objective(p, X, G, B, A_t, c0, lam=lam, **kw)  # noqa: E731
    direction, eval0 = train.spectral_direction(X, G, B, A_t, c0, **kw)
    scale_grid = jnp.geomspace(0.02, 4.0, 24)
    grid = jax.vmap(lambda q: fun({"w": jnp.sqrt(q * d) * direction}))(scale_grid)
    q_init = scale_grid[jnp.argmin(grid)]
    key_u, _ = jax.random.split(purpose_key(root, "lora_init"))
    g = jax.random.normal(key_u, (restarts, d))
    dirs = (g / jnp.linalg.norm(g, axis=1, keepdims=True)).at[0].set(direction)
    starts = {"w": jnp.sqrt(q_init * d) * dirs}
    params, rep = jax.vmap(lambda p0: train.lbfgs(fun, p0, gtol=num["finetune_gtol"],
                                                  max_steps=num["max_steps"]))(starts)

    def per_run(w):
        A = model.attention(model.lora_score({"w": w}, X, B, c0), plan.attention, num["beta"])
        te = jnp.mean(model.per_sample_loss(A, A_t, G, plan.output))
        op = metrics.lora_order_parameters({"w": w}, w_star)
        return te, op["q"], op["m"], op["overlap"]

    te, q, m, ov = jax.vmap(per_run)(params["w"])
    return {"objective": rep.value, "converged": rep.converged, "stalled": rep.stalled,
            "steps": rep.steps, "train_error": te, "q": q, "m": m, "overlap": ov,
            "q_init": q_init, "spectral_eigenvalue": eval0}


def _cfg(spec_path, alpha, d, restarts, extra):
    base = load_spec(spec_path).base
    over = [f"finetune.alpha={alpha!r}", f"sim.d={d}", f"sim.restarts={restarts}"] + list(extra)
    return base.with_overrides(over)


def minima(runs: dict) -> list[dict]:
    """Distinct minima (see the module docstring): objective, overlap, train error, hits."""
    order = np.argsort(runs["objective"])
    groups: list[list[int]] = []
    for i in order:
        if groups:
            j = groups[-1][0]
            gap = abs(runs["objective"][i] - runs["objective"][j]) / abs(runs["objective"][j])
            if gap <= train.RESTART_RTOL and abs(runs["overlap"][i] - runs["overlap"][j]) <= OVERLAP_TOL:
                groups[-1].append(int(i))
                continue
        groups.append([int(i)])
    return [{"objective": float(runs["objective"][g[0]]), "overlap": float(runs["overlap"][g[0]]),
             "train_error": float(runs["train_error"][g[0]]), "q": float(runs["q"][g[0]]),
             "hits": len(g), "restarts": g} for g in groups]


def run(args) -> None:
    out = []
    for d in args.d:
        for seed in args.seeds:
            cfg0 = _cfg(args.spec, args.alpha, d, max(args.restarts), args.set)
            t0 = time.time()
            backbone = experiment.pretrain_backbone(cfg0, seed)
            bb = experiment._device_part(backbone["arrays"], False)
            root = jax.random.PRNGKey(seed)
            for R in args.restarts:
                cfg = _cfg(args.spec, args.alpha, d, R, args.set)
                plan, num = split(cfg)
                t1 = time.time()
                res = jax.device_get(_all_restarts(root, bb, num, plan, R))
                runs = {k: np.asarray(v).tolist() for k, v in res.items()}
                mins = minima({k: np.asarray(v) for k, v in res.items()})
                row = {"alpha": args.alpha, "d": d, "seed": seed, "restarts": R,
                       "seconds": time.time() - t1, "runs": runs, "minima": mins,
                       "set": args.set}
                if R in args.official:
                    t2 = time.time()
                    rec = experiment.finetune_on(cfg, backbone, seed)
                    row["official"] = {k: float(rec[k]) for k in
                                       ("finetune.test_error", "finetune.overlap",
                                        "finetune.objective", "finetune.train_error", "finetune.q")}
                    row["official_seconds"] = time.time() - t2
                out.append(row)
                b = mins[0]
                print(f"d={d} seed={seed} R={R}: {len(mins)} distinct minima; best obj "
                      f"{b['objective']:.6f} (hit {b['hits']}x) overlap {b['overlap']:.4f}; "
                      f"overlap range {min(runs['overlap']):.3f}-{max(runs['overlap']):.3f}; "
                      f"{row['seconds']:.1f} s" + (f"; official overlap "
                      f"{row['official']['finetune.overlap']:.4f} test "
                      f"{row['official']['finetune.test_error']:.3f}" if "official" in row else ""),
                      flush=True)
                with open(args.out, "w") as fh:
                    json.dump(out, fh, indent=1)
            print(f"  seed {seed} total {time.time() - t0:.1f} s", flush=True)


def table(path: str) -> None:
    rows = json.load(open(path))
    print("| d | seed | R | distinct minima | best: objective L'/d | overlap | train error | "
          "hits of best | objective range (min–max) | overlap range (min–max) | "
          "train-error range | s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        b = r["minima"][0]
        ob, ov, te = (r["runs"][k] for k in ("objective", "overlap", "train_error"))
        print(f"| {r['d']} | {r['seed']} | {r['restarts']} | {len(r['minima'])} | "
              f"{b['objective']:.5f} | {b['overlap']:.4f} | {b['train_error']:.3f} | "
              f"{b['hits']}/{r['restarts']} | {min(ob):.4f}–{max(ob):.4f} | "
              f"{min(ov):.3f}–{max(ov):.3f} | {min(te):.3f}–{max(te):.3f} | {r['seconds']:.0f} |")
    off = [r for r in rows if "official" in r]
    if off:
        print()
        print("| d | seed | R | finetune_on: overlap | test error | objective | s |")
        print("|---|---|---|---|---|---|---|")
        for r in off:
            o = r["official"]
            print(f"| {r['d']} | {r['seed']} | {r['restarts']} | {o['finetune.overlap']:.4f} | "
                  f"{o['finetune.test_error']:.3f} | {o['finetune.objective']:.5f} | "
                  f"{r['official_seconds']:.0f} |")
    print()
    by = {}
    for r in rows:
        by.setdefault((r["d"], r["restarts"]), []).append(r["minima"][0]["overlap"])
    for (d, R), v in sorted(by.items()):
        v = np.asarray(v)
        sem = v.std(ddof=1) / math.sqrt(len(v)) if len(v) > 1 else float("nan")
        print(f"d={d} R={R}: best-minimum overlap mean {v.mean():.4f} ± {sem:.4f} (n={len(v)})")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--spec", default="tests/validation/scarce_zero.toml")
    p.add_argument("--alpha", type=float, default=0.5)
    p.add_argument("--d", type=int, nargs="+", default=[400])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    p.add_argument("--restarts", type=int, nargs="+", default=[8, 32])
    p.add_argument("--official", type=int, nargs="*", default=[],
                   help="restart counts also run through experiment.finetune_on (test error)")
    p.add_argument("--set", nargs="*", default=[], help="extra config overrides section.field=v")
    p.add_argument("--out")
    p.add_argument("--table")
    args = p.parse_args()
    if args.table:
        table(args.table)
    else:
        run(args)


if __name__ == "__main__":
    main()
