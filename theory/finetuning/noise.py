"""Effective noise left by pre-training, and the frozen-model baseline (THEORY.md §4, §6, §7).

Public API
----------
``resolve_c(cfg, pre)``            recalibration c of the frozen backbone (M11).
``delta_eff(cfg, pre, c)``         Δ_eff(c) = Δ'/2 + Q0 − 2cM + c²Q on fresh sequences (T25).
``delta_eff_train(cfg, pre, c)``   effective noise on the sequences the LoRA is trained on:
                                   fresh → Δ_eff (T25); reuse → Δ_eff,1 (T35, linear σ);
                                   selection ``smallest_score`` → Δ_sel(c, ρ) (T37).
``selection_m2(K, rho)``           m₂(ρ) = F_{K+2}(t_ρ)/ρ, t_ρ = F_K⁻¹(ρ) (T37).
``baseline_error(cfg, pre, c)``    test error of the frozen model (w = 0, λ' → ∞, T27):
                                   ``(value, clean, mc_err, mc_err_clean)``.

Derivations (checked, see the module tests):
* T25: Y' − cB − spike = (M/Q − c)B + R + ξ' with B ~ GOE_T(Q), R ~ GOE_T(Q0 − M²/Q), ξ' ~ GOE_T(Δ'/2)
  independent ⇒ GOE parameter (M/Q − c)²Q + Q0 − M²/Q + Δ'/2 = Δ'/2 + Q0 − 2cM + c²Q.
* T35 (square-loss pre-training, ν = 2V): Ĥ = (Ω + ν(H* + ξ))/(1 + ν) so the reused residual is
  [k(H* + ξ) − cΩ]/(1 + ν) (same noise) or [kH* − cΩ − cνξ]/(1 + ν) + ξ' (fresh noise),
  k = 1 + ν(1 − c).
* T37: r² = ‖B‖²_F/(2Q) ~ χ²_K and x f_K(x) = K f_{K+2}(x) ⇒ E[r²; r² ≤ t]/K = F_{K+2}(t).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from ..config import Config
from ..gaussian import goe, memoize_by_key, seed_key
from ..states import PretrainState
from . import selection

__all__ = ["backbone_projection", "resolve_c", "delta_eff", "delta_eff_train", "selection_m2",
           "baseline_error", "attention_fn"]


def backbone_projection(Q, M, Q0):
    """(a, s_R²) of the teacher's pre-trained part on the backbone's output (T25): h(X; S0*) =
    a·h(X; Ŝ) + R with a = M/Q and R independent of variance s_R² = Q0 − M²/Q (floored at 0).
    A zero backbone (Q = 0, hence M = 0 as M² ≤ Q·Q0) is the limit a = 0, s_R² = Q0. Works on
    floats and on traced jax scalars (no division by a zero Q in either)."""
    if isinstance(Q, (int, float)):
        if Q > 0:
            return M / Q, max(Q0 - M * M / Q, 0.0)
        return 0.0, max(float(Q0), 0.0)
    positive = Q > 0
    safe = jnp.where(positive, Q, 1.0)
    a = jnp.where(positive, M / safe, 0.0)
    return a, jnp.maximum(jnp.where(positive, Q0 - M * M / safe, Q0), 0.0)


def resolve_c(cfg: Config, pre: PretrainState) -> float:
    """Recalibration c (M11): a number as given, ``"optimal"`` → M/Q (the minimiser of Δ_eff(c),
    T25). ``"learned"`` is solved with the fixed point (``lora.solve_learned_c``)."""
    rc = cfg.finetune.recalibrate
    if isinstance(rc, str):
        if rc == "optimal":
            if pre.Q <= 0:
                raise ValueError(f"recalibrate = 'optimal' needs Q > 0 (got Q = {pre.Q})")
            return float(pre.M / pre.Q)
        raise NotImplementedError(
            "finetune.recalibrate = 'learned' has no closed-form c: it is the minimiser of the "
            "fixed-point objective over c (theory.finetuning.lora.solve_learned_c, symmetric "
            "LoRA); resolve_c only handles a number or 'optimal'")
    return float(rc)


def delta_eff(cfg: Config, pre: PretrainState, c: float) -> float:
    """(T25) Δ_eff(c) = Δ'/2 + Q0 − 2cM + c²Q: GOE parameter of the residual on fresh sequences."""
    return float(cfg.delta_prime / 2 + pre.Q0 - 2 * c * pre.M + c * c * pre.Q)


selection_m2 = selection.smallest_score_m2    # (T37) closed form, kept under its old name


def _check_selection(cfg: Config) -> None:
    rule = cfg.finetune.selection
    if rule not in selection.RULES:
        raise NotImplementedError(
            f"finetune.selection = {rule!r}: the theory implements the B-measurable rules "
            f"{', '.join(selection.RULES)} (T36, theory/finetuning/selection.py)")


def selection_operating_point(cfg: Config, pre: PretrainState, c: float) -> tuple[float, object]:
    """(scale, beta) with which a rule scores a unit-GOE draw: the student's frozen operating
    point c·B, B ~ GOE_T(Q), and β (None for linear attention)."""
    beta = None if cfg.model.attention == "linear" else cfg.model.beta
    return c * math.sqrt(max(pre.Q, 0.0)), beta


def delta_eff_train(cfg: Config, pre: PretrainState, c: float) -> float:
    """Effective noise on the training sequences of the LoRA.

    fresh, random selection: Δ_eff(c) (T25). A selection rule with kept fraction ρ:
    Δ_sel = Δ'/2 + Q0 − M²/Q + (M/Q − c)² Q m₂(ρ) (T37; m₂ in closed form for ``smallest_score``,
    by MC over the selected law for the other rules; for softmax this is the second moment of
    the residual only, the channel itself uses B_sel, T36). Reuse of a fraction e (M10):
    e Δ_eff,1 + (1 − e) Δ_eff (:func:`delta_eff_reused`; the channel is an average over sequences).
    """
    ft = cfg.finetune
    if cfg.reuse_e > 0:
        e = cfg.reuse_e
        return float(e * delta_eff_reused(cfg, pre, c) + (1 - e) * delta_eff(cfg, pre, c))
    _check_selection(cfg)
    scale, beta = selection_operating_point(cfg, pre, c)
    if cfg.rho >= 1.0 or selection.is_random(ft.selection, beta):
        return delta_eff(cfg, pre, c)
    m2 = selection.selection_m2(ft.selection, cfg.model.T, cfg.rho, scale=scale, beta=beta)
    a, _ = backbone_projection(float(pre.Q), float(pre.M), float(pre.Q0))
    return float(cfg.delta_prime / 2 + pre.Q0 - a * pre.M + (a - c) ** 2 * pre.Q * m2)


def delta_eff_reused(cfg: Config, pre: PretrainState, c: float) -> float:
    """Δ_eff,1 (T35): the effective noise on a reused sequence (linear σ, square-loss backbone,
    ν = 2V): same noise [k²(Q0 + Δ/2) − 2kcM + c²Q]/(1+ν)², fresh noise
    [k²Q0 − 2kcM + c²Q + c²ν²Δ/2]/(1+ν)² + Δ'/2, k = 1 + ν(1 − c)."""
    ft = cfg.finetune
    if cfg.model.attention != "linear":
        raise NotImplementedError(
            "finetune.reuse = true with softmax attention: no closed form; the non-Gaussian "
            "channel T34 is drawn by theory.finetuning.reuse (residual_second_moment gives "
            "the per-entry second moment that replaces this scalar)")
    nu = 2.0 * pre.V
    if not math.isfinite(nu) or nu < 0:
        raise ValueError(f"reuse needs the pre-training response V >= 0 (got V = {pre.V})")
    k = 1.0 + nu * (1.0 - c)
    D = cfg.pretrain.delta
    if ft.reuse_noise == "same":
        return float((k * k * (pre.Q0 + D / 2) - 2 * k * c * pre.M + c * c * pre.Q)
                     / (1 + nu) ** 2)
    return float((k * k * pre.Q0 - 2 * k * c * pre.M + c * c * pre.Q + c * c * nu * nu * D / 2)
                 / (1 + nu) ** 2 + cfg.delta_prime / 2)


def attention_fn(cfg: Config):
    """σ of (M3) acting on the last two axes: identity or row-wise softmax(β·)."""
    if cfg.model.attention == "linear":
        return lambda H: H
    beta = cfg.model.beta
    return lambda H: jax.nn.softmax(beta * H, axis=-1)


def baseline_error(cfg: Config, pre: PretrainState, c: float, *, key=None):
    """(T27) Test error of the frozen model (w = 0): ``(value, clean, mc_err, mc_err_clean)``.

    Linear: T(T+1)(Δ_eff(c) + q0*²), clean = that − T(T+1)Δ'/2 (closed form, mc_err = 0).
    Softmax: E‖σ(cB) − σ((M/Q)B + R + ζζᵀ − q0*I + ξ')‖²_F over frozen draws
    (N = mc_samples·mc_repeats, key from cfg.theory.seed unless given), with its standard error.
    """
    T = cfg.model.T
    q0 = cfg.finetune.q0star
    if cfg.model.attention == "linear":
        val = T * (T + 1) * (delta_eff(cfg, pre, c) + q0 * q0)
        return float(val), float(val - T * (T + 1) * cfg.delta_prime / 2), 0.0, 0.0
    if key is None:
        key = jax.random.fold_in(seed_key(cfg.theory.seed), 7)
    n = cfg.theory.mc_samples * cfg.theory.mc_repeats
    v, vc = _baseline_softmax(key, n, T, cfg.model.beta, c, pre.Q, pre.M, pre.Q0, q0,
                              cfg.delta_prime)
    v, vc = np.asarray(v), np.asarray(vc)
    return (float(v.mean()), float(vc.mean()), float(v.std(ddof=1) / math.sqrt(n)),
            float(vc.std(ddof=1) / math.sqrt(n)))


@jax.jit
def _baseline_softmax_impl(key, beta, c, Q, M, Q0, q0, dp, zeros):
    n, T = zeros.shape
    kB, kR, kx, kz = jax.random.split(key, 4)
    a, sR2 = backbone_projection(Q, M, Q0)
    B = goe(kB, (n,), T, Q)
    R = goe(kR, (n,), T, sR2)
    xi = goe(kx, (n,), T, dp / 2)
    zeta = jnp.sqrt(q0) * jax.random.normal(kz, (n, T))
    spike = zeta[:, :, None] * zeta[:, None, :] - q0 * jnp.eye(T)
    sm = lambda H: jax.nn.softmax(beta * H, axis=-1)
    P = sm(c * B)
    tea = a * B + R + spike
    err = jnp.sum((P - sm(tea + xi)) ** 2, axis=(-1, -2))
    err_c = jnp.sum((P - sm(tea)) ** 2, axis=(-1, -2))
    return err, err_c


def _baseline_softmax(key, n, T, beta, c, Q, M, Q0, q0, dp):
    """The per-sample errors as read-only numpy arrays, memoised by the arguments (a curve along
    α′ or λ′ asks for the same baseline at every point)."""
    return _baseline_softmax_memo(key, n, T, *(float(t) for t in (beta, c, Q, M, Q0, q0, dp)))


@memoize_by_key(maxsize=32)
def _baseline_softmax_memo(key, n, T, beta, c, Q, M, Q0, q0, dp):
    err, err_c = _baseline_softmax_impl(key, beta, c, Q, M, Q0, q0, dp, jnp.zeros((n, T)))
    err, err_c = np.asarray(err), np.asarray(err_c)
    err.flags.writeable = err_c.flags.writeable = False
    return err, err_c
