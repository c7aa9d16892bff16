"""Fine-tuning on reused pre-training sequences (MODEL.md M10, e = 1): the channel T34.

On a sequence the backbone was trained on, the frozen score is not the cavity score Ω but the
pre-training prox output Ĥ = Ω + V f (T7 at the pre-training fixed point): the leave-one-out
correction of an ERM on its own training sample. The fine-tuning teacher on that sequence is
H* + ζζᵀ − q0*I + ξ″ with H* the pre-training teacher score and ξ″ = ξ (the pre-training noise
realisation, ``reuse_noise = "same"``) or fresh noise of level Δ′ (``"fresh"``). So T34 is:

    draw (G1, G2, ξ) as in T6;  Ω = √Q G1,  H* = (M/√Q) G1 + √(Q0 − M²/Q) G2,  Y = σ(H* + ξ);
    Ĥ = prox of ‖u − Ω‖²/(2V) + ℓ(u; Y)  (pre-training loss, V = pre-training response);
    fine-tuning student  cĤ + zzᵀ − qI,  teacher  H* + ξ″ + ζζᵀ − q0*I,

and T28–T31 are used with (S_student, H_teacher) = (cĤ, H* + ξ″) in place of the fresh pair
(cB, aB + R + ξ′). Test errors stay on fresh sequences (T32, e = 0).

For linear σ the prox is explicit, Ĥ = (Ω + ν(H* + ξ))/(1 + ν), ν = 2V, the loss depends only on
H* + ξ″ − cĤ, which is GOE_T(Δ_eff,1) with T35's Δ_eff,1; the tests check this construction
against T35 (same second moment, Gaussian law). For softmax the pair is non-Gaussian; the
reported ``delta_eff_train`` is then the per-entry second moment of H* + ξ″ − cĤ (what replaces
the scalar: the whole law of the pair enters the channel).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from ..aot import cached_jit
from ..config import Config
from ..gaussian import goe, vec_to_sym
from ..pretraining.channel import draw_channel
from ..pretraining.output_prox import Attention, sym_prox
from ..states import PretrainState
from .noise import backbone_projection

__all__ = ["ReuseChannel", "reuse_channel", "residual_second_moment"]


class ReuseChannel(dict):
    """Arrays of T34, each (n, T, T): ``B_hat`` (Ĥ), ``H_star`` (H*), ``noise`` (ξ″); plus the
    fraction ``multimin`` of pre-training proxes with several minima."""


@cached_jit(static_argnames=("att",))
def _training_prox(att: Attention, omega, z, V):
    """The pre-training prox (T7) of the reused sequences, f and the multi-minimum fraction.
    Jitted (only σ static): called eagerly, every call traced and compiled its Newton loops
    anew (seconds per call, and a process kept every compiled program)."""
    r = sym_prox(att, omega, z, V)
    return r.f, jnp.mean(r.multimin)


def reuse_channel(cfg: Config, pre: PretrainState, key, n: int) -> ReuseChannel:
    """Draw n samples of (Ĥ, H*, ξ″) of T34 at the pre-training state ``pre`` (explicit key)."""
    if cfg.pretrain.estimator == "bayes":
        raise NotImplementedError(
            "finetune.reuse = true with pretrain.estimator = 'bayes': the posterior-mean backbone "
            "has no ERM prox on its training sequences (T34 is for ERM pre-training)")
    V = float(pre.V)
    zero = pre.Q == 0 and V == 0     # the exact Ŝ = 0 backbone: Ĥ = 0 on every sequence
    if not (math.isfinite(V) and (V > 0 or zero)):
        raise ValueError(f"reuse needs the pre-training response V > 0 or the zero backbone "
                         f"Q = V = 0 (got Q = {pre.Q}, V = {pre.V})")
    T = cfg.model.T
    k_ch, k_noise = jax.random.split(key)
    draws = draw_channel(key=k_ch, N=n, T=T, Delta=cfg.pretrain.delta)
    Q, M, Q0 = pre.Q, pre.M, pre.Q0
    a, sR2 = backbone_projection(float(Q), float(M), float(Q0))
    omega = math.sqrt(max(Q, 0.0)) * draws.g1
    hstar = a * omega + math.sqrt(sR2) * draws.g2     # (M/√Q) g1 + s g2; a zero backbone: s g2
    att = Attention(cfg.model.attention, cfg.model.beta)
    if zero:
        u, multimin = omega, 0.0
    else:
        f, multimin = _training_prox(att, omega, hstar + draws.xi, V)
        u = omega + V * f                    # Ĥ (f ⊥ 11ᵀ for softmax: Ω keeps its flat part)
    if cfg.finetune.reuse_noise == "same":
        noise = vec_to_sym(draws.xi, T)
    else:
        noise = goe(k_noise, (n,), T, cfg.delta_prime / 2.0)
    return ReuseChannel(B_hat=vec_to_sym(u, T), H_star=vec_to_sym(hstar, T), noise=noise,
                        multimin=float(multimin))


def residual_second_moment(ch: ReuseChannel, c: float) -> tuple[float, float]:
    """Per-entry second moment of H* + ξ″ − cĤ (GOE_T parameter for a Gaussian residual) and its
    MC standard error."""
    R = ch["H_star"] + ch["noise"] - c * ch["B_hat"]
    T = R.shape[-1]
    per = jnp.sum(R * R, axis=(-1, -2)) / (T * (T + 1))
    return float(jnp.mean(per)), float(jnp.std(per) / math.sqrt(per.shape[0]))
