"""Optimisers of simulations/train.py (MODEL.md M7, M11, M12)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import simulations  # noqa: F401
from simulations import data, model, train


def _pretrain_problem(d, n, attention, seed=0, delta=0.5, P0=None):
    k = jax.random.split(jax.random.PRNGKey(seed), 3)
    W0 = data.teacher_factor(k[0], d, P0 or d)
    pd = data.pretrain_data(k[1], k[2], W0, n=n, T=3, delta=delta, attention=attention, beta=1.0)
    return pd, model.gram(pd.X)


def test_lbfgs_rosenbrock_stationarity():
    f = lambda x: jnp.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)  # noqa: E731
    x, rep = jax.jit(lambda x0: train.lbfgs(f, x0, gtol=1e-9, max_steps=2000))(jnp.zeros(6))
    assert bool(rep.converged) and not bool(rep.stalled)
    assert float(jnp.linalg.norm(jax.grad(f)(x))) <= 1e-9
    np.testing.assert_allclose(x, 1.0, atol=1e-7)


def test_lbfgs_reports_non_convergence():
    f = lambda x: jnp.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)  # noqa: E731
    _, rep = train.lbfgs(f, jnp.zeros(6), gtol=1e-9, max_steps=3)
    assert int(rep.steps) == 3 and not bool(rep.converged)


@pytest.mark.parametrize("attention", ["softmax", "linear"])
def test_factorized_stationary_and_nuclear_form(attention):
    """Factorized pre-training (M7) reaches its tolerance; the objective equals its nuclear-norm
    form Σℓ(Ŝ) + λ√κ d Tr Ŝ (κ = P/d; ‖W‖²_F = √(Pd) Tr Ŝ); and Ŝ satisfies the KKT conditions of
    that convex problem over PSD matrices: Z = ∇_S Σℓ(Ŝ) + λ√κ d I is PSD and Z Ŝ = 0 (so the
    non-convex factorized run found the convex global minimum)."""
    d, P, lam = 20, 20, 0.05
    pd, G = _pretrain_problem(d, 3 * d * d // 10, attention)
    kw = dict(lam=lam, attention=attention, beta=1.0, output="values")
    W_init = 0.5 * jax.random.normal(jax.random.PRNGKey(9), (d, P))
    W, rep = jax.jit(lambda W0: train.pretrain_factorized(W0, pd.X, G, pd.A_target, gtol=1e-10,
                                                          max_steps=5000, **kw))(W_init)
    assert bool(rep.converged), rep
    obj = lambda W: train.pretrain_factorized_objective(W, pd.X, G, pd.A_target, **kw)  # noqa: E731
    g = jax.grad(obj)(W)
    assert float(jnp.linalg.norm(g)) / (1 + float(obj(W))) <= 1e-10
    S = W @ W.T / np.sqrt(P * d)
    kappa = P / d

    def smooth(S):
        A = model.attention(model.score_dense(pd.X, S), attention, 1.0)
        return jnp.sum(model.per_sample_loss(A, pd.A_target, G, "values"))

    nuclear = (smooth(S) + lam * np.sqrt(kappa) * d * jnp.trace(S)) / d**2
    np.testing.assert_allclose(obj(W), nuclear, rtol=1e-12)
    gS = jax.grad(smooth)(S)
    Z = 0.5 * (gS + gS.T) + lam * np.sqrt(kappa) * d * jnp.eye(d)
    scale = lam * np.sqrt(kappa) * d
    assert float(jnp.linalg.eigvalsh(Z)[0]) > -1e-5 * scale
    assert float(jnp.linalg.norm(Z @ S)) < 1e-5 * scale * float(jnp.linalg.norm(S))


@pytest.mark.parametrize("output", ["values", "attention"])
def test_direct_linear_cg_equals_dense_solve(output):
    """Direct ridge (M7, linear σ): matrix-free CG equals a dense solve of the quadratic problem
    over all d×d matrices (tiny d), and the gradient vanishes there."""
    d, lam = 6, 0.02
    pd, G = _pretrain_problem(d, 8, "linear")
    if output == "attention":
        G = jnp.broadcast_to(jnp.eye(3), G.shape)
    S_cg, rep = train.pretrain_direct_linear(pd.X, G, pd.A_target, lam=lam, rtol=1e-13,
                                             max_steps=500)
    assert bool(rep.converged)
    f = lambda s: train.pretrain_direct_objective(s.reshape(d, d), pd.X, G, pd.A_target, lam=lam,  # noqa: E731
                                                  attention="linear", beta=1.0, output=output)
    Hs = jax.hessian(f)(jnp.zeros(d * d))
    gs = jax.grad(f)(jnp.zeros(d * d))
    s_dense = -jnp.linalg.pinv(Hs, rtol=1e-12, hermitian=True) @ gs
    S_dense = s_dense.reshape(d, d)
    S_dense = 0.5 * (S_dense + S_dense.T)
    np.testing.assert_allclose(S_cg, S_dense, atol=1e-9)
    np.testing.assert_allclose(S_cg, S_cg.T, atol=1e-13)
    assert float(jnp.linalg.norm(jax.grad(f)(S_cg.ravel()))) < 1e-9


def test_spectral_direction_finds_spike():
    """The spectral start aligns with w* on an easy linear problem (α' = 8, small noise)."""
    d, T, n = 60, 3, 480
    k = jax.random.split(jax.random.PRNGKey(11), 3)
    X = data.sequences(k[0], n, T, d)
    w_star = data.spike(k[1], d, 1.0)
    B = jnp.zeros((n, T, T))
    noise = data.score_noise(k[2], n, T, 0.1)
    fd = data.finetune_data(X, noise, B, B, w_star, attention="linear", beta=1.0)
    v, ev = train.spectral_direction(X, model.gram(X), B, fd.A_target, 1.0, attention="linear",
                                     beta=1.0, output="attention")
    assert float(ev) < 0
    assert abs(float(v @ w_star)) / np.sqrt(d) > 0.9


@pytest.mark.parametrize("lora,learned", [("symmetric", False), ("general", True)])
def test_finetune_restarts_stationary(lora, learned):
    d, T, n = 30, 3, 90
    k = jax.random.split(jax.random.PRNGKey(12), 4)
    X = data.sequences(k[0], n, T, d)
    w_star = data.spike(k[1], d, 1.0)
    B = model.score_dense(X, jnp.eye(d) * 0.5)
    noise = data.score_noise(k[2], n, T, 0.5)
    fd = data.finetune_data(X, noise, 0.8 * B, B, w_star, attention="softmax", beta=1.0)
    params, info = train.finetune_lora(X, model.gram(X), B, fd.A_target, 1.0, key=k[3], lora=lora,
                                       learned_c=learned, restarts=4, lam=0.05,
                                       attention="softmax", beta=1.0, output="values",
                                       gtol=1e-8, max_steps=3000)
    assert bool(info["converged"])
    f = lambda p: train.finetune_objective(p, X, model.gram(X), B, fd.A_target, 1.0, lam=0.05,  # noqa: E731
                                           attention="softmax", beta=1.0, output="values")
    assert float(train.tree_norm(jax.grad(f)(params))) <= 1e-8
    assert float(info["objective"]) == pytest.approx(float(jnp.min(info["restart_objectives"])))
    assert 0.0 < float(info["restart_success_fraction"]) <= 1.0
    if learned:
        assert "c" in params
