"""The argument parser of ``hdlora``: every subcommand, its flags and its ``--help`` text.

:func:`build_parser` only builds the parser (simulations/cli.py parses and dispatches; the
commands themselves are in simulations/cli.py and simulations/cli_commands.py);
:data:`QUICK_OVERRIDES` is the small embedded default that ``--quick`` applies before ``--set``.
"""

from __future__ import annotations

import argparse

from simulations.cli_io import config_fields_epilog, nonnegative_int

__all__ = ["build_parser", "QUICK_OVERRIDES"]

#: the small embedded default of ``--quick`` (a smoke run of the whole pipeline in about a minute)
QUICK_OVERRIDES = (
    "sim.d=40", "sim.seeds=2", "sim.restarts=4",
    "theory.mc_samples=4000", "theory.mc_repeats=2",
)


def build_parser() -> argparse.ArgumentParser:
    """The ``hdlora`` argument parser: every subcommand, its flags and its ``--help`` text."""
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
    rsb = sub.add_parser("one-rsb", epilog=epilog,
                         formatter_class=argparse.RawDescriptionHelpFormatter,
                         help="1RSB ground state of the LoRA fine-tuning next to RS (theory; "
                              "where RS is doubtful)",
                         description="Zero-temperature one-step RSB of the symmetric LoRA ERM "
                         "(THEORY.md T33b; linear and softmax attention): per MC repeat the RS "
                         "fixed point, the 1RSB saddle along a Parisi-μ grid and the ground "
                         "state at zero complexity; RS and 1RSB metrics with MC errors over the "
                         "repeats. Minutes per repeat (softmax).")
    rsb.add_argument("config", nargs="?", help="TOML config")
    rsb.add_argument("--set", dest="overrides", action="append", default=[],
                     metavar="SECTION.FIELD=VALUE")
    rsb.add_argument("--json", action="store_true")
    rsb.add_argument("--quick", action="store_true",
                     help="1 repeat, 200 outer samples, n_gh = 3, two μ (a smoke run; "
                          "the numbers are not converged)")
    rsb.add_argument("--out", help="also write the JSON object to this file")
    rsb.add_argument("--repeats", type=nonnegative_int, default=3, help="MC repeats (keys)")
    rsb.add_argument("--outer", type=nonnegative_int, default=600,
                     help="outer MC samples per repeat")
    rsb.add_argument("--n-gh", type=nonnegative_int, default=5,
                     help="Gauss-Hermite nodes per axis of the inner rule")
    rsb.add_argument("--mus", help="comma-separated increasing Parisi μ grid (default: the "
                                   "attention's, linear 0.03..0.45, softmax 1..8)")
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
