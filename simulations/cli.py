"""``hdlora``: the command line (simulate | theory | compare).

    hdlora simulate [CFG.toml] [--set section.field=value ...] [--seeds N] [--json] [--quick]
    hdlora theory   [CFG.toml] [--set ...] [--json] [--quick] [--bayes] [--stage S]
    hdlora compare  [CFG.toml] [--set ...] [--seeds N] [--json] [--quick] [--measured]
    hdlora optimize-pretraining [CFG.toml] [--set ...] [--over FIELD ...] [--recalibrate]
    hdlora mismatch-map [CFG.toml] [--set ...] [--x FIELD --x-values a,b] [--y FIELD --y-values ..]
    hdlora figures  [NAME ...] [--quick]
    hdlora sweep    SPEC.toml [--workers N | --scheduler tcp://host:8786] [--store DIR]

``--quick`` applies the small embedded default (:data:`QUICK_OVERRIDES`) before ``--set``.
``--json`` prints one JSON object in the shared schema (theory/schema.py); otherwise a table.
JSON is strict (NaN is written null; simulations/jsonio.py) and carries ``meta.config_digest``,
the digest sweep records use. ``--out FILE`` also writes the JSON there (atomically). Output
paths (``--out``, ``--figure``, ``--store``, ``--results``) and the config are checked before
anything is computed (simulations/cli_io.py). Exit status: 0 on success, 2 on bad input (config,
spec, flag, path: the message names it), 3 when a solver or optimiser did not reach its
tolerance (the output says which).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from simulations.cli_format import compare_rows, fmt as _fmt, table_compare as _table_compare, \
    table_simulation as _table_simulation, table_theory as _table_theory
from simulations.cli_io import OutputPathError, check_output_dir, check_output_file, \
    config_fields_epilog, load_cli_config, nonnegative_int, parse_numbers, plain_warnings
from simulations.jsonio import dumps, write_atomic
from theory.compile_cache import enable_compilation_cache
from theory.config import ConfigError

__all__ = ["main", "QUICK_OVERRIDES", "compare_rows"]

#: the small embedded default of ``--quick`` (a smoke run of the whole pipeline in about a minute)
QUICK_OVERRIDES = (
    "sim.d=40", "sim.seeds=2", "sim.restarts=4",
    "theory.mc_samples=4000", "theory.mc_repeats=2",
)

EXIT_CONFIG = 2
EXIT_NOT_CONVERGED = 3


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hdlora", description="High-dimensional theory and simulation of rank-one LoRA "
                                   "fine-tuning of a single attention head.")
    sub = parser.add_subparsers(dest="command", required=True)
    helps = {
        "simulate": "finite-d simulation over seeds (mean, sem, per-seed values)",
        "theory": "asymptotic prediction of every metric",
        "compare": "theory next to simulation, z = (theory - sim)/sqrt(sem^2 + mc_err^2) per "
                   "metric (n/a where an error is unknown)",
    }
    epilog = config_fields_epilog()
    for name, text in helps.items():
        p = sub.add_parser(name, help=text, description=text, epilog=epilog,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        p.add_argument("config", nargs="?", help="TOML config (MODEL.md §5 sections)")
        p.add_argument("--set", dest="overrides", action="append", default=[],
                       metavar="SECTION.FIELD=VALUE", help="override one config field")
        p.add_argument("--json", action="store_true", help="print one JSON object")
        p.add_argument("--quick", action="store_true",
                       help="small embedded default: " + " ".join(QUICK_OVERRIDES))
        p.add_argument("--out", help="also write the JSON object to this file")
        if name in ("simulate", "compare"):
            p.add_argument("--seeds", type=int, help="number of seeds (sim.seeds)")
        if name == "theory":
            p.add_argument("--stage", choices=("pretrain", "finetune", "all"), default="all",
                           help="pretrain: solve and report the pre-training only; finetune: "
                                "the exit status follows the fine-tuning solve only; all "
                                "(default): both")
        if name in ("theory", "compare"):
            p.add_argument("--bayes", action="store_true",
                           help="also solve the Bayes-optimal fine-tuning bound (T38-T40; "
                                "tens of seconds)")
        if name == "compare":
            p.add_argument("--measured", action="store_true",
                           help="feed the fine-tuning theory with the (Q, M, Q0) measured in "
                                "the simulation instead of the pre-training theory's")
    sweep = sub.add_parser("sweep", help="run or resume a sweep spec on Dask",
                           description="Run (or resume) a sweep: every finished task is stored "
                                       "atomically and skipped on a rerun.")
    sweep.add_argument("spec", help="sweep spec (TOML, see simulations/sweeps/spec.py)")
    sweep.add_argument("--workers", type=nonnegative_int, default=2,
                       help="LocalCluster worker processes (0: run in this process)")
    sweep.add_argument("--scheduler", help="address of an existing Dask scheduler")
    sweep.add_argument("--store", help="results directory (default results/<sweep name>)")
    sweep.add_argument("--json", action="store_true", help="print the report as JSON, no bar")
    opt = sub.add_parser("optimize-pretraining", epilog=epilog,
                         formatter_class=argparse.RawDescriptionHelpFormatter,
                         help="pre-training choices that are optimal downstream (theory)")
    mm = sub.add_parser("mismatch-map", epilog=epilog,
                        formatter_class=argparse.RawDescriptionHelpFormatter,
                        help="where test error and overlap disagree, fresh vs reused (theory)",
                        description="Theory map over two config fields, fine-tuning "
                        "(finetune.alpha, finetune.lam, finetune.recalibrate, "
                        "finetune.reuse_fraction) or pre-training (pretrain.lam, pretrain.alpha, "
                        "pretrain.kappa; solved once per pre-training value). Per x: the "
                        "test-optimal and overlap-optimal y, the overlap gained by the latter and "
                        "the test error it costs (absolute, relative), with MC errors.")
    for p in (opt, mm):
        p.add_argument("config", nargs="?", help="TOML config")
        p.add_argument("--set", dest="overrides", action="append", default=[],
                       metavar="SECTION.FIELD=VALUE")
        p.add_argument("--json", action="store_true")
        p.add_argument("--quick", action="store_true")
    opt.add_argument("--over", action="append", default=[],
                     help="pre-training field to optimise (pretrain.lam, pretrain.kappa, "
                          "pretrain.estimator); repeatable; default pretrain.lam")
    opt.add_argument("--recalibrate", action="store_true",
                     help="use the oracle recalibration c = M/Q downstream")
    mm.add_argument("--x", default="finetune.alpha",
                    help="x field (fine-tuning or pre-training, e.g. pretrain.alpha)")
    mm.add_argument("--x-values", default="0.5,1,2,3,5")
    mm.add_argument("--y", default="finetune.lam",
                    help="the field optimised per x (e.g. pretrain.lam, finetune.recalibrate)")
    mm.add_argument("--y-values", default="0.01,0.03,0.1,0.3,1")
    mm.add_argument("--figure", help="write the map as an image (png/pdf)")
    val = sub.add_parser("validate", help="theory vs simulation over sim.d with a finite-size "
                                          "extrapolation (runs the sweep, resumable)")
    val.add_argument("spec", help="sweep spec whose grid contains sim.d")
    val.add_argument("--metrics", default="pretrain.test_error,pretrain.mse,pretrain.Q,pretrain.M,"
                     "finetune.test_error,finetune.overlap,finetune.q,finetune.m",
                     help="comma-separated metric names")
    val.add_argument("--workers", type=nonnegative_int, default=2)
    val.add_argument("--scheduler")
    val.add_argument("--store", help="results directory (default results/<sweep name>)")
    val.add_argument("--json", action="store_true")
    figs = sub.add_parser("figures", help="run the figure sweeps (cached) and draw them")
    figs.add_argument("names", nargs="*", help="figures to build (default: all)")
    figs.add_argument("--quick", action="store_true",
                      help="small d, few seeds and points (minutes on 2 cores)")
    figs.add_argument("--workers", type=nonnegative_int, default=2)
    figs.add_argument("--scheduler", help="address of an existing Dask scheduler")
    figs.add_argument("--results", default="results/figures", help="results root")
    figs.add_argument("--json", action="store_true", help="print the report as JSON, no bar")
    return parser


def _load(args):
    overrides = list(QUICK_OVERRIDES) if args.quick else []
    overrides += args.overrides
    if getattr(args, "seeds", None) is not None:
        overrides.append(f"sim.seeds={args.seeds}")
    return load_cli_config(args.config, overrides)


def _stamp(result: dict, cfg) -> dict:
    """Add the config digest (the ``config_digest`` of sweep records) to ``result["meta"]``."""
    result.setdefault("meta", {})["config_digest"] = cfg.digest()
    return result


def _sim_converged(result: dict) -> bool:
    return bool(result.get("diagnostics", {}).get("all_converged", True))


def _load_spec(path: str):
    """The sweep spec at ``path``, or None after printing the spec error."""
    from simulations.sweeps import SpecError, load_spec

    try:
        return load_spec(path)
    except SpecError as err:
        print(f"hdlora: sweep spec error: {err}", file=sys.stderr)
        return None


def _sweep(args) -> int:
    from simulations.sweeps import run_sweep

    spec = _load_spec(args.spec)
    if spec is None:
        return EXIT_CONFIG
    store = args.store or str(Path("results") / spec.name)
    check_output_dir(store, "--store")
    report = run_sweep(spec, store, workers=args.workers, scheduler=args.scheduler,
                       progress=not args.json)
    info = {"store": report.store, "submitted": report.submitted, "skipped": report.skipped,
            "by_others": report.by_others, "unavailable": report.unavailable,
            "backbones": report.backbones, "seconds": report.seconds}
    others = f", {report.by_others} done by another run" if report.by_others else ""
    theory_only = (f", {report.unavailable} (point, seed) simulations not available "
                   "(pretrain.estimator = bayes is theory-only)" if report.unavailable else "")
    print(dumps(info) if args.json else
          f"sweep {spec.name}: {report.submitted} tasks run, {report.skipped} already done"
          f"{others}{theory_only}, {report.backbones} backbones, {report.seconds:.1f} s -> "
          f"{report.store}")
    return 0


def _figures(args) -> int:
    from figures.build import build_figures

    check_output_dir(args.results, "--results")
    try:
        report = build_figures(args.names, quick=args.quick, workers=args.workers,
                               scheduler=args.scheduler, results_root=args.results,
                               progress=not args.json)
    except ValueError as err:
        print(f"hdlora: {err}", file=sys.stderr)
        return EXIT_CONFIG
    if args.json:
        print(dumps(report))
    else:
        for name, info in report.items():
            print(f"{name}: {info['seconds']:.1f} s -> {', '.join(info['paths'])}")
    return 0


def _optimize(args, cfg) -> int:
    from theory.applications.optimal_pretraining import optimize_pretraining

    result = optimize_pretraining(cfg, over=args.over or ["pretrain.lam"],
                                  recalibrate=args.recalibrate,
                                  progress=lambda text: print(text, file=sys.stderr, flush=True))
    if args.json:
        print(dumps({"fields": result.fields, "best": result.best, "scan": result.scan}))
        return 0
    shown = ["finetune.test_error", "finetune.overlap", "pretrain.test_error", "pretrain.mse",
             "delta_eff"]
    print(f"{'optimal for':22s} {'choice':34s} " + " ".join(f"{m:>20s}" for m in shown))
    for criterion, entry in result.best.items():
        choice = ", ".join(f"{k.split('.')[-1]}={_fmt(v) if not isinstance(v, str) else v}"
                           for k, v in entry["choice"].items()) or "(config)"
        print(f"{criterion:22s} {choice:34s} "
              + " ".join(f"{_fmt(entry['metrics'].get(m)):>20s}" for m in shown))
    failed = [p for p in result.scan if p["metrics"].get("failed")]
    unconverged = [p for p in result.scan
                   if not p["metrics"].get("failed") and not p["metrics"].get("converged", True)]
    print(f"{len(result.scan)} choices evaluated; excluded: {len(failed)} where the theory failed, "
          f"{len(unconverged)} not converged (see --json)")
    for p in failed:
        print(f"  failed at {p['choice']}: {p['metrics']['failed']}")
    for criterion, entry in result.best.items():
        rival = entry.get("beaten_by_unconverged")
        if rival:
            print(f"  warning: {criterion} = {_fmt(rival['value'])} at the not-converged choice "
                  f"{rival['choice']} beats the reported optimum: the optimum may lie where the "
                  "theory is not converged (raise theory.mc_samples, or read the flags there)")
    return 0


def _mismatch(args, cfg) -> int:
    from theory.applications.mismatch import Z_SIGNIFICANT, mismatch_map

    xs = parse_numbers(args.x_values, "--x-values")
    ys = parse_numbers(args.y_values, "--y-values")
    if args.figure:
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        check_output_file(args.figure, "--figure",
                          suffixes=tuple(FigureCanvasAgg.get_supported_filetypes()))
    result = mismatch_map(cfg, args.x, xs, args.y, ys, progress=lambda done, total, where: print(
        f"[{done}/{total}] {where}", file=sys.stderr, flush=True))
    if args.figure:
        from figures.mismatch_maps import save_map

        save_map(result, args.figure)
    if args.json:
        print(dumps(result.to_dict()))
        return 0
    print(f"mismatch map: rows {args.y}, columns {args.x}; X = reuse improves one of "
          f"(test error, overlap) and worsens the other, beyond {Z_SIGNIFICANT:g} MC errors; "
          f"lower case = the theory flags that cell (RS doubtful / not converged)")
    print(f"{'':>10s} " + " ".join(f"{x:>7g}" for x in xs))
    for j, y in enumerate(ys):
        cells = []
        for i in range(len(xs)):
            mark = "X" if result.reuse_disagrees[i, j] else "."
            cells.append(f"{mark if result.trusted[i, j] else mark.lower() + '?':>7s}")
        print(f"{y:>10g} " + " ".join(cells))
    for mode, best in result.best_y.items():
        print(f"{mode}: argmin test error over {args.y}: {best['test_error']}; "
              f"argmax overlap: {best['overlap']}; significant disagreement: {best['disagree']}")
        for i, x in enumerate(xs):
            print(f"  {args.x}={x:g}: overlap gain {best['overlap_gain'][i]:+.4g} ± "
                  f"{best['overlap_gain_err'][i]:.1g}, test cost {best['test_cost'][i]:+.4g} ± "
                  f"{best['test_cost_err'][i]:.1g} ({100 * best['test_cost_rel'][i]:+.1f} ± "
                  f"{100 * best['test_cost_rel_err'][i]:.1f} %)")
    for note in result.notes:
        print(f"! {note}")
    return 0


def _validate(args) -> int:
    from simulations.sweeps import load_table, run_sweep
    from simulations.validate import format_rows, validation_rows

    spec = _load_spec(args.spec)
    if spec is None:
        return EXIT_CONFIG
    if "sim.d" not in spec.axes:
        print("hdlora: validate needs sim.d among the sweep axes", file=sys.stderr)
        return EXIT_CONFIG
    store = args.store or str(Path("results") / spec.name)
    check_output_dir(store, "--store")
    run_sweep(spec, store, workers=args.workers, scheduler=args.scheduler, progress=not args.json)
    rows = validation_rows(load_table(store), args.metrics.split(","), list(spec.axes))
    print(dumps(rows) if args.json else format_rows(rows, list(spec.axes)))
    return 0


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    plain_warnings()
    try:
        return _run(args)
    except OutputPathError as err:   # checked before anything is computed
        print(f"hdlora: {err}", file=sys.stderr)
        return EXIT_CONFIG


def _run(args) -> int:
    enable_compilation_cache()
    if args.command == "sweep":
        return _sweep(args)
    if args.command == "validate":
        return _validate(args)
    if args.command == "figures":
        return _figures(args)
    if args.command in ("optimize-pretraining", "mismatch-map"):
        try:
            cfg = _load(args)
        except ConfigError as err:
            print(f"hdlora: config error: {err}", file=sys.stderr)
            return EXIT_CONFIG
        try:
            return (_optimize if args.command == "optimize-pretraining" else _mismatch)(args, cfg)
        except (ValueError, NotImplementedError) as err:
            print(f"hdlora: {err}", file=sys.stderr)
            return EXIT_CONFIG
    try:
        cfg = _load(args)
    except ConfigError as err:
        print(f"hdlora: config error: {err}", file=sys.stderr)
        return EXIT_CONFIG
    check_output_file(args.out, "--out")

    from theory.predict import converged, predict, pretrain_state_from_measured, \
        predict_pretraining

    from simulations.experiment import SimulationNotImplemented

    ok = True
    if args.command == "simulate":
        from simulations.experiment import simulate

        try:
            result = simulate(cfg, progress=not args.json)
        except SimulationNotImplemented as err:
            print(f"hdlora: not available in simulation: {err}", file=sys.stderr)
            return EXIT_CONFIG
        ok = _sim_converged(result)
        text = _table_simulation(result)
    elif args.command == "theory":
        try:
            stages = ("pretrain",) if args.stage == "pretrain" else ("pretrain", "finetune")
            result = predict(cfg, bayes_bound=args.bayes and args.stage != "pretrain",
                             stages=stages)
        except NotImplementedError as err:
            print(f"hdlora: not available: {err}", file=sys.stderr)
            return EXIT_CONFIG
        ok = converged(result, blocks=None if args.stage == "all" else
                       (("pretrain",) if args.stage == "pretrain"
                        else ("finetune", "bayes_finetune")))
        text = _table_theory(result)
    else:  # compare
        from simulations.experiment import simulate

        try:
            sim_result = simulate(cfg, progress=not args.json)
        except SimulationNotImplemented as err:
            print(f"hdlora: not available in simulation: {err}", file=sys.stderr)
            return EXIT_CONFIG
        pre = None
        if args.measured:
            pre = pretrain_state_from_measured(
                predict_pretraining(cfg), Q=sim_result["pretrain"]["Q"]["mean"],
                M=sim_result["pretrain"]["M"]["mean"], Q0=sim_result["pretrain"]["Q0"]["mean"])
        else:  # an equivalent backbone with given sim.backbone_Q/M: the theory gets the same
            from simulations.backbone import theory_pretrain_state
            pre = theory_pretrain_state(cfg)
        try:
            theory_result = predict(cfg, pre=pre, bayes_bound=args.bayes)
        except NotImplementedError as err:
            print(f"hdlora: not available: {err}", file=sys.stderr)
            return EXIT_CONFIG
        rows = compare_rows(theory_result, sim_result)
        ok = converged(theory_result) and _sim_converged(sim_result)
        result = {"config": cfg.to_dict(), "rows": rows, "theory": _stamp(theory_result, cfg),
                  "simulation": _stamp(sim_result, cfg)}
        text = _table_compare(rows, theory_result.get("flags", []))

    blob = dumps(_stamp(result, cfg), indent=1)
    if args.out:
        write_atomic(args.out, blob)
    print(blob if args.json else text)
    if not ok:
        print("hdlora: a solver or optimiser did not reach its tolerance (see the output)",
              file=sys.stderr)
        return EXIT_NOT_CONVERGED
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
