"""Cheap default-run checks of the fine-tuning RS fixed point (T28–T31) and its solve protocol.

The direct tests of the fixed point in test_theory_finetune.py are slow-marked; these run the
same core at small N (a few hundred frozen samples, one MC repeat, tol 1e-5), so CI exercises
the solver on every push: linear and softmax, fresh, reused and selected sequences, the
iteration caps, unknown errors at one repeat, and the driver's "slow" abandonment.
Tolerances: structural identities to the fixed-point tolerance; MC comparisons at N = 400 to
10% (the spread of q over keys at N = 400 measured ~3%).
"""

import math

import numpy as np
import pytest

from theory.config import Config
from theory.finetuning import lora
from theory.fixed_point import damped_fixed_point
from theory.states import PretrainState

PRE = PretrainState(Q=2.47, M=2.02, Q0=2.0, V=1.0)


def _cfg(attention="linear", T=3, **ft):
    return Config().replace(model={"attention": attention, "T": T}, finetune=ft,
                            theory={"mc_samples": 400, "mc_repeats": 1, "tol": 1e-5,
                                    "max_iter": 300})


def _check_state(st_, cfg):
    """Identities every solved state satisfies (T31): objective = α'·train + λ'q exactly,
    φ_var = objective at the saddle (to the tolerance), m ≥ 0, overlap ≤ 1."""
    M = st_.metrics
    al, lam = cfg.finetune.alpha, cfg.finetune.lam
    assert M["objective"] == pytest.approx(al * M["train_error"] + lam * M["q"], rel=1e-10)
    assert abs(st_.solver["phi_minus_objective"]) < 1e-2 * (1 + abs(M["objective"]))
    assert st_.m >= 0 and 0 <= M["overlap"] <= 1 + 1e-12
    assert st_.solver["iterations"] <= cfg.theory.max_iter


def test_linear_fresh_general_equals_reduced_small_n():
    # general channel with σ = id against the reduced form (same equations, T28): 10% at N = 400
    cfg = _cfg(alpha=3.0)
    red, gen = lora.solve_linear_reduced(cfg, PRE), lora.solve(cfg, PRE)
    for st_ in (red, gen):
        assert st_.solver["converged"]
        _check_state(st_, cfg)
    assert gen.q == pytest.approx(red.q, rel=0.1) and gen.m == pytest.approx(red.m, rel=0.1)
    assert gen.metrics["overlap"] > 0.8


def test_softmax_fresh_small_n():
    cfg = _cfg("softmax", T=2, alpha=3.0, lam=0.1)
    st_ = lora.solve(cfg, PRE)
    assert st_.solver["converged"]
    _check_state(st_, cfg)
    assert st_.metrics["overlap"] > 0.5
    assert st_.metrics["test_error"] < st_.metrics["baseline_error"]


@pytest.mark.parametrize("attention", ["linear", "softmax"])
def test_reuse_small_n(attention):
    # reused sequences (T34 softmax, T35 linear): the training residual is smaller than the test
    # one (the backbone fitted those sequences), and the solve converges (λ' = 0.5: at 0.1 this
    # PRE is RS doubtful on reused softmax sequences, λ_AT = 1.09, and stalls, old code alike)
    cfg = _cfg(attention, T=2, alpha=3.0, lam=0.5, reuse=True)
    st_ = lora.solve(cfg, PRE)
    assert st_.solver["converged"]
    _check_state(st_, cfg)
    assert st_.delta_eff_train < st_.delta_eff


def test_selection_small_n():
    cfg = _cfg("linear", alpha=2.0, selection="smallest_score", pool_alpha=4.0)
    st_ = lora.solve(cfg, PRE)
    assert st_.solver["converged"]
    _check_state(st_, cfg)


def test_one_repeat_errors_are_unknown_not_zero():
    # one MC repeat: no spread over repeats. MC draws: the linear-response error of that
    # repeat's samples (theory.engine.linear_response), known and > 0; QMC draws (not
    # independent samples): unknown, None — never 0
    st_ = lora.solve(_cfg(alpha=3.0), PRE)
    for k in ("q", "m", "overlap", "objective", "test_error"):
        assert st_.mc_err[k] is not None and st_.mc_err[k] > 0
        assert st_.solver["mc_err_spread"][k] is None
    st_ = lora.solve(_cfg(alpha=3.0).replace(theory={"draws": "qmc", "mc_samples": 512}), PRE)
    for k in ("q", "m", "overlap", "objective", "test_error"):
        assert k in st_.mc_err and st_.mc_err[k] is None


def test_max_iter_caps_finetuning_and_pretraining():
    # theory.max_iter caps each solve: a fine-tuning branch (both phases) and the pre-training
    # (both phases: its second phase used to run >= 50 iterations whatever the cap)
    from theory.pretraining import general

    cfg = _cfg(alpha=3.0).replace(theory={"max_iter": 4, "tol": 1e-12})
    st_ = lora.solve(cfg, PRE)
    assert not st_.solver["converged"] and st_.solver["iterations"] <= 4
    for b in st_.branches:
        assert b["iterations"] <= 4
    pcfg = Config().replace(model={"T": 2}, theory={"mc_samples": 200, "mc_repeats": 1,
                                                     "max_iter": 3, "tol": 1e-12})
    pre = general.solve(pcfg)
    assert pre.solver["iterations"] <= 3 and not pre.solver["converged"]


def test_driver_abandons_slow_search_and_converges_fast_map():
    # x -> 0.97x + 1 (fixed point 33.3): far too slow for 30 iterations at tol 1e-10, so
    # slow=8 stops it after 8 iterations; x -> 0.1x + 1 converges
    slow = damped_fixed_point(lambda x: 0.97 * x + 1.0, np.zeros(1), damping=0.0, tol=1e-10,
                              max_iter=30, slow=8)
    assert slow.result == "slow" and slow.iterations == 8 and not slow.converged
    fast = damped_fixed_point(lambda x: 0.1 * x + 1.0, np.zeros(1), damping=0.0, tol=1e-10,
                              max_iter=30, slow=8)
    assert fast.converged and math.isclose(fast.value[0], 1 / 0.9, rel_tol=1e-9)


def test_no_recompilation_across_points():
    # the channel programs take every config number (q0*, α', λ', Δ's, c) as traced data or
    # use it outside the jitted code: a second point with other numbers compiles nothing new
    # (only σ, β, T, N and the explicit-q switch are static)
    cfg = _cfg(alpha=3.0)
    lora.solve_linear_reduced(cfg, PRE)
    run = lora._channel_fn("reduced", cfg.model.beta, cfg.model.T, True)
    n = run._cache_size()
    lora.solve_linear_reduced(cfg.replace(finetune={"alpha": 2.0, "lam": 0.2, "delta": 0.3}), PRE)
    assert run._cache_size() == n


def test_reuse_channel_compiles_once():
    # the T34 prox of the reused sequences is one jitted program (σ static): a second call at
    # other numbers compiles nothing (eagerly it traced and compiled its Newton loops at every
    # call, and a process kept every executable: a 6 x 6 softmax mismatch map ran out of mappings)
    import jax

    from theory.config import Config
    from theory.finetuning import reuse
    from theory.states import PretrainState

    cfg = Config().replace(model={"T": 2}, finetune={"reuse": True})
    pre = PretrainState(Q=1.1, M=1.0, Q0=2.0, V=0.5)
    reuse.reuse_channel(cfg, pre, jax.random.PRNGKey(0), 64)
    n = reuse._training_prox._cache_size()
    ch = reuse.reuse_channel(cfg, PretrainState(Q=1.3, M=1.1, Q0=2.0, V=0.4),
                             jax.random.PRNGKey(1), 64)
    assert reuse._training_prox._cache_size() == n
    assert ch["B_hat"].shape == (64, 2, 2) and 0.0 <= ch["multimin"] <= 1.0


def test_continuation_curve_matches_cold_solves():
    # solve_curve (engine.solve_branch with prox warm starts along α', shared frozen draws)
    # reaches the fixed points a cold solve finds on the same draws (one repeat: same key)
    cfg = _cfg(alpha=2.0)
    curve = lora.solve_curve(cfg, PRE, [2.0, 3.0])
    assert len(curve["states"]) == 2 and all(st_.solver["converged"] for st_ in curve["states"])
    for al, st_ in zip(curve["alphas"], curve["states"]):
        cold = lora.solve(cfg.replace(finetune={"alpha": al}), PRE)
        assert st_.q == pytest.approx(cold.q, rel=1e-3) and st_.m == pytest.approx(cold.m, rel=1e-3)
        assert st_.branches[0]["label"] == "informative"


def test_qmc_draws_are_normal_antithetic_and_replicated():
    # scrambled Sobol base points mapped to N(0, 1): right shapes, moments, GOE_T(1) variances
    # (diag 2, off-diagonal 1), η antithetic, the other fields repeated; keys give replicates
    import jax

    from theory.finetuning.lora_channel import _draws

    T, n = 3, 2048
    q, mc = _draws(jax.random.PRNGKey(1), n, T, "qmc"), _draws(jax.random.PRNGKey(1), n, T)
    for k in mc:
        assert q[k].shape == mc[k].shape
    h = n // 2
    assert np.allclose(q["eta"][h:], -q["eta"][:h]) and np.allclose(q["B"][h:], q["B"][:h])
    assert abs(float(q["xi_t"].mean())) < 0.01 and abs(float(q["xi_t"].var()) - 1) < 0.02
    B = np.asarray(q["B"])
    assert abs(B[:, 0, 0].var() - 2) < 0.05 and abs(B[:, 0, 1].var() - 1) < 0.03
    assert np.allclose(B, np.swapaxes(B, -1, -2))
    q2 = _draws(jax.random.PRNGKey(2), n, T, "qmc")
    assert not np.allclose(q2["xi_t"], q["xi_t"])
    with pytest.raises(ValueError, match="sampling"):
        lora._Setup(_cfg(), PRE, sampling="sobol")


def test_qmc_replicates_give_finite_errors_and_agree_with_mc():
    # theory.draws = "qmc" reaches the channel; its R randomised replicates (independent Owen
    # scramblings) give a finite, non-zero spread, and its mean agrees with i.i.d. MC within the
    # combined MC errors: |z| < 4 (measured at this point, N = 2048 × 4, seed 3: z = −0.9 (q),
    # −0.5 (m), −2.1 (test error); the QMC spread of q was 9× smaller than the MC one)
    cfg = _cfg("linear", alpha=3.0).replace(
        theory={"mc_samples": 2048, "mc_repeats": 4, "seed": 3})
    qcfg = cfg.replace(theory={"draws": "qmc"})
    assert lora._Setup(qcfg, PRE).sampling == "qmc" and lora._Setup(cfg, PRE).sampling == "mc"
    mc, qmc = lora.solve(cfg, PRE), lora.solve(qcfg, PRE)
    for st_ in (mc, qmc):
        assert st_.solver["converged"]
        _check_state(st_, cfg)
    for k in ("q", "m", "test_error"):
        e_mc, e_q = mc.mc_err[k], qmc.mc_err[k]
        assert e_q is not None and math.isfinite(e_q) and e_q > 0
        z = (qmc.metrics[k] - mc.metrics[k]) / math.hypot(e_mc, e_q)
        assert abs(z) < 4, (k, qmc.metrics[k], e_q, mc.metrics[k], e_mc, z)
