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

MISMATCH_FINDINGS = """\
## What was found (issue 14; numbers in docs/validation/figures.md, `mismatch_pretraining`)
Softmax, T = 2, Δ = 0.5, κ0 = 0.5, α = 0.2, α′ = 3, λ′ = 0.1 (`hdlora figures mismatch_pretraining`):

* **reused sequences**: the test error is lowest at λ = 0.03 (theory 0.181, simulation 0.181 at
  d = 100, 150, 200 and 300), the overlap highest at λ = 0.001 (theory 0.9943; simulation
  0.9933–0.9950). Seed-paired simulation, λ = 0.001 minus λ = 0.03 (8 seeds): overlap
  +0.0077 ± 0.0016 / +0.0095 ± 0.0007 / +0.0079 ± 0.0003 and test error +0.089 / +0.087 / +0.084
  (+49 / +48 / +47 %) at d = 100 / 200 / 300 — the overlap-optimal backbone costs half the test
  error again. Theory: +0.0099 ± 0.0004 overlap for +0.081 ± 0.010 (+45 ± 6 %) test error.
* **fresh sequences**: one λ (0.03) is optimal for both; the small-λ backbone is worse in both.
* The pre-training theory at λ ≤ 0.003 (below interpolation, V ∝ 1/λ) used to lose its fixed point
  (+86 % cost, Δ_eff 1.32 against 1.10–1.13 measured); since the fix
  (docs/validation/pretrain_small_lambda.md) theory = simulation at every λ (|z| ≤ 2.9, d = 150).
* Linear attention: the same split (λ_te = 0.3, λ_ov = 0.001, +23 % test error at α′ = 3) but
  the overlap gain is tiny (≤ 0.003) because the overlap saturates.
* Partial reuse (theory, λ = 0.001 vs 0.03): the overlap advantage of the small-λ backbone grows
  with the reused fraction e (−0.198, −0.142, −0.064, −0.028, +0.009 at e = 0, ¼, ½, ¾, 1) and
  turns positive only near e ≈ 0.95: the split needs (nearly) full reuse.
* Recalibration on reused sequences (theory, λ = 0.03): test error lowest at c = 1 (0.181), overlap
  highest at c = 1.2 (0.9868 vs 0.9844), the difference within 2σ of the MC error.
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
        ("md", "# The mismatch regime: test error vs alignment along pre-training\n\n"
               "Fine-tuning on the *pre-training* sequences (`finetune.reuse = true`, e = 1) "
               "trains the LoRA at the backbone's **training** residual Δ_eff,train while it is "
               "tested on fresh sequences at the **test** residual Δ_eff (THEORY.md §6, T34–T35). "
               "An over-fitting backbone (small pre-training λ) makes the reused sequences look "
               "clean and aligns the LoRA best; a regularised one gives the lowest test error. "
               "So the two optima of the *pre-training* λ split. Along fine-tuning axes (λ′, α′) "
               "they do not (issue 6), and with fresh sequences one λ is optimal for both."),
        ("code", SETUP),
        ("md", "## The mechanism\nThe same backbone, fresh vs reused sequences: Δ_eff is the "
               "same, Δ_eff,train is much smaller on reused sequences at small λ."),
        ("code", "base = ['model.T=2', 'pretrain.kappa0=0.5', 'pretrain.alpha=0.2', "
                 "'pretrain.delta=0.5', 'finetune.alpha=3', 'finetune.lam=0.1']\n"
                 "# quick: linear attention (cheap); full: softmax, the paper-style setting\n"
                 "cfg = Config().with_overrides(base + (['model.attention=linear', "
                 "'theory.mc_samples=400', 'theory.mc_repeats=2'] if QUICK else []))\n"
                 "for reuse in ('false', 'true'):\n"
                 "    r = predict(cfg.with_overrides(['pretrain.lam=0.001', "
                 "f'finetune.reuse={reuse}']), bayes_bound=False)\n"
                 "    print('reuse', reuse, 'delta_eff', round(r['delta_eff']['value'], 4), "
                 "'delta_eff_train', round(r['delta_eff_train']['value'], 4), "
                 "'test', round(r['finetune']['test_error']['value'], 4), "
                 "'overlap', round(r['finetune']['overlap']['value'], 4))"),
        ("md", "## The two optima along pre-training λ\n`mismatch_map` with `x_field = None` "
               "scans one axis; the pre-training is solved once per λ and shared by both modes. "
               "Per mode: the test-optimal λ, the overlap-optimal λ, the overlap the latter "
               "gains and the test error it costs (± MC error)."),
        ("code", "from theory.applications.mismatch import mismatch_map\n"
                 "lams = [0.001, 0.3] if QUICK else [0.001, 0.003, 0.01, 0.03, 0.1, 0.3]\n"
                 "mm = mismatch_map(cfg, None, [], 'pretrain.lam', lams)\n"
                 "print('pre-training solves:', mm.pretrain_solves)\n"
                 "for mode, b in mm.best_y.items():\n"
                 "    print(f\"{mode:7s} lambda_test={b['y_test'][0]:g} "
                 "lambda_overlap={b['y_overlap'][0]:g} "
                 "overlap gain={b['overlap_gain'][0]:+.4f} ± {b['overlap_gain_err'][0]:.1g} "
                 "test cost={b['test_cost'][0]:+.4f} ± {b['test_cost_err'][0]:.1g} "
                 "({100 * b['test_cost_rel'][0]:+.1f} %)\")"),
        ("md", MISMATCH_FINDINGS),
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
