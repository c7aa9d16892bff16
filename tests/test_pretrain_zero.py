"""The exact Ŝ = 0 branch of factorized RS pre-training (THEORY.md T8, T14–T19 at Q = M = V = 0;
:meth:`theory.pretraining.channel.PretrainChannel.zero_row`, :func:`theory.pretraining.general.solve`).

Closed forms checked: for linear σ the V → 0 hats are M̂ = V̂ = 2ᾱ and Q̂ = 4ᾱ(Q0 + Δ/2),
ᾱ = αT(T+1) (T12's hat form at V = 0, mse = Q0); the zero point is a fixed point exactly when
λ√κ > M̂·edge(S0* + δZ) with δ = √Q̂/M̂ (T16); the linear closed-form solver (T18) reports
Q = M = 0 there with the same test error. Cheap settings (N ≤ 2000): the default test run.
"""

import math

import jax
import numpy as np
import pytest

from theory import freeprob
from theory.config import Config
from theory.finetuning import reuse
from theory.pretraining import factorized, general
from theory.pretraining.channel import PretrainChannel


def _cfg(attention: str, lam: float, N: int = 2000, R: int = 2) -> Config:
    return Config().replace(model={"attention": attention}, pretrain={"lam": lam},
                            theory={"mc_samples": N, "mc_repeats": R})


def _edge(delta: float, kappa0: float) -> float:
    return freeprob.support(delta, kappa0).bulks[-1][1]


def test_linear_zero_hats_and_threshold_closed_form():
    cfg = _cfg("linear", 1000.0)
    ch = PretrainChannel(cfg)
    pt, T = cfg.pretrain, cfg.model.T
    abar = pt.alpha * T * (T + 1)
    row = ch.zero_row(ch.draws(jax.random.PRNGKey(3)))
    assert row is not None and row["Q"] == row["M"] == row["V"] == 0.0
    # M̂ = V̂ = 2ᾱ are deterministic for linear σ (constant Hessian): O(ZERO_V) bias only
    assert row["Mhat"] == pytest.approx(2 * abar, rel=1e-6)
    assert row["Vhat"] == pytest.approx(2 * abar, rel=1e-6)
    # Q̂ = αE‖∇ℓ(0)‖² = 4ᾱ(Q0 + Δ/2) up to MC: per-sample relative spread ≈ √(2/K) ≈ 0.6 at
    # K = 6, so 5 s.e. at N = 2000 is ≈ 7 %
    assert row["Qhat"] == pytest.approx(4 * abar * (ch.Q0 + pt.delta / 2), rel=0.07)
    # threshold: zero is a fixed point iff λ√κ > M̂ · edge(δ), δ = √Q̂/M̂ (T16)
    delta = math.sqrt(row["Qhat"]) / row["Mhat"]
    lam_c = row["Mhat"] * _edge(delta, pt.kappa0) / math.sqrt(pt.kappa)
    data = ch.draws(jax.random.PRNGKey(3))
    below = PretrainChannel(cfg.replace(pretrain={"lam": 0.98 * lam_c})).zero_row(data)
    above = PretrainChannel(cfg.replace(pretrain={"lam": 1.02 * lam_c})).zero_row(data)
    assert below is None and above is not None


def test_linear_zero_branch_matches_closed_form_T18():
    cfg = _cfg("linear", 1000.0)
    s = general.solve(cfg)
    closed = factorized.solve_linear(cfg)
    assert s.solver["branch"] == "zero" and not s.flags
    assert s.Q == s.M == s.V == 0.0 and closed.Q == pytest.approx(0.0, abs=1e-12)
    # test error E‖H* + ξ‖²_F: MC error of the mean over repeats, 4 s.e.
    assert s.metrics["test_error"] == pytest.approx(closed.metrics["test_error"],
                                                    abs=4 * s.mc_err["test_error"])
    # the engine's iteration also reaches the floor of its coordinates (not "nonfinite")
    assert s.solver["branches"]["engine"]["converged"]
    assert not s.solver["branches"]["engine"]["competes"]


def test_softmax_zero_branch_large_lambda():
    cfg = _cfg("softmax", 1000.0)
    s = general.solve(cfg)
    assert s.solver["branch"] == "zero" and not s.flags
    assert s.Q == s.M == s.V == 0.0 and s.metrics["mse"] == pytest.approx(s.Q0)
    # Ĥ = Ω = 0 on every sample: train = E‖σ(0) − Y‖² = test (the same per-sample numbers)
    assert s.metrics["train_error"] == pytest.approx(s.metrics["test_error"], rel=1e-6)
    assert s.metrics["objective"] == pytest.approx(cfg.pretrain.alpha * s.metrics["train_error"],
                                                   rel=1e-6)
    # the reuse channel (T34) at the zero backbone: Ĥ = 0, no prox
    ch = reuse.reuse_channel(cfg, s, jax.random.PRNGKey(0), 64)
    assert float(np.max(np.abs(np.asarray(ch["B_hat"])))) == 0.0 and ch["multimin"] == 0.0


def test_softmax_just_below_the_zero_threshold_converges():
    """Below the threshold the nuclear step at the T12 start returns Ŝ = 0 exactly; the
    iteration used to end "nonfinite" there (log coordinates). It must now converge to a small
    Ŝ ≠ 0 and Q must grow as λ decreases (a continuous transition to Ŝ = 0)."""
    cfg = _cfg("softmax", 1000.0)
    ch = PretrainChannel(cfg)
    row = ch.zero_row(ch.draws(jax.random.PRNGKey(cfg.theory.seed)))
    delta = math.sqrt(row["Qhat"]) / row["Mhat"]
    lam_c = row["Mhat"] * _edge(delta, cfg.pretrain.kappa0) / math.sqrt(cfg.pretrain.kappa)
    Qs = []
    for f in (0.9, 0.7):
        s = general.solve(cfg.replace(pretrain={"lam": f * lam_c}))
        assert s.solver["converged"], s.solver["result"]
        Qs.append(s.Q)
    assert 0 < Qs[0] < Qs[1] < 0.1
