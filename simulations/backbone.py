"""The frozen backbone of the fine-tuning stage: trained (M5–M8) or Gaussian-equivalent (issue 15).

A backbone is a dict of arrays ``{"W0", "S_hat", "metrics", "report"[, "data"]}``; ``metrics``
holds the pre-training metrics of MODEL.md §4 (the test errors included, computed **once per
backbone** from the backbone's own keys, so a shared backbone reports the same pre-training
metrics at every fine-tuning point, issue 16 item 12).

``sim.backbone = "trained"``: the teacher S0* = W0W0ᵀ/√(P0 d) (M5) and the student Ŝ minimising the
pre-training loss (M7) on n = αd² sequences; metrics measured.

``sim.backbone = "equivalent"``: no pre-training. Ŝ = a·S0* + R with R an independent symmetric
Gaussian matrix, and (Q, M) those of the pre-training theory (``theory.predict.predict_pretraining``)
or given by ``sim.backbone_Q``/``sim.backbone_M``. Derivation of a and of the variance of R
(MODEL M8, THEORY T1, T24): with Q0 = Tr S0*²/d the realised teacher norm and
R = σZ, Z a d×d GOE (Z_ij ~ N(0, 1/d), Z_ii ~ N(0, 2/d), THEORY §1) independent of S0*,

    M = Tr(Ŝ S0*)/d = a Q0 + σ Tr(Z S0*)/d,        Tr(Z S0*)/d ~ N(0, 2Q0/d²) = O(1/d),
    Q = Tr Ŝ²/d = a²Q0 + 2aσ Tr(Z S0*)/d + σ² Tr Z²/d,   Tr Z²/d = 1 + O(1/d),

so a = M/Q0 and σ² = Q − M²/Q0 (≥ 0 by Cauchy–Schwarz; the per-entry variance of R is σ²/d off
the diagonal, 2σ²/d on it). We remove the O(1/d) terms exactly: Z is projected Frobenius-
orthogonally to S0* and rescaled to Tr R²/d = σ², so Tr(ŜS0*)/d = a Q0 and Tr Ŝ²/d = a²Q0 + σ²
hold at every d (tests: ``tests/test_sim_backbone.py``, also that the projection and the
rescaling are O(1/d) corrections, i.e. the draw is the Gaussian one to leading order). Which Q0:
given ``sim.backbone_Q/M`` are reproduced exactly (a, σ² from the seed's realised Q0); the
theory's (Q, M) are those of its own Q0 = 1 + κ0, so a, σ² are taken from the theory's triple and
the realised (Q, M) = (a²Q0 + σ², aQ0) follow the realised teacher norm (whose seed-to-seed spread
at d = 24 is ~10%: forcing the theory's (Q, M) onto a teacher with a small Q0 can violate
Cauchy–Schwarz). E⊥ = S0* − (M/Q)Ŝ
is then the residual of T24 with ‖E⊥‖²_F/d = Q0 − M²/Q, and on fresh or selected sequences the
fine-tuning sees the backbone only through (Q, M, Q0) and the law of h(X;Ŝ) (T25, T26, T36), which
is GOE_T(Q) for both backbones (T1–T2). What it does not copy of a trained Ŝ: its trace
τ̂ = Tr Ŝ/d (R has Tr R/d = O(1/d); PSD trained backbones have τ̂ = O(1)), which enters only the
O(d^{-1/2}) couplings of T4 (h(Ŝ) with ωωᵀ) and T5 (h(Ŝ) with h(I) in the values output), and its
correlation with its own training sequences (T34), which is why reuse is refused (config check).

Pre-training metrics of an equivalent backbone: Q, M, Q0, mse are those of the drawn Ŝ; train_error, objective and the test errors are ``None`` (nothing was trained
or measured); ``report`` marks the backbone as equivalent and names the source of (Q, M).
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp

from theory.config import Config

from . import data, metrics, model, train
from .plan import Plan

__all__ = ["pretrain_impl", "equivalent_impl", "pretrain_test_impl", "equivalent_targets",
           "theory_pretrain_state", "test_key", "PILOT_BATCHES", "CG_RTOL"]

CG_RTOL = 1e-11                  # direct-linear CG: relative residual of the normal equations
PILOT_BATCHES = 2                # pilot test batches (2 × batch sequences)

_THEORY_TARGETS: dict = {}       # pretrain_key(cfg) -> (Q, M, Q0): one theory solve per process


def _opt_kw(plan: Plan, num: dict) -> dict:
    return dict(attention=plan.attention, beta=num["beta"], output=plan.output)


def teacher(root_key, plan: Plan):
    """(M5) W0 from the seed's "teacher" key (the same for both backbone kinds)."""
    return data.teacher_factor(data.purpose_key(root_key, "teacher"), plan.d, plan.P0)


def teacher_matrix(W0, plan: Plan):
    return W0 @ W0.T / jnp.sqrt(plan.P0 * plan.d)


# --------------------------------------------------------------------------------------------
# trained backbone (M5–M8)
# --------------------------------------------------------------------------------------------
def pretrain_impl(root_key, plan: Plan, num: dict, keep_data: bool) -> dict:
    """Pre-train Ŝ on n = αd² sequences (M7) and measure Q, M, Q0, mse, train error, objective."""
    d, T = plan.d, plan.T
    W0 = teacher(root_key, plan)
    pdata = data.pretrain_data(data.purpose_key(root_key, "pretrain_X"),
                               data.purpose_key(root_key, "pretrain_noise"), W0,
                               n=plan.n, T=T, delta=num["delta"], attention=plan.attention,
                               beta=num["beta"])
    G = model.gram(pdata.X)
    kw = _opt_kw(plan, num)
    lam, gtol, steps = num["lam_pre"], num["pretrain_gtol"], num["max_steps"]
    if plan.estimator == "factorized":
        W_init = 0.5 * jax.random.normal(data.purpose_key(root_key, "pretrain_init"), (d, plan.P))
        W, report = train.pretrain_factorized(W_init, pdata.X, G, pdata.A_target, lam=lam,
                                              gtol=gtol, max_steps=steps, **kw)
        S_hat = W @ W.T / jnp.sqrt(plan.P * d)
        H = model.score_factor(pdata.X, W)
        objective = report.value
    elif plan.linear:
        S_hat, report = train.pretrain_direct_linear(pdata.X, G, pdata.A_target, lam=lam,
                                                     rtol=CG_RTOL, max_steps=steps)
        H = model.score_dense(pdata.X, S_hat)
        objective = train.pretrain_direct_objective(S_hat, pdata.X, G, pdata.A_target, lam=lam,
                                                    **kw)
        report = report._replace(value=objective)   # grad_norm keeps the CG relative residual
    else:
        S_hat, report = train.pretrain_direct_lbfgs(pdata.X, G, pdata.A_target, lam=lam,
                                                    gtol=gtol, max_steps=steps, **kw)
        H = model.score_dense(pdata.X, S_hat)
        objective = report.value
    A = model.attention(H, plan.attention, num["beta"])
    train_error = jnp.mean(model.per_sample_loss(A, pdata.A_target, G, plan.output))
    order = metrics.pretrain_order_parameters(S_hat, teacher_matrix(W0, plan))
    out = {"W0": W0, "S_hat": S_hat,
           "metrics": {"train_error": train_error, "objective": objective, **order},
           "report": report._asdict()}
    if keep_data:
        out["data"] = {"X": pdata.X, "noise": pdata.noise, "h_teacher": pdata.h_teacher}
    return out


# --------------------------------------------------------------------------------------------
# Gaussian-equivalent backbone (issue 15; derivation in the module docstring)
# --------------------------------------------------------------------------------------------
def equivalent_matrix(key, S0, a, sigma2):
    """Ŝ = a S0* + R, R ⟂_F S0*, Tr R²/d = sigma2 exactly. Returns ``(S_hat, info)``, info = the
    projection coefficient and the rescaling factor of the raw GOE draw (→ 0 and 1 as d → ∞)."""
    d = S0.shape[0]
    g = jax.random.normal(key, (d, d), dtype=jnp.float64)
    Z = (g + g.T) / jnp.sqrt(2.0 * d)                  # GOE: off-diagonal var 1/d, diagonal 2/d
    proj = jnp.sum(Z * S0) / jnp.sum(S0 * S0)
    Z_perp = Z - proj * S0
    scale = jnp.sqrt(sigma2 / (jnp.sum(Z_perp * Z_perp) / d))
    return a * S0 + scale * Z_perp, {"projection": proj, "rescale": scale / jnp.sqrt(sigma2)}


def equivalent_impl(root_key, plan: Plan, num: dict) -> dict:
    """The equivalent backbone of one seed: same teacher key as the trained one, R from the
    "backbone_R" key. a = M/Q0_ref and σ² = Q − M²/Q0_ref from ``num["backbone_Q"]``,
    ``num["backbone_M"]`` and the reference ``num["backbone_Q0"]``: the theory's Q0 when (Q, M)
    are the theory's (the realised (Q, M) are then those the theory's estimator has on this
    teacher, a Q0 and a² Q0 + σ²), the realised Q0 (NaN given) for sim.backbone_Q/M, which are
    then reproduced exactly."""
    W0 = teacher(root_key, plan)
    S0 = teacher_matrix(W0, plan)
    Q0_real = jnp.sum(S0 * S0) / plan.d
    Q0_ref = jnp.where(jnp.isnan(num["backbone_Q0"]), Q0_real, num["backbone_Q0"])
    Q, M = num["backbone_Q"], num["backbone_M"]
    a, sigma2 = M / Q0_ref, Q - M * M / Q0_ref
    S_hat, info = equivalent_matrix(data.purpose_key(root_key, "backbone_R"), S0, a, sigma2)
    order = metrics.pretrain_order_parameters(S_hat, S0)
    nan = jnp.asarray(jnp.nan)
    report = {"value": nan, "grad_norm": nan, "steps": jnp.asarray(0),
              "converged": jnp.asarray(True), "stalled": jnp.asarray(False),
              "a": a, "sigma2": sigma2, **info}
    return {"W0": W0, "S_hat": S_hat, "metrics": {"train_error": nan, "objective": nan, **order},
            "report": report}


def equivalent_targets(cfg: Config) -> tuple[float, float, float, str]:
    """(Q, M, Q0_ref, source) of the equivalent backbone: ``sim.backbone_Q/M`` when given
    (source "config", Q0_ref NaN = the realised Q0), else the pre-training theory's (Q, M, Q0)
    (``theory.predict.predict_pretraining``, "theory"; solved once per process and key).
    Raises ValueError when the theory's M² > Q Q0."""
    if cfg.sim.backbone_Q is not None:
        return float(cfg.sim.backbone_Q), float(cfg.sim.backbone_M), float("nan"), "config"
    from theory.predict import predict_pretraining, pretrain_key

    key = pretrain_key(cfg)
    if key not in _THEORY_TARGETS:
        pre = predict_pretraining(cfg)
        _THEORY_TARGETS[key] = (float(pre.Q), float(pre.M), float(pre.Q0))
    Q, M, Q0 = _THEORY_TARGETS[key]
    if M * M > Q * Q0 * (1 + 1e-9):
        raise ValueError(f"sim.backbone = 'equivalent': the pre-training theory's (Q, M, Q0) = "
                         f"({Q!r}, {M!r}, {Q0!r}) violate M^2 <= Q Q0")
    return Q, M, Q0, "theory"


def theory_pretrain_state(cfg: Config):
    """The pre-training state the theory must use next to an equivalent backbone with given
    ``sim.backbone_Q/M`` (``hdlora compare``): the theory's state with Q, M replaced (V and the
    hats kept); ``None`` when the theory's own (Q, M) are used (nothing to replace)."""
    if cfg.sim.backbone != "equivalent" or cfg.sim.backbone_Q is None:
        return None
    from dataclasses import replace

    from theory.predict import predict_pretraining

    pre = predict_pretraining(cfg)
    return replace(pre, Q=float(cfg.sim.backbone_Q), M=float(cfg.sim.backbone_M),
                   flags=pre.flags + ("fine-tuning fed by sim.backbone_Q/M (equivalent backbone)",))


# --------------------------------------------------------------------------------------------
# pre-training test errors (once per backbone, keys "pretrain_test_pilot" / "pretrain_test")
# --------------------------------------------------------------------------------------------
def pretrain_test_impl(key, n_batches, W0, S_hat, plan: Plan, num: dict):
    """Sums (and sums of squares) of the two pre-training test losses over ``n_batches`` batches
    of fresh sequences (M6; noisy and clean labels of S0*); ``key`` is the seed's
    "pretrain_test_pilot" or "pretrain_test" key (:func:`test_key`)."""
    batch = metrics.test_batch_size(plan.d, plan.T, plan.P0)
    kw = dict(T=plan.T, delta=num["delta"], **_opt_kw(plan, num))
    fn = lambda k: metrics.pretrain_test_losses(k, batch, W0, S_hat, **kw)  # noqa: E731
    return metrics.batched_moments(fn, key, n_batches)


def test_key(root_key, pilot: bool):
    return data.purpose_key(root_key, "pretrain_test_pilot" if pilot else "pretrain_test")


@partial(jax.jit, static_argnames=("plan", "keep_data"))
def pretrain_jit(root_key, num, plan, keep_data):
    return pretrain_impl(root_key, plan, num, keep_data)


@partial(jax.jit, static_argnames=("plan",))
def equivalent_jit(root_key, num, plan):
    return equivalent_impl(root_key, plan, num)


@partial(jax.jit, static_argnames=("plan",))
def pretrain_test_jit(key, n_batches, W0, S_hat, num, plan):
    return pretrain_test_impl(key, n_batches, W0, S_hat, plan, num)
