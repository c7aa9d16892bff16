"""Downstream-optimal vs pre-training-optimal pre-training λ with oracle recalibration (issue 6):
the same panels as :mod:`figures.optimal_pretraining`."""

from .optimal_pretraining import plot

__all__ = ["plot"]
