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
    the resolution of the refinement: that of 8 golden-section steps on a bracket of two grid
    cells, which the Brent refinement reaches or beats)."""
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
    real = opt.predict_states

    def flaky(point, **kw):
        if point.pretrain.lam > 1.0:
            raise ValueError("outside the solver's domain (test)")
        return real(point, **kw)

    monkeypatch.setattr(opt, "predict_states", flaky)
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


def test_mismatch_strength_measures_the_gap_between_the_optima():
    """strength(): y_te = argmin test, y_ov = argmax overlap, gain/cost as differences at those
    two points with their errors in quadrature, significance against Z_SIGNIFICANT."""
    from theory.applications.mismatch import strength

    ys = (0.001, 0.01, 0.1)
    s = strength(ys, [0.30, 0.20, 0.25], [0.01, 0.01, 0.01], [0.99, 0.97, 0.90],
                 [0.001, 0.001, 0.001])
    assert (s["y_test"], s["y_overlap"]) == (0.01, 0.001)
    assert s["overlap_gain"] == pytest.approx(0.02) and s["test_cost"] == pytest.approx(0.10)
    assert s["test_cost_rel"] == pytest.approx(0.5)
    assert s["test_cost_err"] == pytest.approx(math.hypot(0.01, 0.01))
    assert s["test_cost_rel_err"] == pytest.approx(1.5 * math.hypot(0.01 / 0.3, 0.01 / 0.2))
    assert s["disagree"]
    # the same optima within noise: no disagreement, zero gain and cost
    same = strength(ys, [0.30, 0.20, 0.25], [0.01] * 3, [0.90, 0.97, 0.80], [0.001] * 3)
    assert same["y_test"] == same["y_overlap"] == 0.01 and not same["disagree"]
    assert same["overlap_gain"] == same["test_cost"] == 0.0
    noisy = strength(ys, [0.30, 0.20, 0.25], [0.2] * 3, [0.99, 0.97, 0.90], [0.001] * 3)
    assert noisy["y_test"] != noisy["y_overlap"] and not noisy["disagree"]


MISMATCH_LINEAR = ["model.attention=linear", "model.T=2", "pretrain.kappa0=0.5",
                   "pretrain.alpha=0.2", "pretrain.delta=0.5", "finetune.lam=0.05",
                   "theory.mc_samples=400", "theory.mc_repeats=2"]


def test_mismatch_map_along_pretraining_lambda(monkeypatch):
    """Pre-training axes (issue 14): y = pretrain.lam is solved once per λ and shared by every
    fine-tuning value and both modes; on reused sequences the LoRA is trained at the pre-training
    *training* residual (Δ_eff,train < Δ_eff, strongly at small λ: THEORY.md T35) and tested at
    Δ_eff, so the overlap-optimal λ (small, over-fitting backbone) is not the test-optimal one
    (larger λ): the small-λ backbone costs test error. Fresh sequences: Δ_eff,train = Δ_eff and
    one λ is optimal for both (linear attention, THEORY.md §6)."""
    import theory.applications.mismatch as mm_mod

    calls = []
    real = mm_mod.predict_pretraining
    monkeypatch.setattr(mm_mod, "predict_pretraining", lambda cfg: calls.append(cfg) or real(cfg))
    cfg = load_config(None, MISMATCH_LINEAR)
    lams = [0.001, 0.3]
    mm = mismatch_map(cfg, "finetune.alpha", [2.0, 3.0], "pretrain.lam", lams)
    assert len(calls) == mm.pretrain_solves == len(lams)      # not per (α′, mode)
    assert sorted(c.pretrain.lam for c in calls) == lams
    de, det = mm.extra["delta_eff"], mm.extra["delta_eff_train"]
    np.testing.assert_allclose(de["fresh"], de["reused"], rtol=1e-6)   # the same backbones
    np.testing.assert_allclose(det["fresh"], de["fresh"], rtol=1e-6)
    assert np.all(det["reused"] < de["reused"])
    assert det["reused"][0, 0] / de["reused"][0, 0] < det["reused"][0, 1] / de["reused"][0, 1]
    for i in range(2):
        fresh, reused = (mm.best_y[m] for m in ("fresh", "reused"))
        assert fresh["y_test"][i] == fresh["y_overlap"][i] == 0.3
        assert fresh["test_cost"][i] == fresh["overlap_gain"][i] == 0.0
        assert (reused["y_test"][i], reused["y_overlap"][i]) == (0.3, 0.001)
        cost = mm.test_error["reused"][i, 0] - mm.test_error["reused"][i, 1]
        assert reused["test_cost"][i] == pytest.approx(cost)
        assert cost > 10 * reused["test_cost_err"][i] > 0            # a significant price
        assert reused["test_cost_rel"][i] == pytest.approx(cost / mm.test_error["reused"][i, 1])
    assert mm.to_dict()["y_field"] == "pretrain.lam"


def test_fraction_modes_are_partial_reuse_configs():
    """e = 0 is fresh sequences (reuse = false), e > 0 reused with reuse_fraction = e."""
    from theory.applications.mismatch import fraction_modes

    modes = fraction_modes([0, 0.5, 1.0])
    assert list(modes) == ["e=0", "e=0.5", "e=1"]
    cfgs = {k: load_config(None, list(v)) for k, v in modes.items()}
    assert not cfgs["e=0"].finetune.reuse
    assert cfgs["e=0.5"].finetune.reuse and cfgs["e=0.5"].finetune.reuse_fraction == 0.5
    assert cfgs["e=1"].finetune.reuse and cfgs["e=1"].finetune.reuse_fraction == 1.0


def test_mismatch_map_survives_a_failed_pretraining(monkeypatch):
    """A pre-training solve that leaves its domain (softmax at λ = 0.001 did, with a small MC
    size) leaves its cells NaN and untrusted with a note; it is tried once, the rest is solved."""
    import theory.applications.mismatch as mm_mod
    from theory.pretraining.priors import HatDomainError

    calls = []
    real = mm_mod.predict_pretraining

    def flaky(cfg):
        calls.append(cfg.pretrain.lam)
        if cfg.pretrain.lam == 0.001:
            raise HatDomainError("nuclear_prior: Vhat = -1 must be > 0")
        return real(cfg)

    monkeypatch.setattr(mm_mod, "predict_pretraining", flaky)
    cfg = load_config(None, MISMATCH_LINEAR + ["finetune.alpha=3"])
    mm = mismatch_map(cfg, None, [], "pretrain.lam", [0.001, 0.3])
    assert sorted(calls) == [0.001, 0.3]
    for mode in ("fresh", "reused"):
        assert np.isnan(mm.test_error[mode][0, 0]) and np.isfinite(mm.test_error[mode][0, 1])
        assert mm.best_y[mode]["y_test"] == [0.3]
    assert not mm.trusted[0, 0]
    assert sum("failed: HatDomainError" in n for n in mm.notes) == 2


def test_mismatch_map_help_names_the_pretraining_axes(capsys):
    from simulations.cli import main

    with pytest.raises(SystemExit):
        main(["mismatch-map", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for field in ("pretrain.lam", "pretrain.alpha", "pretrain.kappa", "finetune.recalibrate"):
        assert field in text
    assert "overlap gained" in text and "test error it costs" in text
