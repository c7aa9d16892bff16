"""Gaussian-equivalent backbone (issue 15 item 1) and one set of pre-training metrics per
backbone (issue 16 item 12)."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import simulations  # noqa: F401
from simulations import backbone as bbm
from simulations import data, model
from simulations.experiment import finetune_dataset, finetune_on, pretrain_backbone, simulate
from theory.config import Config, ConfigError
from theory.schema import FINETUNE_METRICS, PRETRAIN_METRICS

_EQ = Config().replace(sim={"d": 24, "seeds": 2, "restarts": 2, "backbone": "equivalent",
                            "backbone_Q": 1.2, "backbone_M": 0.9},
                       pretrain={"alpha": 0.2}, model={"attention": "linear"})


@pytest.mark.parametrize("d", [40, 400])
def test_equivalent_matrix_exact_overlaps(d):
    """Q = Tr Ŝ²/d and M = Tr ŜS0*/d hold exactly; the projection of the raw GOE draw on S0* is
    O(1/d) and its rescaling 1 + O(1/√d): the drawn R is the Gaussian one to leading order."""
    k1, k2 = jax.random.split(jax.random.PRNGKey(d))
    W0 = data.teacher_factor(k1, d, d)
    S0 = W0 @ W0.T / jnp.sqrt(d * d)
    Q0 = float(jnp.sum(S0 * S0) / d)
    S, info = bbm.equivalent_matrix(k2, S0, 0.8 / Q0, 1.3 - 0.64 / Q0)
    assert float(jnp.sum(S * S) / d) == pytest.approx(1.3, rel=1e-12)
    assert float(jnp.sum(S * S0) / d) == pytest.approx(0.8, rel=1e-12)
    assert np.allclose(S, S.T)
    # sd of Tr(Z S0*)/Tr(S0*²) is sqrt(2/(Q0 d²)) ≈ 1/d; of Tr Z²/d − 1 is 2/d (measured ≤ 3 sd)
    assert abs(float(info["projection"])) < 4.0 / d
    assert abs(float(info["rescale"]) - 1) < 6.0 / d


def test_equivalent_score_law():
    """h(X; Ŝ) of the equivalent backbone has the GOE_T(Q) second moments (T1) on fresh X."""
    d, n, T = 60, 20000, 3
    k = jax.random.split(jax.random.PRNGKey(1), 3)
    W0 = data.teacher_factor(k[0], d, d)
    S0 = W0 @ W0.T / jnp.sqrt(d * d)
    Q0 = float(jnp.sum(S0 * S0) / d)
    S, _ = bbm.equivalent_matrix(k[1], S0, 0.8 / Q0, 1.3 - 0.64 / Q0)
    B = model.score_dense(data.sequences(k[2], n, T, d), S)
    off = np.asarray(B[:, 0, 1])
    diag = np.asarray(B[:, 0, 0])
    # sem of a variance estimate from n draws: var·sqrt(2/n) ≈ 1% of it; 5 sem
    assert np.var(off) == pytest.approx(1.3, rel=0.05)
    assert np.var(diag) == pytest.approx(2 * 1.3, rel=0.05)


def test_equivalent_pipeline_schema_and_pairing():
    res = simulate(_EQ)
    json.dumps(res, allow_nan=False)                  # unmeasured metrics are null, not NaN
    assert tuple(res["pretrain"]) == PRETRAIN_METRICS and tuple(res["finetune"]) == FINETUNE_METRICS
    assert res["pretrain"]["Q"]["values"] == pytest.approx([1.2, 1.2], rel=1e-12)
    assert res["pretrain"]["M"]["values"] == pytest.approx([0.9, 0.9], rel=1e-12)
    for k in ("test_error", "test_error_clean", "train_error", "objective"):
        assert res["pretrain"][k] == {"mean": None, "sem": None, "values": [None, None]}
    for k in FINETUNE_METRICS:
        assert all(np.isfinite(res["finetune"][k]["values"]))
    diag = res["diagnostics"]["per_seed"][0]["pretrain"]
    assert diag["backbone"] == "equivalent" and diag["source"] == "config" and not diag["measured"]
    assert res["diagnostics"]["all_converged"]
    # paired by seed: same teacher, spike and fine-tuning sequences as the trained backbone
    trained_cfg = _EQ.replace(sim={"backbone": "trained", "backbone_Q": None, "backbone_M": None})
    eq_bb, tr_bb = pretrain_backbone(_EQ, 0), pretrain_backbone(trained_cfg, 0)
    np.testing.assert_array_equal(eq_bb["arrays"]["W0"], tr_bb["arrays"]["W0"])
    eq_d, tr_d = finetune_dataset(_EQ, eq_bb), finetune_dataset(trained_cfg, tr_bb)
    np.testing.assert_array_equal(eq_d.X, tr_d.X)
    np.testing.assert_array_equal(eq_d.A_target, tr_d.A_target)
    with pytest.raises(ValueError, match="differ from the backbone"):
        finetune_on(trained_cfg, eq_bb)


def test_equivalent_refusals():
    with pytest.raises(ConfigError, match="reuse"):
        _EQ.replace(finetune={"reuse": True})
    with pytest.raises(ValueError, match="M\\^2 <= Q Q0"):
        pretrain_backbone(_EQ.replace(sim={"backbone_Q": 0.1, "backbone_M": 0.9}), 0)


def test_equivalent_from_theory_targets():
    """Without sim.backbone_Q/M, a = M/Q0 and σ² = Q − M²/Q0 are the pre-training theory's: the
    drawn Ŝ has M = a Q0 and Q = a²Q0 + σ² with the realised Q0 of the seed."""
    from theory.predict import predict_pretraining

    cfg = _EQ.replace(sim={"backbone_Q": None, "backbone_M": None})
    pre = predict_pretraining(cfg)
    bb = pretrain_backbone(cfg, 3)
    got, diag = bb["pretrain"]["metrics"], bb["pretrain"]["diagnostics"]
    a, s2 = pre.M / pre.Q0, pre.Q - pre.M**2 / pre.Q0
    assert diag["source"] == "theory" and diag["a"] == pytest.approx(a, rel=1e-12)
    assert got["M"] == pytest.approx(a * got["Q0"], rel=1e-10)
    assert got["Q"] == pytest.approx(a * a * got["Q0"] + s2, rel=1e-10)
    state = bbm.theory_pretrain_state(_EQ)                # what `compare` feeds the theory
    assert (state.Q, state.M) == (1.2, 0.9)
    assert bbm.theory_pretrain_state(cfg) is None


def test_pretrain_metrics_once_per_backbone():
    """Issue 16 item 12: one backbone and seed → the same pre-training metrics (test errors
    included) at every fine-tuning point, and equal to simulate()'s."""
    cfg = Config().replace(sim={"d": 20, "restarts": 2, "seeds": 1, "seed": 4},
                           pretrain={"alpha": 0.2}, model={"attention": "linear"})
    bb = pretrain_backbone(cfg, 4)
    recs = [finetune_on(cfg.replace(finetune={"lam": lam, "alpha": a}), bb)
            for lam, a in ((0.05, 3.0), (1.0, 3.0), (0.05, 1.0))]
    for k in PRETRAIN_METRICS:
        assert recs[0][f"pretrain.{k}"] == recs[1][f"pretrain.{k}"] == recs[2][f"pretrain.{k}"]
    assert recs[0]["finetune.q"] != recs[1]["finetune.q"]
    full = simulate(cfg)
    for k in PRETRAIN_METRICS:
        assert full["pretrain"][k]["values"] == [recs[0][f"pretrain.{k}"]]
