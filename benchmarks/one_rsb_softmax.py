"""1RSB (zero temperature) against RS for symmetric rank-one LoRA, per μ (the tables of
docs/validation/scarce_data.md §3.17; softmax, or linear with ``--set model.attention=linear``).

For each MC repeat (key ``--key0 + r``): :func:`theory.finetuning.one_rsb_ground.search` (the RS
fixed point, the 1RSB saddle along the μ grid from each ``--starts`` entry, the ground state at
Σ = 0), every saddle printed with its time. ``hdlora one-rsb`` runs the same search and reports
the aggregated metrics; this script keeps every μ. The configuration is the project's (``--set
section.field=value``; the pre-training state from its RS solver). Prints a markdown table;
``--out`` writes every record as JSON after each repeat.

    python benchmarks/one_rsb_softmax.py --set pretrain.lam=1000 --set finetune.alpha=0.75 \\
        --set finetune.lam=0.05 --repeats 1 --N 1000 --n-gh 4 --mus 0,0.5,1,2,4,8
"""

from __future__ import annotations

import argparse
import json
import time

import theory  # noqa: F401  (float64)
import jax

from theory.config import Config
from theory.finetuning import one_rsb_ground as g
from theory.predict import predict_pretraining


def _cfg(sets, N):
    """The default config with the CLI's ``--set`` assignments (typed, validated)."""
    return Config().with_overrides([*sets, f"theory.mc_samples={N}"])


def run_repeat(cfg, pre, key, mus, n_gh, starts, log=print):
    """One repeat of :func:`theory.finetuning.one_rsb_ground.search` with key ``key``, every
    saddle timed and logged."""
    settings = g.Settings(n_outer=cfg.theory.mc_samples, n_gh=n_gh, mus=tuple(mus),
                          starts=tuple(starts))
    prob, solve_rs, solve_rsb = g.channel(cfg, pre, jax.random.PRNGKey(key), settings)

    def timed(fn):
        def run(*a):
            t = time.time()
            r = fn(*a)
            r["seconds"] = time.time() - t
            return r
        return run
    R = g.search(prob, timed(solve_rs), timed(solve_rsb), mus, starts,
                 log=lambda s: log(f"  [key={key}] {s}"))
    return dict(key=key, **R)


def table(results):
    rows = ["| key | solution | μ | q | q0 | m | overlap | overlap_inter | φ | e | Σ | train | "
            "test | residual |", "|" + "---|" * 14]
    for R in results:
        rs = R["rs"]
        rows.append(f"| {R['key']} | RS{'' if R['rs_converged'] else ' (not converged)'} | 0 | {rs['q']:.4f} | = q | {rs['m']:.4f} | "
                    f"{rs['overlap']:.3f} | — | {rs['phi']:.4f} | {rs['energy']:.4f} | 0 | "
                    f"{rs['train']:.4f} | {rs['test_error']:.4f} | {rs['residual']:.1e} |")
        for B in R["branches"]:
            for r in B["records"]:
                rows.append(f"| {R['key']} | 1RSB {B['name']} | {r['mu']:.3g} | {r['q']:.4f} | "
                            f"{r['q0']:.4f} | {r['m']:.4f} | {r['overlap']:.3f} | "
                            f"{r['overlap_inter']:.3f} | {r['phi']:.4f} | {r['energy']:.4f} | "
                            f"{r['sigma']:.2e} | {r['train']:.4f} | {r['test_error']:.4f} | "
                            f"{r['residual']:.1e} |")
            g = B["ground"]
            if g is not None:
                rows.append(f"| {R['key']} | **1RSB {B['name']} Σ = 0** | {g['mu']:.3g} | "
                            f"{g['q']:.4f} | {g['q0']:.4f} | {g['m']:.4f} | {g['overlap']:.3f} | "
                            f"{g['overlap_inter']:.3f} | {g['phi']:.4f} | {g['energy']:.4f} | 0 | "
                            f"{g['train']:.4f} | {g['test_error']:.4f} | — |")
    return "\n".join(rows)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--key0", type=int, default=11)
    ap.add_argument("--N", type=int, default=1000, help="outer MC samples (η antithetic)")
    ap.add_argument("--n-gh", type=int, default=4, help="Gauss–Hermite nodes per axis (inner)")
    ap.add_argument("--mus", type=str, default="0.5,1,2,3,5,8,12")
    ap.add_argument("--starts", nargs="+", default=["informative:0.5:0.5"],
                    help="name:q0/q:m/sqrt(q0 q0*) starting points of the μ continuation")
    ap.add_argument("--out", type=str, default=None)
    a = ap.parse_args(argv)
    cfg = _cfg(a.set, a.N)
    pre = predict_pretraining(cfg)
    print(f"pre-training: Q={pre.Q:.4g} M={pre.M:.4g} Q0={pre.Q0:.4g}", flush=True)
    mus = [float(t) for t in a.mus.split(",")]
    starts = [(s.split(":")[0], float(s.split(":")[1]), float(s.split(":")[2]))
              for s in a.starts]
    log = lambda s: print(s, flush=True)
    results = []
    for k in range(a.repeats):
        t = time.time()
        results.append(run_repeat(cfg, pre, a.key0 + k, mus, a.n_gh, starts, log))
        results[-1].update(seconds=time.time() - t, sets=a.set, N=a.N, n_gh=a.n_gh)
        if a.out:
            with open(a.out, "w") as fh:
                json.dump(results, fh, indent=1, default=float)
    print(table(results))


if __name__ == "__main__":
    main()
