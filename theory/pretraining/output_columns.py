"""Column-wise form of the pre-training output prox's loss and derivatives (THEORY.md T7–T8,
§3.2), for :func:`theory.prox.batched_newton` with ``columns = True`` (used by
:func:`theory.pretraining.output_prox.sym_prox` for T ≤
:data:`theory.solver_constants.COLUMN_FORM_MAX_T`).

ℓ(u, z) = ‖σ(H(u)) − σ(Z(z))‖²_F with H, Z given by their K_T = T(T+1)/2 Frobenius coordinates
(:func:`theory.gaussian.sym_to_vec`: H_aa = u_k, H_ab = H_ba = u_k/√2 for a < b). A batch of P
problems is held as u, z (K, P); every formula is unrolled over the coordinates (:mod:`theory.columns`).
The matrix derivatives are those of :func:`theory.pretraining.output_prox.sym_loss_derivs`, row by
row: Γ_a· = ∂ℓ/∂H_a· (:func:`theory.columns.row_gradient`), the row Hessians
(:func:`theory.columns.row_hessian`) and ∂_{z_a}∇_{h_a}ℓ = −2β² J(p)J(y) (:func:`theory.columns.row_mixed`);
a coordinate k = (a, b) collects the entries (a, b) and (b, a) with weight 1/√2 (one entry (a, a)
with weight 1 on the diagonal), so ∂ℓ/∂u_k = Σ_entries c Γ_ij and
∂²ℓ/∂u_k∂u_l = Σ_{(i,j,c) ∈ k} Σ_{(i,j',c') ∈ l} c c' (row i's Hessian)_jj' (rows independent).
Softmax only: for linear σ (∇ = 2(u − z), ∇² = 2I) the per-sample form is as fast.
"""

from __future__ import annotations

import math

import numpy as np

from ..columns import row_gradient, row_hessian, row_mixed, softmax_rows, total

__all__ = ["coordinates", "loss", "derivatives"]

_R2 = 1.0 / math.sqrt(2.0)


def coordinates(T: int) -> list:
    """Per coordinate k (the order of :func:`theory.gaussian.sym_to_vec`): its matrix entries
    [(i, j, weight)]."""
    out = []
    for a, b in zip(*np.triu_indices(T)):
        a, b = int(a), int(b)
        out.append([(a, a, 1.0)] if a == b else [(a, b, _R2), (b, a, _R2)])
    return out


def _matrix(u, T: int):
    H = [[None] * T for _ in range(T)]
    for k, entries in enumerate(coordinates(T)):
        for i, j, c in entries:
            H[i][j] = u[k] if c == 1.0 else u[k] * c
    return H


def _to_coordinates(rows, T: int):
    """A (T, T, T) per-row tensor rows[i][j][j'] -> the K × K coordinate matrix."""
    C = coordinates(T)
    zero = 0.0 * rows[0][0][0]

    def entry(k, l):                        # coordinates on no common row: 0
        terms = [c * c2 * rows[i][j][j2] for i, j, c in C[k] for i2, j2, c2 in C[l] if i2 == i]
        return total(terms) if terms else zero

    return [[entry(k, l) for l in range(len(C))] for k in range(len(C))]


def loss(beta: float, T: int):
    """ℓ(u, z) of the batch (u, z: K-lists or (K, P) arrays), softmax σ -> (P,)."""
    def ell(u, z):
        H, Z = softmax_rows(_matrix(u, T), beta, T), softmax_rows(_matrix(z, T), beta, T)
        return total((H[i][j] - Z[i][j]) ** 2 for i in range(T) for j in range(T))
    return ell


def derivatives(beta: float, T: int):
    """(u, z) -> (∇_uℓ as a K-list, ∇²_uℓ and ∂_z∇_uℓ as K × K nested lists) of the batch,
    softmax σ."""
    C = coordinates(T)
    K = len(C)

    def derivs(u, z):
        P = softmax_rows(_matrix(u, T), beta, T)
        Y = softmax_rows(_matrix(z, T), beta, T)
        W = [[(P[i][j] - Y[i][j]) * P[i][j] for j in range(T)] for i in range(T)]
        s = [total(W[i]) for i in range(T)]
        G = [row_gradient(P[i], W[i], s[i], beta, T) for i in range(T)]
        hess = _to_coordinates([row_hessian(P[i], W[i], s[i], beta, T) for i in range(T)], T)
        mixed = _to_coordinates([[[-2 * beta ** 2 * x for x in row] for row in row_mixed(P[i], Y[i], T)]
                                 for i in range(T)], T)
        g = [total(c * G[i][j] for i, j, c in C[k]) for k in range(K)]
        return g, hess, mixed

    return derivs
