"""Issue 6 applications on small, cheap cases (linear attention, closed-form pre-training):
downstream-aware optimal pre-training (THEORY.md §4) and the mismatch map (§6)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from theory.applications import optimal_pretraining as opt
from theory.applications.mismatch import Z_SIGNIFICANT, mismatch_map
from theory.config import load_config

LINEAR = ["model.attention=linear", "model.T=2", "pretrain.estimator=direct",
          "pretrain.alpha=0.2", "finetune.alpha=2.0", "theory.mc_samples=400",
          "theory.mc_repeats=2"]


def test_optimal_pretraining_linear_c1_optima_coincide():
    """Linear σ, c = 1: Δ_eff = Δ′/2 + mse and the pre-training test error is T(T+1)(mse + Δ/2)
    (T11, T25), and the fine-tuning error increases with Δ_eff, so the λ minimising the
    pre-training test error, the mse and the fine-tuning test error are the same point (up to
    the golden-section resolution of the search: 8 steps on a bracket of two grid cells)."""
    cfg = load_config(None, LINEAR)
    result = opt.optimize_pretraining(cfg, over=["pretrain.lam"], grid_points=7, refine_steps=8)
    lam = {c: result.best[c]["choice"]["pretrain.lam"] for c in opt.CRITERIA}
    assert set(result.best) == set(opt.CRITERIA)
    assert math.isclose(lam["pretrain.test_error"], lam["pretrain.mse"], rel_tol=1e-9)
    bracket = (opt.CONTINUOUS["pretrain.lam"][1] / opt.CONTINUOUS["pretrain.lam"][0]) ** (2 / 6)
    resolution = bracket ** (0.618 ** 8)       # golden section shrinks the bracket by 0.618/step
    assert abs(math.log(lam["finetune.test_error"] / lam["pretrain.test_error"])) \
        <= math.log(resolution) + 1e-9
    # every evaluated choice is in the scan, with Δ_eff = Δ′/2 + mse (T25, c = 1)
    for point in result.scan:
        m = point["metrics"]
        assert m["converged"]
        assert math.isclose(m["delta_eff"], cfg.delta_prime / 2 + m["pretrain.mse"], rel_tol=1e-6)


def test_optimal_pretraining_excludes_failed_points(monkeypatch):
    """A choice where the theory raises is reported in the scan and never selected."""
    cfg = load_config(None, LINEAR)
    real = opt.predict

    def flaky(point, **kw):
        if point.pretrain.lam > 1.0:
            raise ValueError("outside the solver's domain (test)")
        return real(point, **kw)

    monkeypatch.setattr(opt, "predict", flaky)
    result = opt.optimize_pretraining(cfg, over=["pretrain.lam"], grid_points=5, refine_steps=2)
    failed = [p for p in result.scan if p["metrics"].get("failed")]
    assert failed and all(p["choice"]["pretrain.lam"] > 1.0 for p in failed)
    assert all(e["choice"]["pretrain.lam"] <= 1.0 for e in result.best.values())


def test_mismatch_map_marks_disagreement_consistently():
    """The map solves fresh and reused at every grid point; a point is marked exactly when reuse
    moves test error and overlap the same way (one better, one worse); the per-x best λ′ are
    argmin test error / argmax overlap of the rows."""
    cfg = load_config(None, LINEAR)
    lams = [0.01, 0.1, 1.0]
    mm = mismatch_map(cfg, "finetune.alpha", [1.0, 3.0], "finetune.lam", lams)
    for mode in ("fresh", "reused"):
        assert mm.test_error[mode].shape == (2, 3) and np.all(np.isfinite(mm.test_error[mode]))
        assert np.all((mm.overlap[mode] >= 0) & (mm.overlap[mode] <= 1))
        for i in range(2):
            assert mm.best_y[mode]["test_error"][i] == lams[int(np.argmin(mm.test_error[mode][i]))]
            assert mm.best_y[mode]["overlap"][i] == lams[int(np.argmax(mm.overlap[mode][i]))]
    d_test = mm.test_error["reused"] - mm.test_error["fresh"]
    d_overlap = mm.overlap["reused"] - mm.overlap["fresh"]
    z = lambda d, err: np.abs(d) / np.maximum(np.hypot(err["reused"], err["fresh"]), 1e-300)
    significant = (z(d_test, mm.test_error_err) > Z_SIGNIFICANT) & \
        (z(d_overlap, mm.overlap_err) > Z_SIGNIFICANT)
    np.testing.assert_array_equal(mm.reuse_disagrees,
                                  (np.sign(d_test) == np.sign(d_overlap)) & significant)
    assert mm.trusted.shape == (2, 3)
    for mode in ("fresh", "reused"):   # a significant argmin/argmax disagreement needs distinct y
        for i, flag in enumerate(mm.best_y[mode]["disagree"]):
            assert not flag or mm.best_y[mode]["test_error"][i] != mm.best_y[mode]["overlap"][i]
    assert mm.to_dict()["x_field"] == "finetune.alpha"


def test_optimal_pretraining_reports_an_unconverged_point_that_beats_the_optimum(monkeypatch):
    """Not-converged choices are never selected, but one whose value beats the reported optimum
    is named (the optimum would otherwise sit silently at the edge of the converged region)."""
    cfg = load_config(None, LINEAR)
    real = opt.converged
    monkeypatch.setattr(opt, "converged",
                        lambda result: real(result) and result["config"]["pretrain"]["lam"] > 1.0)
    result = opt.optimize_pretraining(cfg, over=["pretrain.lam"], grid_points=5, refine_steps=2)
    entry = result.best["finetune.test_error"]
    assert entry["choice"]["pretrain.lam"] > 1.0
    rival = entry["beaten_by_unconverged"]
    assert rival is not None and rival["choice"]["pretrain.lam"] <= 1.0
    assert rival["value"] < entry["metrics"]["finetune.test_error"]
