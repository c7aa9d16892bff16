"""The attention layer at finite d (MODEL.md M2–M4, M11, M12).

Scores are centred, ``h(X;S) = (X S Xᵀ − Tr(S)·I_T)/√d`` (M2), and computed from factors where
possible so that nothing d×d is formed per sequence:

* ``S = W Wᵀ/√(P d)`` (teacher M5, factorized student M7): ``h = [(XW)(XW)ᵀ/√(Pd) − Tr(S) I]/√d``
  with ``Tr S = ‖W‖²_F/√(Pd)`` — cost O(T d P) per sequence;
* rank one ``w wᵀ/√d`` (M9, M11): ``h = ωωᵀ − (|w|²/d) I`` with ``ω = X w/√d`` — O(T d);
* general ``u vᵀ/√d`` (M12): ``h = ωνᵀ − (u·v/d) I``, ``ν = X v/√d`` (not symmetric);
* a dense symmetric S (``direct`` estimator): ``(X S Xᵀ − Tr S I)/√d`` — O(T d²).

Attention (M3) is row-wise ``softmax(β h)`` or the identity; the output (M4) is ``A X`` (values)
or ``A``. The per-sample loss is computed from T×T quantities only:
values ``(1/d)‖A X − A* X‖²_F = Tr[(A − A*) G (A − A*)ᵀ]`` with ``G = X Xᵀ/d``; attention
``‖A − A*‖²_F``.

Fine-tuning student (M11, M12): ``S = c Ŝ + w wᵀ/√d`` or ``c Ŝ + u vᵀ/√d``; its score is
``c B + h_LoRA`` with the frozen score ``B = h(X; Ŝ)`` precomputed once. LoRA parameters are a dict
``{"w"}`` or ``{"u", "v"}``, plus ``"c"`` when the recalibration is learned.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = [
    "score_dense", "score_factor", "score_rank_one", "score_general", "score_adjoint",
    "attention", "gram", "per_sample_loss", "lora_score", "lora_penalty", "recalibration",
]


def score_dense(X: jax.Array, S: jax.Array) -> jax.Array:
    """(M2) h(X;S) for a dense symmetric d×d S; X: (..., T, d) -> (..., T, T)."""
    d = X.shape[-1]
    T = X.shape[-2]
    XSXt = jnp.einsum("...ai,ij,...bj->...ab", X, S, X)
    return (XSXt - jnp.trace(S) * jnp.eye(T, dtype=X.dtype)) / jnp.sqrt(d)


def score_factor(X: jax.Array, W: jax.Array) -> jax.Array:
    """(M2) h(X;S) for S = W Wᵀ/√(P d), W: (d, P), without forming S."""
    d, P = W.shape
    T = X.shape[-2]
    norm = jnp.sqrt(P * d)
    XW = X @ W
    trace_S = jnp.sum(W * W) / norm
    XSXt = jnp.einsum("...ap,...bp->...ab", XW, XW) / norm
    return (XSXt - trace_S * jnp.eye(T, dtype=X.dtype)) / jnp.sqrt(d)


def score_rank_one(X: jax.Array, w: jax.Array) -> jax.Array:
    """(M2, M9, M11) h(X; w wᵀ/√d) = ωωᵀ − (|w|²/d) I with ω = X w/√d."""
    d = X.shape[-1]
    T = X.shape[-2]
    omega = X @ w / jnp.sqrt(d)
    return omega[..., :, None] * omega[..., None, :] - (w @ w / d) * jnp.eye(T, dtype=X.dtype)


def score_general(X: jax.Array, u: jax.Array, v: jax.Array) -> jax.Array:
    """(M2, M12) h(X; u vᵀ/√d) = ωνᵀ − (u·v/d) I with ω = Xu/√d, ν = Xv/√d (not symmetric)."""
    d = X.shape[-1]
    T = X.shape[-2]
    omega = X @ u / jnp.sqrt(d)
    nu = X @ v / jnp.sqrt(d)
    return omega[..., :, None] * nu[..., None, :] - (u @ v / d) * jnp.eye(T, dtype=X.dtype)


def score_adjoint(X: jax.Array, E: jax.Array) -> jax.Array:
    """Adjoint of S ↦ h(X;S) summed over the batch: Σ_μ (X_μᵀ E_μ X_μ − Tr(E_μ) I)/√d (d×d).

    For symmetric S, ⟨E, h(X;S)⟩_F = ⟨score_adjoint(X, E), S⟩_F (symmetrise the result when E is
    not symmetric)."""
    d = X.shape[-1]
    XtEX = jnp.einsum("nai,nab,nbj->ij", X, E, X)
    trace_E = jnp.sum(jnp.trace(E, axis1=-2, axis2=-1))
    return (XtEX - trace_E * jnp.eye(d, dtype=X.dtype)) / jnp.sqrt(d)


def attention(H: jax.Array, kind: str, beta: float) -> jax.Array:
    """(M3) σ(H): row-wise softmax(β H) (``"softmax"``) or the identity (``"linear"``)."""
    if kind == "softmax":
        return jax.nn.softmax(beta * H, axis=-1)
    if kind == "linear":
        return H
    raise ValueError(f"model.attention = {kind!r}: must be 'softmax' or 'linear'")


def gram(X: jax.Array) -> jax.Array:
    """G = X Xᵀ/d, (..., T, T)."""
    return jnp.einsum("...ai,...bi->...ab", X, X) / X.shape[-1]


def per_sample_loss(A: jax.Array, A_target: jax.Array, G: jax.Array, output: str) -> jax.Array:
    """(M4) ℓ per sequence: values Tr[(A − A*) G (A − A*)ᵀ] = (1/d)‖AX − A*X‖²_F;
    attention ‖A − A*‖²_F. Shapes (..., T, T) -> (...)."""
    D = A - A_target
    if output == "values":
        return jnp.einsum("...ab,...bc,...ac->...", D, G, D)
    if output == "attention":
        return jnp.sum(D * D, axis=(-1, -2))
    raise ValueError(f"model.output = {output!r}: must be 'values' or 'attention'")


def lora_score(params: dict, X: jax.Array, B: jax.Array, c) -> jax.Array:
    """(M11, M12) student score c·B + h_LoRA; ``c`` is used unless ``params`` holds a learned "c"."""
    c = params.get("c", c)
    if "w" in params:
        return c * B + score_rank_one(X, params["w"])
    return c * B + score_general(X, params["u"], params["v"])


def lora_penalty(params: dict, lam: float) -> jax.Array:
    """(M11) λ'|w|², (M12) λ'(|u|² + |v|²)/2; a learned c is not penalised."""
    if "w" in params:
        return lam * params["w"] @ params["w"]
    return 0.5 * lam * (params["u"] @ params["u"] + params["v"] @ params["v"])


def recalibration(recalibrate, M, Q):
    """(M11) The backbone scale c: a number, ``"optimal"`` → M/Q (realised matrices, an oracle),
    ``"learned"`` → its initial value 1 (then trained jointly with w)."""
    if recalibrate == "optimal":
        return M / Q
    if recalibrate == "learned":
        return jnp.ones_like(M)
    return jnp.asarray(float(recalibrate), dtype=jnp.float64) + 0.0 * M
