"""Column-wise building blocks (THEORY.md §9 "Prox"): per-sample quantities held as nested lists
of length-P vectors, one per coordinate, unrolled at trace time so that every operation is
elementwise on the problem axis (:func:`theory.prox.batched_newton` with ``columns = True``).
Shared by the LoRA channel (:mod:`theory.finetuning.lora_columns`, T29–T30) and the pre-training
output prox (:mod:`theory.pretraining.output_columns`, T7–T8).

Softmax rows (p = softmax(βh), y the teacher row, r = p − y, w = r ⊙ p, s = Σ w,
J = diag p − ppᵀ): ∂ℓ_row/∂h = 2β(w − s p) (:func:`row_gradient`),
∂²ℓ_row/∂h² = 2β²[J² + diag w − wpᵀ − pwᵀ + s ppᵀ − sJ] with J² = diag p² − p²pᵀ − p(p²)ᵀ + |p|²ppᵀ
(:func:`row_hessian`), and ∂(∂ℓ_row/∂h)/∂a = −2β² J J^Y when y = softmax(βa), J^Y = diag y − yyᵀ
(:func:`row_mixed`, the matrix J J^Y).
"""

from __future__ import annotations

import jax.numpy as jnp

__all__ = ["total", "softmax_rows", "row_gradient", "row_hessian", "row_mixed"]


def total(terms):
    """Sum of an iterable of arrays (no zero start: the first term's shape is kept)."""
    it = iter(terms)
    out = next(it)
    for t in it:
        out = out + t
    return out


def softmax_rows(M, beta, T: int):
    """Row-wise softmax(β M_i·) of a T × T nested list (max-shifted)."""
    out = []
    for i in range(T):
        m = M[i][0]
        for j in range(1, T):
            m = jnp.maximum(m, M[i][j])
        e = [jnp.exp(beta * (M[i][j] - m)) for j in range(T)]
        norm = total(e)
        out.append([x / norm for x in e])
    return out


def row_gradient(p, w, s, beta, T: int):
    """2β(w − s p): ∂ℓ_row/∂h of one softmax row (module docstring)."""
    return [2 * beta * (w[j] - p[j] * s) for j in range(T)]


def row_hessian(p, w, s, beta, T: int):
    """2β²[J² + diag w − wpᵀ − pwᵀ + s ppᵀ − sJ] of one softmax row, a symmetric T × T list."""
    p2 = total(p[j] * p[j] for j in range(T))
    K = [[None] * T for _ in range(T)]
    for j in range(T):
        for l in range(j, T):
            pp = p[j] * p[l]
            val = (p2 + 2 * s) * pp - p[j] * pp - pp * p[l] - w[j] * p[l] - p[j] * w[l]
            if j == l:
                val = val + p[j] * p[j] + w[j] - s * p[j]
            K[j][l] = K[l][j] = 2 * beta ** 2 * val
    return K


def row_mixed(p, y, T: int):
    """J J^Y of one row (J = diag p − ppᵀ, J^Y = diag y − yyᵀ): entry [j][l] =
    p_j (δ_jl y_j − y_j y_l − p_l y_l + (p·y) y_l)."""
    py = total(p[k] * y[k] for k in range(T))
    return [[p[j] * ((y[j] if j == l else 0.0) - y[j] * y[l] - p[l] * y[l] + py * y[l])
             for l in range(T)] for j in range(T)]
