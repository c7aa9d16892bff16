"""Applications built on :func:`theory.predict.predict` (issue 6): downstream-aware optimal
pre-training (:mod:`.optimal_pretraining`) and the error-vs-alignment mismatch map
(:mod:`.mismatch`)."""
