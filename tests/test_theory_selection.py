"""Active-selection rules (M13) and their selected law (THEORY.md T36–T37).

The rules live in ``theory/finetuning/selection.py`` and are shared by the simulator and the
theory. Checks: the spike-sensitivity closed form against autodiff + sampling, the empirical
ρ-quantile route against the exact radial sampler of ``smallest_score``, ordering of m₂ between
rules, the linear-σ reduction of ``largest_sensitivity`` to random, and simulator/theory agreement
on which sequences a rule keeps.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import theory  # noqa: F401  (x64)
from simulations import data, model
from theory.config import Config
from theory.finetuning import noise, selection
from theory.gaussian import goe, n_sym
from theory.states import PretrainState

PRE = PretrainState(Q=1.2, M=1.0, Q0=2.0, V=1.0)


def test_spike_sensitivity_closed_form_matches_autodiff():
    """E_ζ‖J_σ(H)[ζζᵀ − I]‖²_F (closed form in the row probabilities) vs a jvp of the row softmax
    averaged over 2·10⁵ draws of ζ ~ N(0, I_T); tolerance 5 s.e. of that average."""
    T, beta = 3, 1.7
    H = np.asarray(goe(jax.random.PRNGKey(0), (4,), T, variance=1.5))
    zeta = jax.random.normal(jax.random.PRNGKey(1), (200_000, T))
    P = zeta[:, :, None] * zeta[:, None, :] - jnp.eye(T)
    closed = np.asarray(selection.spike_sensitivity(jnp.asarray(H), beta))
    for h, ref in zip(H, closed):
        f = lambda x: jax.nn.softmax(beta * x, axis=-1)
        jvp = jax.vmap(lambda p: jax.jvp(f, (jnp.asarray(h),), (p,))[1])(P)
        vals = np.asarray(jnp.sum(jvp * jvp, axis=(-1, -2)))
        assert abs(vals.mean() - ref) < 5 * vals.std() / math.sqrt(vals.size)


def test_empirical_quantile_route_matches_exact_radial_sampler():
    """For smallest_score the generic route (n smallest of ⌈n/ρ⌉ draws) must give the law of T36:
    m₂ within 4 s.e. of F_{K+2}(t_ρ)/ρ and kept radii χ²_K truncated at t_ρ (KS test)."""
    T, rho, n = 3, 0.1, 20_000
    K = n_sym(T)
    B = np.asarray(selection.selected_unit_B("smallest_score", jax.random.PRNGKey(3), n, T, rho,
                                             scale=1.0, beta=None, exact=False))
    norms2 = np.sum(B * B, axis=(-1, -2)) / (T * (T + 1))
    assert abs(norms2.mean() - noise.selection_m2(K, rho)) < 4 * norms2.std() / math.sqrt(n)
    t = stats.chi2.ppf(rho, K)
    r2 = 0.5 * np.sum(B * B, axis=(-1, -2))
    truncated = lambda x: np.clip(stats.chi2.cdf(x, K) / rho, 0.0, 1.0)
    assert stats.kstest(r2, truncated).pvalue > 1e-3
    assert r2.max() <= t * 1.05          # empirical quantile within its O(1/√n) fluctuation


def test_m2_orders_rules_and_rho_one_is_random():
    T, rho = 3, 0.1
    kw = dict(scale=1.1, beta=1.0)
    m2 = {r: selection.selection_m2(r, T, rho, n=40_000, **kw) for r in selection.RULES}
    assert m2["random"] == 1.0
    assert m2["smallest_score"] < 1.0 < m2["largest_score"]
    # the least saturated softmax rows have small scores: the sensitivity rule keeps small B
    assert m2["largest_sensitivity"] < 1.0
    for rule in selection.RULES:
        assert selection.selection_m2(rule, T, 1.0, **kw) == 1.0


def test_sensitivity_rule_is_random_for_linear_attention():
    cfg = Config().replace(model={"attention": "linear"},
                           finetune={"selection": "largest_sensitivity", "pool_alpha": 20.0})
    c = 1.0
    assert noise.delta_eff_train(cfg, PRE, c) == pytest.approx(noise.delta_eff(cfg, PRE, c))


@pytest.mark.parametrize("rule", ["largest_sensitivity", "largest_score"])
def test_delta_eff_train_uses_rule_m2(rule):
    cfg = Config().replace(model={"attention": "softmax"},
                           finetune={"selection": rule, "pool_alpha": 20.0})
    c = 1.0
    scale, beta = noise.selection_operating_point(cfg, PRE, c)
    m2 = selection.selection_m2(rule, cfg.model.T, cfg.rho, scale=scale, beta=beta)
    a = PRE.M / PRE.Q
    expected = cfg.delta_prime / 2 + PRE.Q0 - a * PRE.M + (a - c) ** 2 * PRE.Q * m2
    assert noise.delta_eff_train(cfg, PRE, c) == pytest.approx(expected, rel=1e-12)


def test_simulator_keeps_what_the_rule_ranks_first():
    """data.select and selection.score are one implementation: the kept sequences have the
    largest spike sensitivity at c·B."""
    d, T, n_pool, n_keep, c, beta = 20, 3, 300, 45, 0.8, 1.0
    X = data.sequences(jax.random.PRNGKey(4), n_pool, T, d)
    S = jnp.eye(d) * 2.0 + 0.1
    B = model.score_dense(X, S)
    idx = np.asarray(data.select("largest_sensitivity", X, S, B, n_keep, c=c, beta=beta))
    sens = np.asarray(selection.spike_sensitivity(c * B, beta))
    dropped = np.setdiff1d(np.arange(n_pool), idx)
    assert len(set(idx.tolist())) == n_keep
    assert sens[idx].min() >= sens[dropped].max()
