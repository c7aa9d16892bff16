"""Tests of the batched Sym_T prox (theory/pretraining/output_prox.py on the one Newton core
theory/prox.py) and the general RS pre-training solver
(theory/pretraining/general.py): THEORY.md T7, T8, T11–T13, T18, §3.2, §10 items 1, 2, 3, 5."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from theory import Config
from theory.gaussian import goe, sym_to_vec, vec_to_sym
from theory.prox import batched_newton
from theory.pretraining.output_prox import Attention, ones_direction, sym_loss_fn, sym_prox
from theory.pretraining import general


def _cfg(**kw):
    sets = [f"{k.replace('__', '.')}={v!r}" if isinstance(v, str) else f"{k.replace('__', '.')}={v}"
            for k, v in kw.items()]
    return Config().with_overrides(sets)


def _draw(N, T=3, key=0):
    k1, k2 = jax.random.split(jax.random.PRNGKey(key))
    return sym_to_vec(goe(k1, (N,), T, 1.2)), sym_to_vec(goe(k2, (N,), T, 1.7))


# ---------------------------------------------------------------------------------------------
# prox
# ---------------------------------------------------------------------------------------------
def test_prox_linear_closed_form():
    # ℓ = ‖H − Z‖²: stationarity (H − Ω)/V + 2(H − Z) = 0 ⇒ Ĥ = (Ω + 2V Z)/(1 + 2V) (T12 channel)
    om, z = _draw(500)
    V = 0.7
    r = sym_prox(Attention("linear"), om, z, V)
    np.testing.assert_allclose(r.u, (om + 2 * V * z) / (1 + 2 * V), atol=1e-12)
    K = om.shape[1]
    np.testing.assert_allclose(r.tr_inv, K / (1 + 2 * V), rtol=1e-12)   # div_Ω f = −2K/(1+2V)
    np.testing.assert_allclose(-r.tr_mix, 2 * K / (1 + 2 * V), rtol=1e-12)
    assert not bool(jnp.any(r.multimin))


@pytest.mark.parametrize("V", [0.3, pytest.param(5.0, marks=pytest.mark.slow)])
def test_prox_softmax_stationary_lowest_and_flat(V):
    att = Attention("softmax", 1.5)
    om, z = _draw(400, key=1)
    r = sym_prox(att, om, z, V)
    assert bool(jnp.all(r.converged))
    loss = sym_loss_fn(att, 3)
    obj = lambda u, p: jnp.sum((u - p[0]) ** 2) / (2 * V) + loss(u, p[1])
    g = jax.vmap(jax.grad(obj))(r.u, (om, z))
    assert float(jnp.max(jnp.abs(g))) < 1e-8          # stationarity (autodiff gradient)
    # f ⊥ 11ᵀ (THEORY §3.2): before projection, up to rounding
    assert float(jnp.max(jnp.abs(r.f_par))) < 1e-9
    assert float(jnp.max(jnp.abs(r.f @ ones_direction(3)))) < 1e-14
    # lowest value among single starts: always vs the Ω start; vs random starts the three
    # deterministic starts (+ none warm) may miss the global minimum on a few samples at large V
    # (measured: 0 at V = 1, 0.3% of samples at V = 5 against 8 random starts) - allow 1%.
    single = batched_newton(obj, om, (om, z), max_iter=60)
    assert bool(jnp.all(r.value <= single["f"] + 1e-12))
    missed = jnp.zeros(om.shape[0], bool)
    for key in range(1, 4):
        s0 = om + 2.0 * jax.random.normal(jax.random.PRNGKey(key), om.shape)
        single = batched_newton(obj, s0, (om, z), max_iter=60)
        missed |= single["converged"] & (single["f"] < r.value - 1e-12)
    assert float(jnp.mean(missed)) <= (0.0 if V < 1 else 0.01)


def test_prox_warm_only_matches():
    att = Attention("softmax", 1.0)
    om, z = _draw(300, key=2)
    full = sym_prox(att, om, z, 2.0)
    warm = sym_prox(att, om, z, 2.0, warm=full.u + 1e-3, cold=False)
    assert float(jnp.max(jnp.abs(warm.u - full.u)[~full.multimin])) < 1e-8


def test_inverse_perp_softmax():
    att = Attention("softmax", 2.0)
    Z = vec_to_sym(_draw(50)[0], 3)
    Zh = att.inverse_perp(att.sigma(Z))
    np.testing.assert_allclose(att.sigma(Zh), att.sigma(Z), atol=1e-12)
    np.testing.assert_allclose(jnp.sum(Zh, axis=(-1, -2)), 0.0, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# general solver
# ---------------------------------------------------------------------------------------------
def _within(state, ref, names, nsig=4.0, floor=1e-3):
    for k in names:
        err = state.mc_err[k] or 0.0
        tol = nsig * err + floor * (1 + abs(ref[k]))
        assert abs(state.metrics[k] - ref[k]) <= tol, (k, state.metrics[k], ref[k], tol)


def test_general_linear_direct_matches_T12():
    from theory.pretraining.direct import solve_linear
    cfg = _cfg(model__attention="linear", pretrain__estimator="direct", pretrain__alpha=0.2,
               pretrain__lam=0.1, theory__mc_samples=3000, theory__mc_repeats=3, theory__tol=1e-8)
    s = general.solve(cfg)
    ref = solve_linear(cfg).metrics
    assert s.solver["converged"] and s.solver["hat_form"] == "derivative"
    # tolerance: 4 MC standard errors (from 3 repeats) + 1e-3 relative (repeat-s.e. is itself noisy)
    _within(s, ref, ["Q", "M", "mse", "test_error", "train_error", "objective"])
    assert abs(s.solver["objective_gap"]) < 1e-5


@pytest.mark.slow
def test_general_linear_factorized_matches_T18():
    from theory.pretraining.factorized import solve_linear
    cfg = _cfg(model__attention="linear", pretrain__estimator="factorized", pretrain__alpha=0.2,
               pretrain__lam=0.1, theory__mc_samples=3000, theory__mc_repeats=3, theory__tol=1e-8)
    s = general.solve(cfg)
    ref = solve_linear(cfg).metrics
    assert s.solver["converged"]
    _within(s, ref, ["Q", "M", "mse", "test_error", "train_error", "objective"])
    assert abs(s.solver["objective_gap"]) < 1e-5


@pytest.mark.parametrize("estimator", ["direct", pytest.param("factorized", marks=pytest.mark.slow)])
def test_softmax_large_lambda_limit(estimator):
    cfg = _cfg(pretrain__estimator=estimator, pretrain__lam=1e8, theory__mc_samples=2000,
               theory__mc_repeats=1)
    s = general.solve(cfg)
    assert s.Q <= 1e-12 and abs(s.M) < 1e-6  # Q is floored at 1e-12 inside the solver
    # E‖11ᵀ/T − σ(H* + ξ)‖² with H* ~ GOE_T(Q0) (same frozen draws: s = √Q0 when M = 0)
    d = general.PretrainChannel(cfg).draws(jax.random.PRNGKey(cfg.theory.seed))
    att = Attention("softmax", 1.0)
    Y = att.sigma(vec_to_sym(math.sqrt(2.0) * d.g2 + d.xi, 3))
    ref = float(jnp.mean(jnp.sum((1 / 3 - Y) ** 2, axis=(-1, -2))))
    # same draws: only the O(√Q) = O(1e-6) residual score differs; 1e-4 relative
    assert abs(s.metrics["test_error"] - ref) < 1e-4 * ref


@pytest.mark.slow
def test_softmax_direct_identities():
    cfg = _cfg(pretrain__estimator="direct", pretrain__alpha=0.2, pretrain__lam=0.1,
               theory__mc_samples=3000, theory__mc_repeats=1, theory__tol=1e-8)
    s = general.solve(cfg)
    m = s.metrics
    assert s.solver["converged"], s.solver
    assert m["mse"] >= 0 and m["M"] ** 2 <= m["Q"] * m["Q0"]
    # Φ = α·train + λQ at the saddle (T10): gap limited by the fixed-point tolerance
    assert abs(s.solver["objective_gap"]) < 1e-5 * (1 + abs(m["objective"]))
    assert s.solver["f_parallel_max"] < 1e-9
    assert not s.flags
