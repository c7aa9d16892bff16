"""``hdlora``: the command line (simulate | theory | compare).

    hdlora simulate [CFG.toml] [--set section.field=value ...] [--seeds N] [--json] [--quick]
    hdlora theory   [CFG.toml] [--set ...] [--json] [--quick] [--bayes] [--stage S]
    hdlora compare  [CFG.toml] [--set ...] [--seeds N] [--json] [--quick] [--measured]
    hdlora optimize-pretraining [CFG.toml] [--set ...] [--over FIELD ...] [--recalibrate]
    hdlora mismatch-map [CFG.toml] [--set ...] [--x FIELD --x-values a,b] [--y FIELD --y-values ..]
    hdlora one-rsb  [CFG.toml] [--set ...] [--repeats N] [--outer N] [--mus a,b,..] [--json]
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

This module parses the arguments, dispatches and runs simulate | theory | compare; the parser is
built in simulations/cli_parser.py and the other commands live in simulations/cli_commands.py.
"""

from __future__ import annotations

import sys

from simulations.cli_commands import EXIT_CONFIG, EXIT_NOT_CONVERGED, \
    figures_command as _figures, mismatch_command as _mismatch, one_rsb_command as _one_rsb, \
    optimize_command as _optimize, sweep_command as _sweep, validate_command as _validate
from simulations.cli_format import compare_rows, table_compare as _table_compare, \
    table_simulation as _table_simulation, table_theory as _table_theory
from simulations.cli_io import OutputPathError, check_output_file, load_cli_config, \
    plain_warnings
from simulations.cli_parser import QUICK_OVERRIDES, build_parser as _parser
from simulations.jsonio import dumps, write_atomic
from theory.compile_cache import enable_compilation_cache
from theory.config import ConfigError

__all__ = ["main", "QUICK_OVERRIDES", "compare_rows"]


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
    if args.command in ("optimize-pretraining", "mismatch-map", "one-rsb"):
        try:
            cfg = _load(args)
        except ConfigError as err:
            print(f"hdlora: config error: {err}", file=sys.stderr)
            return EXIT_CONFIG
        try:
            return {"optimize-pretraining": _optimize, "mismatch-map": _mismatch,
                    "one-rsb": _one_rsb}[args.command](args, cfg)
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
