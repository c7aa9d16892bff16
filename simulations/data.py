"""Data of the two-stage problem (MODEL.md M1, M5, M6, M9, M10, M13).

Everything here is a pure function of explicit ``key=`` arguments. Shapes: a batch of sequences
is ``X: (n, T, d)``; scores and attention matrices are ``(n, T, T)``.

Labels. A label is ``y = A* X`` (values output, M4) or ``y = A*`` (attention output), with the
target attention ``A* = σ(h(X;S*) + ξ)``. Since the values label is a deterministic function of
(X, A*), the datasets store ``A_target`` and the loss uses the exact identity
``(1/d)‖A X − A* X‖²_F = Tr[(A − A*) G (A − A*)ᵀ]``, ``G = X Xᵀ/d`` (THEORY T5);
:func:`values_labels` returns the full ``y`` when it is wanted.

Selection rules (M13). A rule scores a pool sequence through its frozen operating point c·B,
``B = h(X; S_hat)``; the pool keeps the ``n'`` sequences with the *smallest* scores (stable order,
so ties keep pool order). The rules live in ``theory/finetuning/selection.py`` (one implementation
for simulation and theory); to add one, write it there and add its name to
``theory.config.SELECTION_RULES``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from theory.finetuning import selection
from theory.gaussian import goe

from . import model

__all__ = [
    "PURPOSES", "purpose_key", "sequences", "score_noise", "teacher_factor", "spike",
    "PretrainData", "FinetuneData", "pretrain_data", "finetune_data", "values_labels",
    "select",
]

# Every random draw of one seed has its own purpose; keys are derived by fold_in with the index,
# so no key is ever used twice and adding a purpose at the end changes nothing else.
PURPOSES = (
    "teacher", "pretrain_X", "pretrain_noise", "pretrain_init", "spike", "finetune_X",
    "finetune_noise", "pool_X", "lora_init", "test_pilot", "test", "surrogate_noise",
    "backbone_R", "pretrain_test_pilot", "pretrain_test",
)


def purpose_key(seed_key: jax.Array, purpose: str) -> jax.Array:
    """The key of one purpose (see :data:`PURPOSES`) derived from a seed's root key."""
    return jax.random.fold_in(seed_key, PURPOSES.index(purpose))


# --------------------------------------------------------------------------------------------
# primitives
# --------------------------------------------------------------------------------------------
def sequences(key: jax.Array, n: int, T: int, d: int) -> jax.Array:
    """(M1) ``n`` sequences X ∈ R^{T×d} with i.i.d. N(0, 1) entries: shape (n, T, d)."""
    return jax.random.normal(key, (n, T, d), dtype=jnp.float64)


def score_noise(key: jax.Array, n: int, T: int, delta: float) -> jax.Array:
    """(M6) score noise ξ ∈ Sym(T), var ξ_ab = Δ/(2 − δ_ab), i.e. GOE_T(Δ/2): shape (n, T, T)."""
    return goe(key, (n,), T, variance=delta / 2.0)


def teacher_factor(key: jax.Array, d: int, P0: int) -> jax.Array:
    """(M5) W0 ∈ R^{d×P0} i.i.d. N(0, 1); the teacher is S0* = W0 W0ᵀ/√(P0 d)."""
    return jax.random.normal(key, (d, P0), dtype=jnp.float64)


def spike(key: jax.Array, d: int, q0star: float) -> jax.Array:
    """(M9) w*: a uniformly random direction normalised exactly to |w*|² = q0*·d."""
    g = jax.random.normal(key, (d,), dtype=jnp.float64)
    return g * jnp.sqrt(q0star * d) / jnp.linalg.norm(g)


def values_labels(X: jax.Array, A_target: jax.Array) -> jax.Array:
    """(M4) values-output labels y = A* X, shape (n, T, d)."""
    return A_target @ X


# --------------------------------------------------------------------------------------------
# datasets
# --------------------------------------------------------------------------------------------
class PretrainData(NamedTuple):
    """Pre-training set (M5–M6): sequences, their noise, teacher scores and target attention."""

    X: jax.Array          # (n, T, d)
    noise: jax.Array      # (n, T, T)  ξ_μ
    h_teacher: jax.Array  # (n, T, T)  h(X_μ; S0*)
    A_target: jax.Array   # (n, T, T)  σ(h + ξ)


class FinetuneData(NamedTuple):
    """Fine-tuning set (M9–M10, M13): the labelled sequences and what the metrics need."""

    X: jax.Array          # (n', T, d)
    noise: jax.Array      # (n', T, T)  ξ'_μ (or the surrogate residual, see below)
    h_base: jax.Array     # (n', T, T)  h(X; S0*)  (the part of the teacher score from pre-training)
    B: jax.Array          # (n', T, T)  frozen score h(X; Ŝ)
    A_target: jax.Array   # (n', T, T)  σ(h(X; S1*) + ξ')
    index: jax.Array      # (n',) int   which pre-training sequences (reuse) / pool rows (selection)


def pretrain_data(key_X, key_noise, W0, *, n: int, T: int, delta: float, attention: str,
                  beta: float) -> PretrainData:
    """(M1, M5, M6) ``n`` labelled pre-training sequences of the teacher S0* = W0 W0ᵀ/√(P0 d)."""
    d = W0.shape[0]
    X = sequences(key_X, n, T, d)
    noise = score_noise(key_noise, n, T, delta)
    h_teacher = model.score_factor(X, W0)
    A_target = model.attention(h_teacher + noise, attention, beta)
    return PretrainData(X, noise, h_teacher, A_target)


def finetune_data(X, noise, h_base, B, w_star, *, attention: str, beta: float,
                  index=None) -> FinetuneData:
    """(M9) Relabel sequences X by S1* = S0* + w*w*ᵀ/√d: A' = σ(h(S0*) + ζζᵀ − q0*·I + ξ').

    ``h_base = h(X;S0*)`` and ``B = h(X;Ŝ)`` are passed in (already computed by the caller, e.g.
    reused from pre-training, M10). ``noise`` is ξ' (score noise, M6, at level Δ').
    """
    h_spike = model.score_rank_one(X, w_star)
    A_target = model.attention(h_base + h_spike + noise, attention, beta)
    if index is None:
        index = jnp.arange(X.shape[0])
    return FinetuneData(X, noise, h_base, B, A_target, index)


# --------------------------------------------------------------------------------------------
# active selection (M13)
# --------------------------------------------------------------------------------------------
def select(rule: str, X: jax.Array, S_hat: jax.Array, B: jax.Array, n_keep: int, *,
           c: float = 1.0, beta: float | None = None) -> jax.Array:
    """(M13) Indices (sorted by score, stable) of the ``n_keep`` pool sequences with the smallest
    rule score. The rules are those of ``theory/finetuning/selection.py`` (one implementation for
    simulation and theory); they see a sequence through its frozen operating point c·B,
    B = h(X;Ŝ); ``beta`` is the softmax inverse temperature (None: linear attention)."""
    if rule not in selection.RULES:
        raise ValueError(f"selection rule {rule!r} is not implemented; known: "
                         f"{', '.join(selection.RULES)} (theory/finetuning/selection.py)")
    scores = selection.score(rule, c * B, beta)
    return jnp.argsort(scores, stable=True)[:n_keep]
