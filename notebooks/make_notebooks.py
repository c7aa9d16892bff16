"""Write the narrative notebooks from their cell sources (kept here so diffs stay readable).

    python notebooks/make_notebooks.py      # regenerates notebooks/*.ipynb (outputs empty)

Each notebook reads ``HDLORA_QUICK`` (default "1"): quick settings run top to bottom in about a
minute or two on 2 cores; set it to "0" for paper-size settings. No logic lives only here: every
cell calls the package.
"""

from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent

SETUP = """\
import os, json
QUICK = os.environ.get("HDLORA_QUICK", "1") == "1"
from theory.config import Config
from theory.predict import predict
"""

NOTEBOOKS = {
    "quickstart.ipynb": [
        ("md", "# hdlora quickstart\n\nOne config drives both halves: the asymptotic theory "
               "(`theory.predict.predict`) and the finite-d simulation "
               "(`simulations.experiment.simulate`). Metric names follow MODEL.md §4."),
        ("code", SETUP),
        ("code", "cfg = Config().with_overrides(['model.attention=linear', "
                 "'pretrain.estimator=direct'] + (['sim.d=40', 'sim.seeds=2', "
                 "'theory.mc_samples=1000', 'theory.mc_repeats=1'] if QUICK else ['sim.seeds=8']))\n"
                 "print(cfg)"),
        ("md", "## Theory\nEvery metric with its Monte-Carlo error; `solver` says whether each "
               "fixed point converged."),
        ("code", "th = predict(cfg)\n"
                 "for block in ('pretrain', 'finetune'):\n"
                 "    for k, e in th[block].items():\n"
                 "        err = '?' if e['mc_err'] is None else f\"{e['mc_err']:.1e}\"  # ?: unknown\n"
                 "        print(f'{block}.{k:18s} {e[\"value\"]:10.4f} ± {err}')\n"
                 "print('delta_eff', th['delta_eff'])\n"
                 "print(th['solver']['pretrain'].get('converged'), "
                 "th['solver']['finetune'].get('converged'))"),
        ("md", "## Simulation and comparison\n`compare_rows` puts theory next to the seed "
               "average; z = (theory − sim)/sem."),
        ("code", "from simulations.experiment import simulate\n"
                 "from simulations.cli import compare_rows\n"
                 "sim = simulate(cfg)\n"
                 "for r in compare_rows(th, sim):\n"
                 "    print(f\"{r['metric']:28s} theory {r['theory']:9.4f}  sim {r['sim_mean']:9.4f}"
                 " ± {r['sim_sem']:.3f}\")"),
    ],
    "mismatch_explorer.ipynb": [
        ("md", "# The mismatch regime\n\nFine-tuning on the *pre-training* sequences "
               "(`finetune.reuse = true`) trains the LoRA at the pre-training **training** "
               "residual Δ_eff,1 while it is tested at the **test** residual Δ_eff (THEORY.md §6). "
               "Test error and overlap can then move in opposite directions."),
        ("code", SETUP),
        ("code", "cfg = Config().with_overrides(['model.attention=linear', 'model.T=2', "
                 "'pretrain.estimator=direct', 'pretrain.kappa0=0.5', 'pretrain.alpha=0.2'] "
                 "+ (['theory.mc_samples=1000', 'theory.mc_repeats=1'] if QUICK else []))\n"
                 "for reuse in ('false', 'true'):\n"
                 "    r = predict(cfg.with_overrides([f'finetune.reuse={reuse}']), "
                 "bayes_bound=False)\n"
                 "    print('reuse', reuse, 'delta_eff', round(r['delta_eff']['value'], 4), "
                 "'delta_eff_train', round(r['delta_eff_train']['value'], 4), "
                 "'test', round(r['finetune']['test_error']['value'], 4), "
                 "'overlap', round(r['finetune']['overlap']['value'], 4))"),
        ("md", "## The map\nX marks where reuse improves one of (test error, overlap) and "
               "worsens the other."),
        ("code", "from theory.applications.mismatch import mismatch_map\n"
                 "xs = [3.0] if QUICK else [0.5, 1, 2, 3, 5]\n"
                 "ys = [0.01, 1.0] if QUICK else [0.01, 0.03, 0.1, 0.3, 1.0]\n"
                 "mm = mismatch_map(cfg, 'finetune.alpha', xs, 'finetune.lam', ys)\n"
                 "print(mm.reuse_disagrees.astype(int))\nprint(mm.best_y)"),
    ],
    "active_finetuning.ipynb": [
        ("md", "# Active fine-tuning\n\nFrom a pool of ᾱ′d unlabelled sequences keep the "
               "fraction ρ with the smallest frozen score ‖h(X;Ŝ)‖_F (M13). The rule changes "
               "only the law of the frozen score B (THEORY.md §7): as ρ → 0 the effective noise "
               "tends to the oracle-recalibrated Δ′/2 + Q0 − M²/Q for any c."),
        ("code", SETUP),
        ("code", "base = Config().with_overrides(['model.attention=linear', "
                 "'pretrain.estimator=direct', 'finetune.pool_alpha=100'] "
                 "+ (['theory.mc_samples=1000', 'theory.mc_repeats=1'] if QUICK else []))\n"
                 "for alpha in ([2.0] if QUICK else [1.5, 2.0, 4.0]):\n"
                 "    for rule in ('random', 'smallest_score'):\n"
                 "        r = predict(base.with_overrides([f'finetune.alpha={alpha}', "
                 "f'finetune.selection={rule}']), bayes_bound=False)\n"
                 "        print(f\"alpha'={alpha:4} rho={alpha/100:.3f} {rule:15s} "
                 "delta_eff_train={r['delta_eff_train']['value']:.4f} "
                 "test={r['finetune']['test_error']['value']:.4f} "
                 "overlap={r['finetune']['overlap']['value']:.4f}\")"),
    ],
}


def main() -> None:
    for name, cells in NOTEBOOKS.items():
        nb = nbformat.v4.new_notebook()
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                     "language": "python"}
        nb.cells = [nbformat.v4.new_markdown_cell(src) if kind == "md"
                    else nbformat.v4.new_code_cell(src) for kind, src in cells]
        nbformat.write(nb, HERE / name)


if __name__ == "__main__":
    main()
