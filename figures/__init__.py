"""Figures: one sweep spec (``figures/specs/<name>.toml``) and one thin plotting module
(``figures/<name>.py`` with ``plot(table, figure_spec) -> matplotlib.figure.Figure``) per figure.

``hdlora figures [NAME ...] [--quick]`` runs each figure's sweep (resumable; results cached under
``results/figures/<name>[-quick]``), plots from the stored table and writes PNG, PDF and a caption
(``.txt``). Full-quality images go to ``figures/<name>.{png,pdf}``; quick ones next to their results.
"""

FIGURES = ("finetune_vs_alpha", "pretraining", "pretrain_effect", "active", "mismatch",
           "optimal_pretraining", "mismatch_pretraining")
#: built by name only (not by ``hdlora figures`` without names, nor in CI's quick run)
EXTRA_FIGURES = ("optimal_pretraining_recalibrated",)
