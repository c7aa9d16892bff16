"""Order-parameter algebra of general LoRA u vᵀ (THEORY.md T33), numpy, outside jit.

x = (q_uu, q_uv, q_vv, m_u, m_v, V_uu, V_uv, V_vv) and its parts (Q, m, V); the lower Cholesky
factor L of the Gram matrix of (w*, u, v)/√d, from which the token fields are drawn
(:func:`factor`: finite where u ∥ v); the gauge balance |u| = |v| (:func:`balance`); the projection
of x on the domain of the map (:func:`sanitize`). Used by :mod:`.general_lora`.
"""

from __future__ import annotations

import math

import numpy as np

from ..solver_constants import PIVOT_FLOOR

__all__ = ["sym", "unpack", "pack", "factor", "from_factor", "balance", "sanitize"]


def sym(A):
    return 0.5 * (A + A.T)


def unpack(x):
    """x = (q_uu, q_uv, q_vv, m_u, m_v, V_uu, V_uv, V_vv) -> (Q, m, V)."""
    Q = np.array([[x[0], x[1]], [x[1], x[2]]])
    V = np.array([[x[5], x[6]], [x[6], x[7]]])
    return Q, np.array([x[3], x[4]]), V


def pack(Q, m, V):
    return np.array([Q[0, 0], Q[0, 1], Q[1, 1], m[0], m[1], V[0, 0], V[0, 1], V[1, 1]])


def factor(Q, m, q0) -> np.ndarray:
    """(T33) Lower-triangular L with L Lᵀ = G, the Gram matrix of (w*, u, v)/√d,
    G = [[q0*, m_u, m_v], [m_u, q_uu, q_uv], [m_v, q_uv, q_vv]]: the fields of a token are
    (ζ, ω, ν) = L (η, ξ₀, ξ₁) with η, ξ₀, ξ₁ iid N(0, 1). Pivots of a G that is not positive
    semi-definite are clamped at 0 (the projection used by :func:`sanitize`). Where u ∥ v (Q of
    rank one, as at the symmetric point, q_uv² = q_uu q_vv) the last pivot is 0 and every field is
    still finite: no Q^{-1/2} is taken (the square-root form ζ = μ·Ξ + s′η needs Q⁻¹ and breaks
    down on that boundary, where the general fixed point of linear attention sits)."""
    s = math.sqrt(q0)
    a1, b1 = float(m[0]) / s, float(m[1]) / s
    a2 = math.sqrt(max(float(Q[0, 0]) - a1 * a1, 0.0))
    b2 = (float(Q[0, 1]) - a1 * b1) / a2 if a2 > PIVOT_FLOOR else 0.0
    b3 = math.sqrt(max(float(Q[1, 1]) - b1 * b1 - b2 * b2, 0.0))
    return np.array([[s, 0.0, 0.0], [a1, a2, 0.0], [b1, b2, b3]])


def from_factor(L, V) -> np.ndarray:
    """x = (Q, m, V) of the Gram factor L (:func:`factor`)."""
    G = L @ L.T
    return pack(G[1:, 1:], G[0, 1:] / L[0, 0], V)


def balance(Q, m, V):
    """The point of the gauge orbit (u, v) → (cu, v/c) with q_uu = q_vv (T33: the penalty's
    stationarity along the orbit; every other term of the free energy is invariant on it):
    Q → DQD, m → Dm, V → DVD, D = diag(c, 1/c), c² = √(q_vv/q_uu). Unchanged where q_uu or
    q_vv is 0."""
    if not (Q[0, 0] > PIVOT_FLOOR and Q[1, 1] > PIVOT_FLOOR):
        return Q, m, V
    c = (Q[1, 1] / Q[0, 0]) ** 0.25
    D = np.array([c, 1.0 / c])
    return Q * np.outer(D, D), m * D, V * np.outer(D, D)


def sanitize(x, q0):
    """The Gram matrix of (w*, u, v) projected on the positive semi-definite cone (pivots of its
    Cholesky factor clamped at 0: :func:`factor`) and V on positive definite 2×2 matrices
    (eigenvalues ≥ 1e-12)."""
    Q, m, V = unpack(np.asarray(x, float))
    wv, Uv = np.linalg.eigh(sym(V))
    V = (Uv * np.maximum(wv, 1e-12)) @ Uv.T
    return unpack(from_factor(factor(Q, m, q0), V))
