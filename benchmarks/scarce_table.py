"""The validation table of a results store with the theory's trust flags (issue 15 items 2–3).

    python benchmarks/scarce_table.py /work/main/results/validate-scarce-zero \
        [--metrics finetune.test_error,finetune.overlap] [--axis finetune.alpha]
        [--where pretrain.lam=1000]

The rows are those of ``hdlora validate`` (:func:`simulations.validate.validation_rows` on
:func:`simulations.sweeps.load_table` of the whole store: every record, every seed), printed with
the number of seeds per d, the solver's flags exactly as :func:`simulations.sweeps.store.theory_flags`
writes them (the ``theory flags`` column that ``python -m simulations.flag_audit`` reads; "—" for
none) and, in a separate column, the fine-tuning solver's replicon λ_AT, multi-minimum fraction and
Stein-hat use. Also the per-record seconds (``meta.seconds``) by d. ``--where FIELD=VALUE``
(repeatable) keeps the records of a store whose grid has a second axis besides ``--axis`` and d.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from simulations.sweeps import load_table
from simulations.sweeps.store import ResultStore, theory_flags
from simulations.validate import validation_rows


def _fmt(x, spec=".4g"):
    return "?" if x is None or not np.isfinite(x) else format(x, spec)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("store")
    p.add_argument("--metrics", default="finetune.test_error,finetune.overlap")
    p.add_argument("--axis", default="finetune.alpha")
    p.add_argument("--where", action="append", default=[], metavar="FIELD=VALUE")
    args = p.parse_args()
    where = {}
    for item in args.where:
        field, _, value = item.partition("=")
        where[field] = float(value)
    table = load_table(args.store)
    for field, value in where.items():
        if field not in table.columns:
            raise SystemExit(f"--where {field}: not a field of the store's table")
        table = table[np.isclose(table[field].astype(float), value)]
    rows = validation_rows(table, args.metrics.split(","), [args.axis, "sim.d"])
    theory = {}
    secs: dict = {}
    for rec in ResultStore(args.store).records():
        if any(not np.isclose(float(rec["point"].get(f, np.nan)), v) for f, v in where.items()):
            continue
        key = rec["point"].get(args.axis)
        if rec["kind"] == "theory":
            theory.setdefault(key, rec)
        else:
            secs.setdefault((key, rec["point"]["sim.d"]), []).append(
                (rec.get("meta") or {}).get("seconds"))
    sim = table[table.source == "simulation"]
    print(f"| {args.axis} | metric | theory | sim by d (mean ± sem (seeds)) | extrap 1/√d | z | "
          "extrap 1/d | z | theory flags | fine-tuning solver |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        a = r[args.axis]
        s = sim[(sim[args.axis] == a) & (sim.metric == r["metric"])]
        n = s.groupby("sim.d")["value"].count()
        per_d = "; ".join(f"{int(d)}: {m:.4g}±{_fmt(e, '.2g')} ({n.get(d, 0)})"
                          for d, m, e in zip(r["d"], r["sim_mean"], r["sim_sem"]))
        rec = theory.get(a)
        flags = "; ".join(t for _, t in theory_flags(rec)) if rec else "?"
        fin = ((rec or {}).get("diagnostics") or {}).get("solver", {}).get("finetune", {})
        solver = (f"{fin.get('result')}, λ_AT = {fin.get('lambda_AT', float('nan')):.3f}, "
                  f"multi-min {fin.get('frac_multimin', float('nan')):.4g}"
                  + (", Stein hats" if fin.get("stein_hats") else "")) if fin else "?"
        print(f"| {a} | {r['metric']} | {r['theory']:.4g}±{_fmt(r['theory_err'], '.1g')} | {per_d} | "
              f"{_fmt(r['extrap_sqrt'])}±{_fmt(r['extrap_sqrt_err'], '.2g')} | "
              f"{_fmt(r['z_sqrt'], '+.2f')} | {_fmt(r['extrap_inv'])}±"
              f"{_fmt(r['extrap_inv_err'], '.2g')} | {_fmt(r['z_inv'], '+.2f')} | "
              f"{flags or '—'} | {solver} |")
    print()
    print("seconds per record (meta.seconds) by setting and d:")
    for (a, d), v in sorted(secs.items()):
        v = [x for x in v if x is not None]
        print(f"  {args.axis}={a} d={d}: n={len(v)} " + " ".join(f"{x:.0f}" for x in sorted(v)))


if __name__ == "__main__":
    main()
