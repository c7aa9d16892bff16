"""Finite-size extrapolation used by ``hdlora validate`` (simulations/validate.py)."""

import numpy as np
import pytest

from simulations.validate import extrapolate


@pytest.mark.parametrize("power", [0.5, 1.0])
def test_extrapolation_recovers_intercept(power):
    ds = np.array([50.0, 100.0, 200.0, 400.0])
    truth = 2.0 + 3.0 * ds ** (-power)
    fit = extrapolate(ds, truth, np.full(4, 1e-3), power)
    assert abs(fit["a"] - 2.0) < 1e-9 and abs(fit["b"] - 3.0) < 1e-8
    assert fit["a_err"] > 0 and fit["chi2_dof"] < 1e-10


def test_extrapolation_error_matches_scatter():
    """With noisy means the intercept's error bar covers the truth at the stated rate:
    over 400 synthetic experiments ~95% of |a - truth| < 1.96 a_err (binomial sd ~1.1%)."""
    rng = np.random.default_rng(0)
    ds = np.array([50.0, 100.0, 200.0])
    sems = np.array([0.02, 0.015, 0.01])
    hits = 0
    for _ in range(400):
        means = 1.0 + 0.5 / np.sqrt(ds) + rng.normal(0, sems)
        fit = extrapolate(ds, means, sems, 0.5)
        hits += abs(fit["a"] - 1.0) < 1.96 * fit["a_err"]
    assert 0.90 < hits / 400 < 0.99


def test_single_dimension_is_not_extrapolated():
    fit = extrapolate([100.0, 100.0], [1.0, 1.1], [0.1, 0.1], 0.5)
    assert np.isnan(fit["a"])
