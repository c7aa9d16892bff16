"""Continuation benchmarks (issue 13): two checkouts side by side, one fresh process each.

* ``curve``: a 30-point softmax α′ sweep (MODEL.md §6 default otherwise, ``sweep.continuation =
  "finetune.alpha"``, theory only, in process) — solved cold by a checkout whose runner only
  groups the points, continued by one that starts each point from its neighbour;
* ``mismatch``: ``mismatch_map`` on 6 × 6 cells (x = finetune.alpha, y = finetune.lam, modes fresh
  and reused);
* ``optimize``: ``optimize_pretraining`` at the default config (over pretrain.lam).

Each run is a subprocess with ``PYTHONPATH`` = the checkout and a private persistent compilation
cache per checkout (``--warm`` fills it first with one cheap point); old and new run back to back
and the table prints the wall times, their ratio and, per point, the values of both with their
MC errors and z = (new − old)/√(err_old² + err_new²).

Usage: python benchmarks/continuation.py curve|mismatch|optimize --old /tmp/old_speed --new .
       [--points 30] [--cells 6] [--cheap] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time

WORKER = r"""
import json, math, os, sys, tempfile, time
t0 = time.perf_counter()
from theory.compile_cache import enable_compilation_cache
enable_compilation_cache(os.environ["CMP_CACHE"])
from theory.config import Config
task, args = os.environ["CMP_TASK"], json.loads(os.environ["CMP_ARGS"])
base = args.get("base", {})      # section -> {field: value} on top of the default config
BASE = Config().replace(**base)
out = {}
if task == "curve":
    from simulations.sweeps import load_spec, run_sweep
    from simulations.sweeps.store import ResultStore
    tmp = tempfile.mkdtemp()
    alphas = ", ".join(repr(a) for a in args["alphas"])
    with open(os.path.join(tmp, "s.toml"), "w") as fh:
        fh.write(f'[sweep]\nname = "bench"\nrun = ["theory"]\ncontinuation = "finetune.alpha"\n'
                 f'[sweep.grid]\n"finetune.alpha" = [{alphas}]\n')
        for section, fields in base.items():
            fh.write(f"[base.{section}]\n" + "".join(f"{k} = {json.dumps(v)}\n"
                                                      for k, v in fields.items()))
    spec = load_spec(os.path.join(tmp, "s.toml"))
    run_sweep(spec, os.path.join(tmp, "store"), workers=0, progress=False)
    rows = {}
    for rec in ResultStore(os.path.join(tmp, "store")).records("theory"):
        a = rec["point"]["finetune.alpha"]
        fin = rec["diagnostics"].get("solver", {}).get("finetune", {})
        rows[repr(a)] = {"test_error": [rec["metrics"].get("finetune.test_error"),
                                        rec["errors"].get("finetune.test_error")],
                         "overlap": [rec["metrics"].get("finetune.overlap"),
                                     rec["errors"].get("finetune.overlap")],
                         "seconds": rec["meta"]["seconds"], "converged": fin.get("converged"),
                         "n_branches": fin.get("n_branches"),
                         "continued": "continued_from" in rec["diagnostics"].get("solver", {})}
    out["rows"] = rows
elif task == "mismatch":
    from theory.applications.mismatch import mismatch_map
    m = mismatch_map(BASE, "finetune.alpha", args["xs"], "finetune.lam", args["ys"],
                     progress=lambda d, t, w: print(f"[{d}/{t}] {w}", file=sys.stderr, flush=True))
    out["rows"] = {f"{mode} x={x:g} y={y:g}": {
        "test_error": [m.test_error[mode][i, j], m.test_error_err[mode][i, j]],
        "overlap": [m.overlap[mode][i, j], m.overlap_err[mode][i, j]]}
        for mode in m.test_error for i, x in enumerate(m.x_values) for j, y in enumerate(m.y_values)}
elif task == "optimize":
    from theory.applications.optimal_pretraining import optimize_pretraining
    r = optimize_pretraining(BASE)
    out["rows"] = {c: {"choice": b["choice"], "finetune.test_error": b["metrics"].get("finetune.test_error"),
                       "finetune.overlap": b["metrics"].get("finetune.overlap"),
                       "pretrain.test_error": b["metrics"].get("pretrain.test_error")}
                   for c, b in r.best.items()}
    out["evaluated"] = len(r.scan)
    out["pretrain_only"] = sum(p["metrics"].get("stage") == "pretrain" for p in r.scan)
elif task == "warm":
    from theory.predict import predict
    predict(Config().replace(theory={"mc_samples": 200, "mc_repeats": 1, "max_iter": 5}))
out["wall"] = time.perf_counter() - t0
print("CMPJSON" + json.dumps(out, default=float))
"""


def run(checkout: str, task: str, args: dict, cache: str) -> dict:
    env = dict(os.environ, PYTHONPATH=os.path.abspath(checkout), CMP_TASK=task,
               CMP_ARGS=json.dumps(args), CMP_CACHE=cache)
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", WORKER], env=env, stdout=subprocess.PIPE,
                       stderr=None, text=True, cwd=os.path.abspath(checkout))
    line = [x for x in p.stdout.splitlines() if x.startswith("CMPJSON")]
    if not line:
        raise RuntimeError(f"{checkout}: {task} failed (exit {p.returncode})")
    res = json.loads(line[0][7:])
    res["process"] = time.perf_counter() - t0
    return res


def _z(o, n):
    (vo, eo), (vn, en) = o, n
    if vo is None or vn is None:
        return "n/a"
    se = math.hypot(eo or 0.0, en or 0.0)
    return f"{(vn - vo) / se:+.2f}" if se > 0 else ("0" if vn == vo else "inf")


def _pm(entry):
    v, e = entry
    return "None" if v is None else f"{v:.5g} ± {'?' if e is None else f'{e:.2g}'}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("task", choices=("curve", "mismatch", "optimize"))
    ap.add_argument("--old", default="/tmp/old_speed")
    ap.add_argument("--new", default=".")
    ap.add_argument("--points", type=int, default=30)
    ap.add_argument("--take", type=int, default=0,
                    help="solve only the first TAKE points of the curve (same spacing)")
    ap.add_argument("--cells", type=int, default=6)
    ap.add_argument("--no-warm", action="store_true")
    ap.add_argument("--cheap", action="store_true",
                    help="linear attention, direct pre-training, N = 400 x 2 repeats (the "
                         "algorithm's cost in solves, cheaply; not the issue's targets)")
    ap.add_argument("--json")
    args = ap.parse_args()
    import numpy as np

    if args.task == "curve":
        alphas = np.linspace(1.0, 5.0, args.points)[:args.take or args.points]
        targs = {"alphas": [round(float(a), 4) for a in alphas]}
    elif args.task == "mismatch":
        targs = {"xs": [round(float(a), 4) for a in np.linspace(1.0, 5.0, args.cells)],
                 "ys": [round(float(v), 6) for v in np.geomspace(0.01, 1.0, args.cells)]}
    else:
        targs = {}
    if args.cheap:
        targs["base"] = {"model": {"attention": "linear", "T": 2},
                         "pretrain": {"estimator": "direct", "alpha": 0.2},
                         "theory": {"mc_samples": 400, "mc_repeats": 2}}
    dirs = {"old": args.old, "new": args.new}
    caches = {w: f"/tmp/hdlora_cont_cache_{w}" for w in dirs}
    if not args.no_warm:
        for w in dirs:
            run(dirs[w], "warm", {}, caches[w])
    res = {}
    for w in ("old", "new"):
        load = os.getloadavg()[0]
        res[w] = run(dirs[w], args.task, targs, caches[w])
        res[w]["load_before"] = load
        print(f"{w}: {res[w]['process']:.1f} s (load {load:.1f} -> {os.getloadavg()[0]:.1f})",
              file=sys.stderr, flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(res, fh, indent=1, default=float)
    o, n = res["old"], res["new"]
    print(f"## {args.task}: old {o['process']:.1f} s, new {n['process']:.1f} s, "
          f"ratio new/old {n['process'] / o['process']:.2f} (load {o['load_before']:.1f} / "
          f"{n['load_before']:.1f})")
    if args.task == "optimize":
        print(f"choices evaluated: old {o.get('evaluated')}, new {n.get('evaluated')} (of which "
              f"pre-training only: new {n.get('pretrain_only')})")
        for c in o["rows"]:
            print(f"| {c} | old {o['rows'][c]} | new {n['rows'].get(c)} |")
    else:
        print("| point | old test ± err | new test ± err | z | old overlap | new overlap | z |"
              + (" s old | s new | continued |" if args.task == "curve" else ""))
        zs = []
        for k in o["rows"]:
            a, b = o["rows"][k], n["rows"].get(k)
            if b is None:
                continue
            zt, zo = _z(a["test_error"], b["test_error"]), _z(a["overlap"], b["overlap"])
            zs += [z for z in (zt, zo) if z not in ("n/a", "inf", "0")]
            extra = (f" {a['seconds']:.1f} | {b['seconds']:.1f} | {b['continued']} |"
                     if args.task == "curve" else "")
            print(f"| {k} | {_pm(a['test_error'])} | {_pm(b['test_error'])} | {zt} | "
                  f"{_pm(a['overlap'])} | {_pm(b['overlap'])} | {zo} |{extra}")
        if zs:
            print(f"max |z| = {max(abs(float(z)) for z in zs):.2f} over {len(zs)} comparisons")


if __name__ == "__main__":
    main()
