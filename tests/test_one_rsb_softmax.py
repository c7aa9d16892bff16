"""1RSB zero-temperature theory of symmetric LoRA, softmax channel
(theory/finetuning/one_rsb_softmax.py, docs/validation/scarce_data.md §3.17): the RS reduction
against the project's RS channel on the same draws, the inner rule, the continuity q0 → q, and the
energy of the dominant states (R7) as ∂_μ(μΨ_out) of the channel. Cheap settings (N = 200, 27
inner nodes): ≈ 15 s with compilation."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import theory  # noqa: F401
from theory.config import Config
from theory.finetuning import one_rsb, one_rsb_softmax as orsb
from theory.finetuning.lora import LoraChannel
from theory.finetuning.lora_channel import _Setup
from theory.states import PretrainState

ZERO = PretrainState(Q=0.0, M=0.0, Q0=2.0, V=0.0)     # pretrain.lam = 1000: Ŝ = 0 (§3.11)
PRE = PretrainState(Q=0.8, M=0.7, Q0=2.0, V=0.1)      # a generic pre-trained backbone (a ≠ 0)


def _cfg(alpha=0.75, lam=0.05, n=200):
    return Config.from_dict({"pretrain": {"lam": 1000.0},
                             "finetune": {"lam": lam, "alpha": alpha},
                             "theory": {"mc_samples": n}})



# jax's compiled programs released after this module (tests/conftest.py)
pytestmark = pytest.mark.usefixtures("release_compiled_programs")


@pytest.mark.parametrize("pre", [ZERO, PRE])
def test_rs_reduction_against_the_project_channel(pre):
    """q0 = q: on the project's frozen draws the 1RSB hats (outer Stein form), prior update and φ
    equal the RS channel's Stein hats (T30), prior (T31) and φ, for μ = 0 and μ = 0.7 (φ does not
    depend on μ there). The two share the multistart prox and its starts (ω, ±e_max; the RS
    channel's warm start is zero here), so they agree to rounding."""
    cfg = _cfg()
    key = jax.random.PRNGKey(3)
    prob, data = orsb.outer_draws(cfg, pre, key)
    S = _Setup(cfg, pre)
    ch = LoraChannel(S)
    x3 = np.array([1.5, 0.3, 0.2])
    means, _ = ch.means(x3, jnp.zeros((S.n, 3)), S.data(key), True)
    hp, stein = ch.hats(x3, means, True)
    rec = ch.record(x3, hp, means, stein)
    C = orsb.Channel(prob, data, orsb.rs_rule(3, S.n))
    x = np.array([1.5, 1.5, 0.3, 0.2])
    for mu in (0.0, 0.7):
        xn, h, mn, _ = one_rsb.map_step(x, mu, C, prob, "outer")
        assert h[0] == pytest.approx(h[1], rel=1e-12)          # q̂0 = q̂
        np.testing.assert_allclose([h[0], h[3], h[2]], hp, rtol=1e-8)
        np.testing.assert_allclose(xn[[0, 2, 3]], ch.prior(hp), rtol=1e-8)
        assert xn[1] == pytest.approx(xn[0], rel=1e-12)        # q0 = q is invariant
        assert one_rsb.phi(x, mu, h, mn, prob)[0] == pytest.approx(rec["phi"], rel=1e-9)


def test_inner_rule_is_an_isotropic_gaussian_rule():
    """Rotated tensor Gauss–Hermite: weights sum to 1, E ξ1 = 0 and E ξ1ξ1ᵀ = I exactly for
    every outer sample (rotation invariance), fourth moments of N(0, I) for n_gh ≥ 3."""
    rule = orsb.inner_rule(3, 5, 3, jax.random.PRNGKey(0))
    w, X = np.asarray(rule["weights"]), np.asarray(rule["nodes"])
    assert w.sum() == pytest.approx(1.0, abs=1e-14)
    for Xi in X:
        np.testing.assert_allclose(w @ Xi, 0.0, atol=1e-13)
        np.testing.assert_allclose(np.einsum("k,ki,kj->ij", w, Xi, Xi), np.eye(3), atol=1e-13)
        r2 = np.sum(Xi * Xi, -1)
        assert w @ (r2 * r2) == pytest.approx(15.0, rel=1e-12)      # E|ξ|⁴ = T(T + 2)


def test_continuity_at_q0_to_q():
    """q − q0 → 0 with the full inner rule: the 1RSB means tend to the RS ones (ω1 → 0)."""
    cfg = _cfg()
    prob, data = orsb.outer_draws(cfg, ZERO, jax.random.PRNGKey(4))
    n = data["xi0"].shape[0]
    rs, _, _ = orsb.channel_means(prob, np.array([1.5, 1.5, 0.3, 0.2]), 2.0, data,
                                  orsb.rs_rule(3, n))
    rsb, _, _ = orsb.channel_means(prob, np.array([1.5, 1.5 - 1e-10, 0.3, 0.2]), 2.0, data,
                                   orsb.inner_rule(3, n, 3, jax.random.PRNGKey(1)))
    for k in ("F", "f2", "fm2", "train", "dq", "fxi0", "feta"):
        assert rsb[k] == pytest.approx(rs[k], rel=1e-3, abs=1e-6), k


def test_energy_of_the_dominant_states_is_the_mu_derivative():
    """R7's channel part: ∂_μ(μ F) = ⟨M⟩ at fixed x for the tilted inner average (F = −(1/μ)log
    Σ_k w_k e^{−μM_k}), and ⟨M⟩ = v⟨|f|²⟩/2 + ⟨ℓ'⟩ (the Moreau envelope at the prox)."""
    cfg = _cfg()
    prob, data = orsb.outer_draws(cfg, ZERO, jax.random.PRNGKey(5))
    n = data["xi0"].shape[0]
    rule = orsb.inner_rule(3, n, 3, jax.random.PRNGKey(2))
    x = np.array([1.6, 0.8, 0.3, 1.0])
    mu, h = 2.0, 1e-4
    F = {u: orsb.channel_means(prob, x, u, data, rule)[0] for u in (mu - h, mu, mu + h)}
    d = ((mu + h) * F[mu + h]["F"] - (mu - h) * F[mu - h]["F"]) / (2 * h)
    assert d == pytest.approx(F[mu]["M"], rel=1e-6)
    assert F[mu]["M"] == pytest.approx(0.5 * x[3] * F[mu]["f2"] + F[mu]["train"], rel=1e-10)
    # Gibbs: μF = μ⟨M⟩ + KL(tilted ‖ rule) ≥ μ⟨M⟩
    assert F[mu]["F"] >= F[mu]["M"] - 1e-12
