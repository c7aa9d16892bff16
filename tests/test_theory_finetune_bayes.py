"""Bayes-optimal fine-tuning SE (THEORY.md §8, T38–T40): theory/finetuning/bayes.py.

Small Monte-Carlo sizes: every tolerance below is a multiple (4–5×) of the Monte-Carlo standard
error it tests, or, for grid-vs-grid comparisons, the quadrature tolerance."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import theory  # noqa: F401  (x64)
from theory.config import Config
from theory.finetuning import bayes
from theory.states import PretrainState

PRE = PretrainState(Q=1.0, M=1.0, Q0=1.0, V=0.0)  # Delta_N = Delta'/2


def _cfg(att="linear", T=2, alpha=3.0, dn=0.8, n=1024, rep=1):
    return Config().replace(model={"T": T, "attention": att},
                            finetune={"alpha": alpha, "delta": 2 * dn},
                            theory={"mc_samples": n, "mc_repeats": rep, "tol": 1e-6})


@pytest.mark.parametrize("proj", [False, True])
@pytest.mark.parametrize("dn,v", [(0.8, 1.0), (0.3, 0.5), (0.5, 0.05)])
def test_quadrature_matches_brute_force_mc(proj, dn, v):
    """GH grid log Z_out and E[ζ|A,ω] against plain MC over u (2·10^5 draws).
    Tolerance: 5 MC standard errors (computed) + 1e-3 grid tolerance."""
    T = 3
    key = jax.random.PRNGKey(3)
    k1, k2, k3 = jax.random.split(key, 3)
    zeta = jax.random.normal(k1, (T,))
    A = jnp.outer(zeta, zeta) + bayes.goe(k2, (), T, dn)
    omega = 0.6 * zeta
    nodes, logw = bayes.gh_grid(24, T)
    logz, mean, _ = bayes.z_out(A, omega, v, dn, nodes, logw, proj)
    u = jax.random.normal(k3, (200_000, T))
    z = omega + math.sqrt(v) * u
    w = jnp.exp(bayes._loglik(z, A, dn, proj))
    Z = w.mean()
    se_Z = w.std() / math.sqrt(len(w))
    assert abs(float(jnp.log(Z)) - float(logz)) < 5 * float(se_Z / Z) + 1e-3
    mc_mean = (w[:, None] * z).mean(0) / Z
    # delta-method s.e. of a self-normalised mean
    se_mean = jnp.sqrt(((w[:, None] * (z - mc_mean)) ** 2).mean(0) / len(w)) / Z
    assert np.all(np.abs(np.asarray(mc_mean - mean)) < 5 * np.asarray(se_mean) + 1e-3)


@pytest.mark.parametrize("proj", [False, True])
def test_sign_symmetry(proj):
    """E[ζ|Ỹ, ω=0] = 0 (ζ → −ζ symmetry; exact on the symmetric grid)."""
    T = 3
    k1, k2 = jax.random.split(jax.random.PRNGKey(1))
    zeta = jax.random.normal(k1, (T,))
    A = jnp.outer(zeta, zeta) + bayes.goe(k2, (), T, 0.5)
    nodes, logw = bayes.gh_grid(16, T)
    _, mean, _ = bayes.z_out(A, jnp.zeros(T), 1.0, 0.5, nodes, logw, proj)
    assert np.max(np.abs(np.asarray(mean))) < 1e-10


def test_grid_converges_in_node_count():
    """choose_nodes finds a converged node count at Delta_N = 0.8 and 0.3 (T = 3)."""
    for dn in (0.8, 0.3):
        n, ok, diff = bayes.choose_nodes(3, 1.0, dn, False, key=jax.random.PRNGKey(0), n_check=256)
        assert ok and diff < 2e-3


def test_nishimori_at_fixed_point():
    """E|g|² = E[g·(ζ−ω)]/v at the SE fixed point (tolerance: 5 MC s.e. of each side)."""
    cfg = _cfg(alpha=2.0, n=2048)
    s = bayes.solve(cfg, PRE, n_nodes=16, init=0.5)
    assert s.solver["converged"]
    zeta, eta, A = bayes._draws(jax.random.PRNGKey(11), 4096, 2, 1.0, 0.8)
    nodes, logw = bayes.gh_grid(16, 2)
    mom, se = bayes.se_moments(s.q, zeta, eta, A, 1.0, 0.8, nodes, logw, proj=False)
    assert abs(float(mom[0] - mom[1])) < 5 * float(se[0] + se[1])


def test_weak_recovery_threshold_linear_T2():
    """q = 0 is the fixed point below alpha'_WR, q > 0 above (T40)."""
    cfg = _cfg(n=1024, rep=2)
    awr, err = bayes.alpha_weak_recovery(cfg, PRE, n_nodes=16)
    assert 0 < awr and err < 0.05 * awr
    lo = bayes.solve(cfg.replace(finetune={"alpha": 0.6 * awr}), PRE, n_nodes=16, init=1e-3)
    hi = bayes.solve(cfg.replace(finetune={"alpha": 2.0 * awr}), PRE, n_nodes=16, init=1e-3)
    assert lo.q < 1e-4
    assert hi.q > 0.1


def test_limits_and_monotonicity():
    """q -> 0 as alpha' -> 0; q increases with alpha' towards q0*; test error below the
    w = 0 baseline T(T+1)(Δ_N + q0*²); o_w = sqrt(q/q0*)."""
    cfg = _cfg(n=1024)
    qs = []
    for a in (0.05, 1.0, 4.0, 30.0):
        s = bayes.solve(cfg.replace(finetune={"alpha": a}), PRE, n_nodes=16)
        qs.append(s.q)
        K = 6
        assert s.metrics["test_error"] <= K * (0.8 + 1.0) + 1e-12
        assert math.isclose(s.metrics["overlap"], math.sqrt(s.q))
    assert qs[0] < 1e-4
    assert all(b > a for a, b in zip(qs, qs[1:]))
    assert qs[-1] > 0.97


def test_linear_bayes_bound_over_fixed_estimators():
    """Linear σ: any (q, m) with m²/q ≤ q_BO (overlap not above Bayes) has test
    T(T+1)(Δ + q0*² + q² − 2m²) ≥ the Bayes test T(T+1)(Δ + q0*² − q_BO²)."""
    cfg = _cfg(alpha=2.0, n=1024)
    s = bayes.solve(cfg, PRE, n_nodes=16)
    qb = s.q
    rng = np.random.default_rng(0)
    for _ in range(200):
        q = rng.uniform(1e-3, 2.0)
        m = math.sqrt(rng.uniform(0, qb * q))
        assert 6 * (0.8 + 1 + q * q - 2 * m * m) >= s.metrics["test_error"] - 1e-12


def test_q_tends_to_q0star_as_noise_vanishes():
    cfg = _cfg(alpha=3.0, n=1024)
    qs = [bayes.solve(cfg.replace(finetune={"delta": 2 * dn}), PRE, n_nodes=24).q for dn in (0.8, 0.3)]
    assert qs[1] > qs[0]


@pytest.mark.slow
def test_softmax_solve_runs():
    cfg = _cfg(att="softmax", T=3, alpha=3.0, n=1024, rep=2)
    s = bayes.solve(cfg, PRE)
    assert 0 < s.q < 1 and s.metrics["test_error"] > s.metrics["test_error_clean"]


def test_engine_channel_keeps_the_repeat_draws_and_escapes_q0():
    """The SE is a channel of theory.engine (THEORY.md §9): repeat r draws from
    fold_in(PRNGKey(seed), r), repeat 0 included (as before the port); above weak recovery the
    uninformative start (Anderson lands on the unstable q = 0) escapes to the informative branch,
    every branch reports its slope and only stable fixed points are selected."""
    from theory import engine

    cfg = _cfg(n=256, rep=3)
    ch = bayes.BayesSEChannel(cfg, PRE, *bayes.gh_grid(12, 2))
    key = jax.random.PRNGKey(cfg.theory.seed)
    for r in range(3):
        got = ch.draws(engine.repeat_key(key, r))
        ref = bayes._draws(jax.random.fold_in(key, r), 256, 2, 1.0, 0.8)
        assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(got, ref))
    zero = ch.stability(np.array([0.0]), got)
    assert zero[0] > 1.0 and zero[1][0] > 0          # alpha' = 3 is above weak recovery here
    s = bayes.solve(cfg, PRE, n_nodes=12)
    assert [b["label"] for b in s.branches] == ["informative", "uninformative"]
    assert all(b["stable"] and b["slope"] < 1 for b in s.branches)
    assert not s.solver["distinct_branches"] and s.q > 0.3 and s.solver["converged"]
    assert s.solver["mc_repeats"] == 3 and s.solver["engine"] == "theory.engine"
