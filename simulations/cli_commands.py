"""The commands of ``hdlora`` that are not one config's prediction: sweep, validate, figures,
optimize-pretraining and mismatch-map (simulations/cli.py parses the arguments, dispatches and
runs simulate | theory | compare). Each takes the parsed arguments (and the loaded config where it
needs one), prints its report and returns the exit status.
"""

from __future__ import annotations

import sys
from pathlib import Path

from simulations.cli_format import fmt as _fmt
from simulations.cli_io import check_output_dir, check_output_file, parse_numbers
from simulations.jsonio import dumps

__all__ = ["EXIT_CONFIG", "EXIT_NOT_CONVERGED", "sweep_command", "validate_command",
           "one_rsb_command",
           "figures_command", "optimize_command", "mismatch_command"]

EXIT_CONFIG = 2
EXIT_NOT_CONVERGED = 3


def _load_spec(path: str):
    """The sweep spec at ``path``, or None after printing the spec error."""
    from simulations.sweeps import SpecError, load_spec

    try:
        return load_spec(path)
    except SpecError as err:
        print(f"hdlora: sweep spec error: {err}", file=sys.stderr)
        return None


def sweep_command(args) -> int:
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


def figures_command(args) -> int:
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


def optimize_command(args, cfg) -> int:
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


def mismatch_command(args, cfg) -> int:
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


def one_rsb_command(args, cfg) -> int:
    """``hdlora one-rsb``: :func:`theory.finetuning.one_rsb_ground.predict_one_rsb`."""
    from theory.finetuning.one_rsb_ground import Settings, predict_one_rsb
    from theory.predict import predict_pretraining
    from theory.provenance import provenance

    check_output_file(args.out, "--out")
    mus = None if args.mus is None else tuple(parse_numbers(args.mus, "--mus"))
    if args.quick:
        settings = Settings(repeats=1, n_outer=200, n_gh=3, mus=mus or (   # a smoke run
            (0.1, 0.2) if cfg.model.attention == "linear" else (1.0, 3.0)))
    else:
        settings = Settings(repeats=args.repeats, n_outer=args.outer, n_gh=args.n_gh, mus=mus)
    log = None if args.json else (lambda text: print(text, file=sys.stderr, flush=True))
    pre = predict_pretraining(cfg)
    result = predict_one_rsb(cfg, pre, settings, log=log)
    result.update(config=cfg.to_dict(), meta={**provenance(), "config_digest": cfg.digest()})
    blob = dumps(result, indent=1)
    if args.out:
        from simulations.jsonio import write_atomic
        write_atomic(args.out, blob)
    if args.json:
        print(blob)
    else:
        diag = result["one_rsb"]
        print(f"{'finetune metric':22s} {'RS':>22s} {'1RSB (Σ = 0)':>22s}")
        for k in result["finetune_rs"]:
            cell = lambda e: ("n/a" if e["value"] is None else _fmt(e["value"])
                              + (f" ± {_fmt(e['mc_err'])}" if e["mc_err"] is not None
                                 else " ± n/a"))
            print(f"{k:22s} {cell(result['finetune_rs'][k]):>22s} "
                  f"{cell(result['finetune_1rsb'][k]):>22s}")
        print(f"1RSB ground state in {diag['repeats_with_ground_state']} of {diag['repeats']} "
              f"repeats; μ* = {_fmt(diag['mu_star']['value'])}, q0 = {_fmt(diag['q0']['value'])},"
              f" φ_1RSB − φ_RS = {_fmt(diag['phi_minus_rs']['value'])}")
        if diag["repeats_with_ground_state"] == 0:
            print("no zero of the complexity on the μ grid: the 1RSB solution is RS there, or the "
                  "grid is too short (--mus)")
    if not all(diag_ok for diag_ok in result["one_rsb"]["rs_converged"]):
        print("hdlora: the RS solve did not converge in every repeat (see --json)",
              file=sys.stderr)
        return EXIT_NOT_CONVERGED
    return 0


def validate_command(args) -> int:
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
