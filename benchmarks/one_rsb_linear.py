"""1RSB (zero temperature) against RS for symmetric rank-one LoRA, LINEAR attention, zero backbone
(theory/finetuning/one_rsb_linear.py; docs/validation/scarce_data.md §3.16).

For each (α', λ') and each MC repeat (independent key, frozen outer draws shared by RS and 1RSB):
RS fixed point (q0 = q, exact global prox, Powell hybrid on the frozen draws), then the 1RSB
saddle on a μ grid by continuation, the complexity Σ(μ) = μ(e − φ) and the ground state
φ(μ*) at Σ(μ*) = 0 (linear interpolation of Σ between the bracketing grid points; φ_GS =
max over the branch of φ). Prints markdown tables; ``--out`` writes every record as JSON.

    taskset -c 1 nice -n 5 python benchmarks/one_rsb_linear.py --points 0.5:0.05 --repeats 2
"""

from __future__ import annotations

import argparse
import json
import time

import theory  # noqa: F401  (float64)
import jax
import numpy as np

from theory.finetuning import one_rsb_linear as o
from theory.finetuning import one_rsb_ground as g
from one_rsb_tables import table


def run_point(al, lam, key, N, mus, rule_sizes, starts, delta=2.25, T=3):
    """:func:`theory.finetuning.one_rsb_ground.search` on this module's draws (ξ0, η, G; zero
    backbone: Δ = Δ_eff = 2.25), every saddle printed."""
    prob = o.LinearProblem(T, al, lam, 1.0, delta)
    data = o.draws(jax.random.PRNGKey(key), N, T)
    rs_rule, rule = o.inner_rule(T, **o.RS_RULE), o.inner_rule(T, *rule_sizes)
    t0 = time.time()
    R = g.search(prob, lambda x0: o.solve_mu(prob, 0.0, data, rs_rule, np.asarray(x0), rs=True),
                 lambda mu, x0: o.solve_mu(prob, mu, data, rule, np.asarray(x0)), mus, starts,
                 log=lambda s: print(f"  [α'={al} λ'={lam} key={key}] {s}", flush=True),
                 rs_starts=g.RS_STARTS["linear"])
    R["rs"]["seconds"] = time.time() - t0
    return dict(alpha=al, lam=lam, key=key, N=N, rule=rule_sizes, rs=R["rs"],
                branches=R["branches"])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--points", nargs="+", default=["0.5:0.05", "0.5:0.5", "0.75:0.05"],
                    help="alpha':lambda' pairs")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--key0", type=int, default=11)
    ap.add_argument("--N", type=int, default=2000, help="outer MC samples (η antithetic)")
    ap.add_argument("--rule", type=int, nargs=2, default=[6, 8], help="n_gh n_gl (R10)")
    ap.add_argument("--mus", type=str, default="0,0.03,0.06,0.1,0.15,0.2,0.3,0.45")
    ap.add_argument("--starts", nargs="+",
                    default=["informative:0.5:0.5", "uninformative:0.01:0.0"],
                    help="name:q0/q:m/sqrt(q0 q0*) starting points of the μ continuation")
    ap.add_argument("--out", type=str, default=None)
    a = ap.parse_args(argv)
    mus = [float(t) for t in a.mus.split(",")]
    starts = [(s.split(":")[0], float(s.split(":")[1]), float(s.split(":")[2])) for s in a.starts]
    results = []
    for p in a.points:
        al, lam = (float(t) for t in p.split(":"))
        for k in range(a.repeats):
            t = time.time()
            results.append(run_point(al, lam, a.key0 + k, a.N, mus, tuple(a.rule), starts))
            results[-1]["seconds"] = time.time() - t
            if a.out:
                with open(a.out, "w") as fh:
                    json.dump(results, fh, indent=1, default=float)
    print(table(results, lambda R: [R['alpha'], R['lam'], R['key']], ["α′", "λ′", "key"]))


if __name__ == "__main__":
    main()
