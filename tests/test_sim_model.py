"""Scores, attention and losses of simulations/model.py (MODEL.md M2–M4, M11, M12; THEORY T1)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import simulations  # noqa: F401  (float64)
from simulations import data, model, train


def _sym(key, d, scale=1.0):
    g = jax.random.normal(key, (d, d))
    return scale * (g + g.T) / jnp.sqrt(2 * d)


def test_score_forms_agree():
    """Factor, rank-one and general-LoRA scores equal the dense (M2) formula."""
    d, T, P = 17, 3, 11
    k = jax.random.split(jax.random.PRNGKey(0), 5)
    X = data.sequences(k[0], 7, T, d)
    W = jax.random.normal(k[1], (d, P))
    w, u, v = (jax.random.normal(kk, (d,)) for kk in k[2:5])
    np.testing.assert_allclose(model.score_factor(X, W),
                               model.score_dense(X, W @ W.T / np.sqrt(P * d)), atol=1e-12)
    np.testing.assert_allclose(model.score_rank_one(X, w),
                               model.score_dense(X, jnp.outer(w, w) / np.sqrt(d)), atol=1e-12)
    np.testing.assert_allclose(model.score_general(X, u, v),
                               model.score_dense(X, jnp.outer(u, v) / np.sqrt(d)), atol=1e-12)


def test_score_adjoint():
    d, T = 9, 3
    k = jax.random.split(jax.random.PRNGKey(1), 3)
    X = data.sequences(k[0], 5, T, d)
    S = _sym(k[1], d)
    E = jax.random.normal(k[2], (5, T, T))
    lhs = jnp.sum(E * model.score_dense(X, S))
    rhs = jnp.sum(model.score_adjoint(X, E) * S)
    np.testing.assert_allclose(lhs, rhs, rtol=1e-12)


@pytest.mark.parametrize("form", ["dense", "factor", "rank_one"])
def test_centring(form):
    """E_X h(X;S) = 0 (M2): every entry of the sample mean within 5 standard errors, the s.e.
    from the exact variance (1 + δ_ab) Tr S²/d (THEORY T1) and the sample size."""
    d, T, n = 30, 3, 40000
    k = jax.random.split(jax.random.PRNGKey(2), 2)
    X = data.sequences(k[0], n, T, d)
    if form == "dense":
        S = _sym(k[1], d) + 0.7 * jnp.eye(d)           # mean eigenvalue 0.7: centring matters
        H = model.score_dense(X, S)
    elif form == "factor":
        W = jax.random.normal(k[1], (d, d))
        S = W @ W.T / d
        H = model.score_factor(X, W)
    else:
        w = jax.random.normal(k[1], (d,))
        S = jnp.outer(w, w) / np.sqrt(d)
        H = model.score_rank_one(X, w)
    mean = np.asarray(H.mean(axis=0))
    var = float(jnp.sum(S * S)) / d * (1 + np.eye(T))
    assert np.all(np.abs(mean) < 5 * np.sqrt(var / n)), mean


def test_score_statistics_d300():
    """At d = 300: off-diagonal variance Tr S²/d, diagonal 2 Tr S²/d, cross-covariance
    (1 + δ_ab) Tr SS'/d with a second matrix, and zero covariance between distinct entries
    (THEORY T1). Moments with tolerances from their own sample standard errors (5 s.e.)."""
    d, T, n = 300, 3, 6000
    k = jax.random.split(jax.random.PRNGKey(3), 4)
    X = data.sequences(k[0], n, T, d)
    W0 = data.teacher_factor(k[1], d, d)
    S = W0 @ W0.T / d                       # the teacher (M5): PSD, skewed entries
    S2 = _sym(k[2], d) + 0.3 * S            # correlated second matrix
    H, H2 = model.score_dense(X, S), model.score_dense(X, S2)
    tr_SS = float(jnp.sum(S * S)) / d
    tr_SS2 = float(jnp.sum(S * S2)) / d

    def check(samples, expected):
        samples = np.asarray(samples).ravel()
        sem = samples.std(ddof=1) / np.sqrt(samples.size)
        assert abs(samples.mean() - expected) < 5 * sem + 1e-12, (samples.mean(), expected, sem)

    iu = np.triu_indices(T, 1)
    check(H[:, iu[0], iu[1]] ** 2, tr_SS)
    check(jnp.diagonal(H, axis1=1, axis2=2) ** 2, 2 * tr_SS)
    check(H[:, iu[0], iu[1]] * H2[:, iu[0], iu[1]], tr_SS2)
    check(jnp.diagonal(H, axis1=1, axis2=2) * jnp.diagonal(H2, axis1=1, axis2=2), 2 * tr_SS2)
    check(H[:, 0, 0] * H[:, 1, 1], 0.0)
    check(H[:, 0, 1] * H[:, 0, 2], 0.0)


def test_values_loss_identity():
    """(M4) Tr[(A − A*) G (A − A*)ᵀ] = (1/d)‖AX − A*X‖²_F."""
    d, T = 23, 4
    k = jax.random.split(jax.random.PRNGKey(4), 3)
    X = data.sequences(k[0], 6, T, d)
    A = jax.random.normal(k[1], (6, T, T))
    At = jax.random.normal(k[2], (6, T, T))
    direct = jnp.sum((A @ X - data.values_labels(X, At)) ** 2, axis=(1, 2)) / d
    np.testing.assert_allclose(model.per_sample_loss(A, At, model.gram(X), "values"), direct,
                               rtol=1e-12)


def test_softmax_rows():
    H = jax.random.normal(jax.random.PRNGKey(5), (4, 3, 3))
    A = model.attention(H, "softmax", 2.0)
    np.testing.assert_allclose(A.sum(-1), 1.0, rtol=1e-14)
    np.testing.assert_allclose(A, jax.nn.softmax(2.0 * H, axis=-1))


_D, _T, _N = 12, 3, 10
_k = jax.random.split(jax.random.PRNGKey(6), 4)
_X = data.sequences(_k[0], _N, _T, _D)
_B = model.score_dense(_X, _sym(_k[1], _D))
_At = jax.nn.softmax(jax.random.normal(_k[2], (_N, _T, _T)), axis=-1)
_G = model.gram(_X)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**30), scale=st.floats(0.01, 3.0), c=st.floats(0.0, 2.0),
       attention=st.sampled_from(["softmax", "linear"]), output=st.sampled_from(["values", "attention"]))
def test_lora_sign_invariance(seed, scale, c, attention, output):
    """L'(w) = L'(−w) (M11) and L'(u, v) = L'(−u, −v) (M12)."""
    k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
    w = scale * jax.random.normal(k1, (_D,))
    v = scale * jax.random.normal(k2, (_D,))
    f = lambda p: train.finetune_objective(p, _X, _G, _B, _At, c, lam=0.05, attention=attention,  # noqa: E731
                                           beta=1.0, output=output)
    np.testing.assert_allclose(f({"w": w}), f({"w": -w}), rtol=1e-13)
    np.testing.assert_allclose(f({"u": w, "v": v}), f({"u": -w, "v": -v}), rtol=1e-13)
