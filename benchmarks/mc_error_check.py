"""Is the theory's MC error honest at a point? Solve the fine-tuning RS on K independent draws
(one MC repeat each, theory.seed = seed0 … seed0 + K − 1, the pre-training solved once) and
compare, per metric, the per-draw sd with the linear-response error each draw reports
(theory/engine/linear_response.py, THEORY.md §9 "MC errors"). Also prints the mean over the
draws ± its standard error: the RS value with an error from K draws instead of three repeats.

    python benchmarks/mc_error_check.py --draws 20 --set finetune.lam=0.5 --set finetune.alpha=0.75

Numbers of docs/validation/scarce_data.md §3.18 (one core, 1–2 s per softmax draw at N = 4000).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time

import numpy as np

METRICS = ("q", "m", "overlap", "test_error", "train_error", "objective")


def run(overrides, draws: int, seed0: int) -> dict:
    from theory.compile_cache import enable_compilation_cache
    from theory.config import load_config
    from theory.predict import predict_finetuning, predict_pretraining

    enable_compilation_cache()
    cfg = load_config(None, list(overrides) + ["theory.mc_repeats=1"])
    pre = predict_pretraining(cfg)
    vals, lrs = [], []
    t0 = time.perf_counter()
    for s in range(draws):
        fin = predict_finetuning(cfg.replace(theory={"seed": seed0 + s}), pre)
        lr = fin.solver["mc_err_linear_response"]
        vals.append([fin.metrics[k] for k in METRICS])
        lrs.append([math.nan if lr[k] is None else lr[k] for k in METRICS])
    vals, lrs = np.array(vals), np.array(lrs)
    out = {"overrides": list(overrides), "draws": draws, "seed0": seed0,
           "seconds": time.perf_counter() - t0, "metrics": {}}
    for i, k in enumerate(METRICS):
        sd = float(vals[:, i].std(ddof=1)) if draws > 1 else math.nan
        have = lrs[~np.isnan(lrs[:, i]), i]
        out["metrics"][k] = dict(
            mean=float(vals[:, i].mean()), se=sd / math.sqrt(draws), sd=sd,
            sd_err=sd / math.sqrt(2 * (draws - 1)) if draws > 1 else math.nan,
            lr_rms=float(np.sqrt(np.mean(have ** 2))) if have.size else None,
            lr_min=float(have.min()) if have.size else None,
            lr_max=float(have.max()) if have.size else None, lr_draws=int(have.size))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE")
    ap.add_argument("--draws", type=int, default=20)
    ap.add_argument("--seed0", type=int, default=300)
    ap.add_argument("--json", help="also write the result here")
    args = ap.parse_args(argv)
    if args.draws < 2:
        print("mc_error_check: --draws must be ≥ 2", file=sys.stderr)
        return 2
    res = run(args.set, args.draws, args.seed0)
    print(f"{' '.join(args.set) or 'defaults'}: {args.draws} draws, {res['seconds']:.0f} s")
    print("| metric | mean over draws ± s.e. | per-draw sd | rms linear response (range; draws) |")
    print("|---|---|---|---|")
    f = lambda x: "—" if x is None else f"{x:.4g}"
    for k, r in res["metrics"].items():
        print(f"| {k} | {r['mean']:.5g} ± {r['se']:.2g} | {r['sd']:.4g} ± {r['sd_err']:.2g} | "
              f"{f(r['lr_rms'])} ({f(r['lr_min'])}–{f(r['lr_max'])}; {r['lr_draws']}) |")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(res, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
