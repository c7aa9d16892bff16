"""1RSB zero-temperature theory of symmetric LoRA, linear channel
(theory/finetuning/one_rsb_linear.py,
docs/validation/scarce_data.md §3.16): the exact prox, the closed-form prior term, the RS
reduction against the project's RS channel and solver, and the λ' → ∞ limit."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import minimize

import theory  # noqa: F401
from theory.config import Config
from theory.finetuning import one_rsb_linear as orsb
from theory.finetuning.lora import LoraChannel
from theory.finetuning.lora_channel import _Setup
from theory.gaussian import goe
from theory.states import PretrainState

ZERO = PretrainState(Q=0.0, M=0.0, Q0=2.0, V=0.0)     # pretrain.lam = 1000 (scarce_data.md Set-up)


def _cfg(alpha, lam, n=4000):
    return Config.from_dict({"model": {"attention": "linear"}, "pretrain": {"lam": 1000.0},
                             "finetune": {"lam": lam, "alpha": alpha},
                             "theory": {"mc_samples": n}})


def test_exact_prox_is_the_global_minimum():
    """R9 against multistart BFGS on random (A, ω, v), including hard-case-prone ones."""
    rng = np.random.default_rng(1)
    for i in range(10):
        A = (np.asarray(goe(jax.random.PRNGKey(i), (), 3)) * rng.uniform(0.3, 3)
             + rng.normal() * np.eye(3))
        om, v = rng.normal(size=3) * rng.uniform(0.05, 2), rng.uniform(0.02, 1.0)
        a, U = np.linalg.eigh(A)
        z = U @ np.asarray(orsb.prox_eig(jnp.asarray(a), jnp.asarray(U.T @ om), v))
        F = lambda y: np.sum((y - om) ** 2) / (2 * v) + np.sum((A - np.outer(y, y)) ** 2)
        best = min(minimize(F, s, method="BFGS").fun for s in [om, *rng.normal(size=(8, 3)) * 2])
        assert F(z) <= best + 1e-8 * (1 + abs(best))


def test_prior_term_against_quadrature():
    """R3 = −(1/μ)E log E_h1 exp(μV h²/2), h = √P g0 + √(q̂ − q̂0) h1 (Gauss–Hermite in both)."""
    mu, qh, qh0, vh, mh, lam, q0s = 0.7, 3.0, 1.2, 2.0, 0.8, 0.05, 1.0
    V, P, dq = 1 / (2 * lam + vh), qh0 + q0s * mh ** 2, qh - qh0
    x, w = np.polynomial.hermite_e.hermegauss(80)
    w = w / w.sum()
    h = math.sqrt(P) * x[:, None] + math.sqrt(dq) * x[None, :]
    inner = np.sum(w[None, :] * np.exp(mu * V * h ** 2 / 2), 1)
    ref = -np.sum(w * np.log(inner)) / mu
    assert orsb.prior_term(mu, qh, qh0, vh, mh, lam, q0s) == pytest.approx(ref, rel=1e-10)
    # μ → 0: the RS prior term of T31
    assert orsb.prior_term(1e-9, qh, qh0, vh, mh, lam, q0s) == pytest.approx(
        orsb.prior_term(0.0, qh, qh0, vh, mh, lam, q0s), rel=1e-7)
    assert orsb.prior_term(0.0, qh, qh0, vh, mh, lam, q0s) == pytest.approx(
        -V * (qh + q0s * mh ** 2) / 2)


def test_prior_update_is_stationary():
    """R5 are the stationarity conditions of R2 in the conjugates: ∂φ/∂(q̂, q̂0, v̂, m̂) = 0."""
    mu, lam, q0s = 0.4, 0.05, 1.0
    hat0 = np.array([30.0, 20.0, 8.0, 2.5])
    q, q0, m, v = orsb.prior_update(mu, *hat0, lam, q0s)

    def part(hh):
        qh, qh0, vh, mh = hh
        return (0.5 * qh * v - 0.5 * vh * q + 0.5 * mu * (qh * q - qh0 * q0) + mh * m
                + orsb.prior_term(mu, qh, qh0, vh, mh, lam, q0s))
    for i in range(4):
        e = np.zeros(4)
        e[i] = 1e-5 * abs(hat0[i])
        g = (part(hat0 + e) - part(hat0 - e)) / (2 * e[i])
        assert abs(g) < 1e-7 * (1 + abs(q) + abs(v)), i


def test_rs_reduction_against_the_project_channel():
    """q0 = q: on the project's own frozen draws the 1RSB hats (R6, outer Stein form), prior
    update (R5) and φ (R2) equal the project's RS Stein hats (T30), prior (T31) and φ, for any μ.
    α' = 1.5, λ' = 0.05 (a converged RS point), at the project's RS fixed point."""
    cfg = _cfg(1.5, 0.05, n=600)
    S = _Setup(cfg, ZERO, reduced=True)
    ch = LoraChannel(S)
    d = S.data(jax.random.PRNGKey(3))
    q, m, v = 1.2073374989131287, 0.9845607791640124, 0.02178551464406164
    means, _ = ch.means(np.array([q, m, v]), jnp.zeros((S.n, 3)), d, True)
    hp, stein = ch.hats(np.array([q, m, v]), means, True)
    rec = ch.record(np.array([q, m, v]), hp, means, stein)
    prob = orsb.LinearProblem.from_config(cfg, ZERO)
    assert prob.delta == pytest.approx(2.25)                   # Δ'/2 + Q0 (T25, zero backbone)
    data = dict(xi0=d["xi_t"], eta=d["eta"], G=d["Htea"] / math.sqrt(prob.delta))
    rule = orsb.inner_rule(3, **orsb.RS_RULE)
    for mu in (0.0, 0.7):
        xn, h, mn = orsb.fixed_point_map(np.array([q, q, m, v]), mu, data, rule, prob, "outer")
        assert h[0] == pytest.approx(h[1], rel=1e-12)          # q̂0 = q̂
        np.testing.assert_allclose([h[0], h[3], h[2]], hp, rtol=1e-8)
        np.testing.assert_allclose(xn[[0, 2, 3]], ch.prior(hp), rtol=1e-8)
        assert xn[1] == pytest.approx(xn[0], rel=1e-12)        # q0 = q is invariant
        ph = orsb.phi(np.array([q, q, m, v]), mu, h, mn, prob)[0]
        assert ph == pytest.approx(rec["phi"], rel=1e-9)


def test_rs_fixed_point_against_the_project_solver():
    """The RS fixed point of this module (q0 = q, exact prox, Powell hybrid; 3 keys × 4000) against
    ``theory.finetuning.lora.solve`` at α' = 1.5, λ' = 0.05, zero backbone, default theory settings
    (4000 × 3 repeats): q = 1.2073 ± 0.0041, m = 0.98456 ± 0.0026, objective 35.627 ± 0.153
    (recorded 2026-12-06 on main with PretrainState from `solve_pretraining`; 12 s). Agreement
    within
    3 combined standard errors."""
    prob = orsb.LinearProblem(3, 1.5, 0.05, 1.0, 2.25)
    rule = orsb.inner_rule(3, **orsb.RS_RULE)
    recs = [orsb.solve_mu(prob, 0.0, orsb.draws(jax.random.PRNGKey(100 + k), 4000, 3), rule,
                          np.array([1.2, 1.2, 0.98, 0.022]), rs=True) for k in range(3)]
    assert all(r["converged"] for r in recs)
    for key, ref, err in (("q", 1.2073375, 0.0040872), ("m", 0.9845608, 0.0026211),
                          ("phi", 35.626858, 0.15339)):
        a = np.array([r[key] for r in recs])
        se = a.std(ddof=1) / math.sqrt(len(a))
        assert abs(a.mean() - ref) < 3 * math.hypot(se, err), (key, a.mean(), se)
    for r in recs:                                              # φ = objective at the saddle (T31)
        assert r["phi"] == pytest.approx(r["energy"], rel=1e-8)


def test_large_ridge_gives_the_uninformative_point():
    """λ' → ∞: q = m = 0 for RS and 1RSB alike, test error = baseline T(T+1)(Δ_eff + q0*²)."""
    prob = orsb.LinearProblem(3, 0.5, 1e4, 1.0, 2.25)
    data = orsb.draws(jax.random.PRNGKey(5), 4000, 3)     # shapes of the test above: no recompile
    r = orsb.solve_mu(prob, 0.3, data, orsb.inner_rule(3, **orsb.RS_RULE),
                      np.array([0.5, 0.2, 0.1, 1e-4]))
    assert r["q"] < 1e-6 and abs(r["m"]) < 1e-6
    assert r["test_error"] == pytest.approx(12 * 3.25, rel=1e-6)


def test_energy_of_the_dominant_states():
    """R7: at the prior saddle (R5) ∂_μ[μ(φ − α'Ψ_out)] = λ'q − q̂v/2, so with ∂_μ(μΨ_out) = E⟨M⟩
    = vE⟨|f|²⟩/2 + E⟨ℓ'⟩ the energy ∂_μ(μφ) is α'E⟨ℓ'⟩ + λ'q (Σ = μ(e − φ), R8)."""
    qh, qh0, vh, mh, lam = 30.0, 20.0, 8.0, 2.5, 0.05
    for mu in (0.05, 0.3):
        q, q0, m, v = orsb.prior_update(mu, qh, qh0, vh, mh, lam, 1.0)

        def muphi(u):
            return u * (0.5 * qh * v - 0.5 * vh * q + 0.5 * u * (qh * q - qh0 * q0) + mh * m
                        + orsb.prior_term(u, qh, qh0, vh, mh, lam, 1.0))
        h = 1e-6
        assert (muphi(mu + h) - muphi(mu - h)) / (2 * h) == pytest.approx(lam * q - qh * v / 2,
                                                                          abs=1e-7)
