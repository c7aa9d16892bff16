"""Teachers, noise, reuse and selection of simulations/data.py (MODEL.md M5, M6, M9, M10, M13)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import simulations  # noqa: F401
from simulations import data, model
from simulations.experiment import finetune_dataset, pretrain_backbone
from theory.config import SELECTION_RULES, Config
from theory.finetuning import selection


def test_every_config_rule_is_implemented():
    assert set(SELECTION_RULES) == set(selection.RULES)


def test_spike_norm_exact_and_noise_variance():
    w = data.spike(jax.random.PRNGKey(0), 50, 1.7)
    np.testing.assert_allclose(w @ w / 50, 1.7, rtol=1e-13)
    n, T, delta = 40000, 3, 0.6
    xi = np.asarray(data.score_noise(jax.random.PRNGKey(1), n, T, delta))
    np.testing.assert_allclose(xi, np.swapaxes(xi, 1, 2))
    var = xi.var(axis=0)
    expected = delta / (2 - np.eye(T))               # (M6) Δ/(2 − δ_ab)
    assert np.all(np.abs(var / expected - 1) < 5 * np.sqrt(2 / n))


def test_teacher_Q0():
    """(M5) Tr S0*/d → √κ0 and Q0 = Tr S0*²/d → 1 + κ0 (E Q0 = 1 + κ0 + 1/d exactly; one draw
    fluctuates by O(d^{-1/2}), THEORY §2, hence the 3% tolerance at d = 200)."""
    d = 200
    for kappa0 in (0.5, 1.0):
        P0 = int(kappa0 * d)
        W0 = data.teacher_factor(jax.random.PRNGKey(2), d, P0)
        S0 = W0 @ W0.T / np.sqrt(P0 * d)
        assert float(jnp.trace(S0)) / d == pytest.approx(np.sqrt(kappa0), rel=0.02)
        assert float(jnp.sum(S0 * S0)) / d == pytest.approx(1 + kappa0, rel=0.03)


@pytest.mark.parametrize("rule", ["random", "smallest_score", "largest_score"])
def test_select_keeps_rule_fraction(rule):
    d, T, n_pool, n_keep = 20, 3, 300, 60
    X = data.sequences(jax.random.PRNGKey(3), n_pool, T, d)
    S = jnp.eye(d) + 0.1
    B = model.score_dense(X, S)
    idx = np.asarray(data.select(rule, X, S, B, n_keep))
    assert len(set(idx.tolist())) == n_keep
    norms = np.sqrt(np.sum(np.asarray(B) ** 2, axis=(1, 2)))
    dropped = np.setdiff1d(np.arange(n_pool), idx)
    if rule == "random":
        np.testing.assert_array_equal(np.sort(idx), np.arange(n_keep))   # i.i.d. pool: first n'
    elif rule == "smallest_score":
        assert norms[idx].max() <= norms[dropped].min()
    else:
        assert norms[idx].min() >= norms[dropped].max()


_BASE = Config().replace(sim={"d": 20, "restarts": 2}, pretrain={"alpha": 0.3},
                         finetune={"alpha": 2.0})


@pytest.mark.parametrize("reuse_noise", ["same", "fresh"])
def test_reuse_relabels_first_sequences(reuse_noise):
    """(M10) reuse: the fine-tuning set is exactly the first n' pre-training sequences, relabelled
    by S1* (with the same or fresh score noise)."""
    cfg = _BASE.replace(finetune={"reuse": True, "reuse_noise": reuse_noise})
    backbone = pretrain_backbone(cfg, 0)
    pre = backbone["arrays"]["data"]
    fd = finetune_dataset(cfg, backbone)
    n1 = cfg.n_finetune
    np.testing.assert_array_equal(fd.X, pre["X"][:n1])
    np.testing.assert_array_equal(fd.h_base, pre["h_teacher"][:n1])
    if reuse_noise == "same":
        np.testing.assert_array_equal(fd.noise, pre["noise"][:n1])
    else:
        assert not np.allclose(fd.noise, pre["noise"][:n1])
    w_star = data.spike(data.purpose_key(jax.random.PRNGKey(0), "spike"), 20, 1.0)
    expected = jax.nn.softmax(pre["h_teacher"][:n1] + model.score_rank_one(fd.X, w_star) + fd.noise,
                              axis=-1)
    np.testing.assert_allclose(fd.A_target, expected, atol=1e-13)
    np.testing.assert_allclose(fd.B, model.score_dense(fd.X, backbone["arrays"]["S_hat"]), atol=1e-12)


def test_selection_dataset_keeps_smallest_frozen_scores():
    cfg = _BASE.replace(finetune={"selection": "smallest_score", "pool_alpha": 8.0})
    backbone = pretrain_backbone(cfg, 1)
    fd = finetune_dataset(cfg, backbone)
    assert fd.X.shape[0] == cfg.n_finetune
    kept = np.sqrt(np.sum(np.asarray(fd.B) ** 2, axis=(1, 2)))
    key = data.purpose_key(jax.random.PRNGKey(1), "pool_X")
    X_pool = data.sequences(key, cfg.n_pool, 3, 20)
    pool = np.sqrt(np.sum(np.asarray(model.score_dense(X_pool, backbone["arrays"]["S_hat"])) ** 2,
                          axis=(1, 2)))
    np.testing.assert_allclose(np.sort(kept), np.sort(pool)[:cfg.n_finetune], rtol=1e-12)
