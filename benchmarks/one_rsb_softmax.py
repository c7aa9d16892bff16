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
from one_rsb_tables import table
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
    print(table(results, lambda R: [R['key']], ["key"]))


if __name__ == "__main__":
    main()
