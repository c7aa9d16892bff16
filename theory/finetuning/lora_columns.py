"""Column-wise (structure-of-arrays) prox objective and derivatives of the LoRA channel
(THEORY.md T29), for :func:`theory.prox.batched_newton` with ``columns = True``.

The per-sample problem is F(z) = |z − ω|²/(2v) + ℓ'(z; q), ℓ' = Σ_i |σ(M_i·) − Y_i·|²,
M = S + zzᵀ − qI (T28–T29; Y = σ(H* + ζζᵀ − q0 I) precomputed per sample). Here a batch of P
problems is held as z (T, P), ω (T, P), v and q (P,), S and Y (T, T, P), and every formula is
unrolled over the T coordinates at trace time, so each operation is elementwise on length-P
vectors: XLA:CPU fuses and vectorises them (at T = 3, N·S = 16000 problems, one core:
objective 0.24 against 0.6 ms and gradient + Hessian 0.44 against 1.9 ms for the vmapped
per-sample form of :func:`theory.finetuning.lora_channel._channel_fn`). The trace grows as T³
(compilation 0.7 s at T = 3, 6 s at T = 6, 50 s at T = 10), so the channel uses this form up to
:data:`theory.solver_constants.COLUMN_FORM_MAX_T` and the per-sample form above it.

Derivatives (the closed forms of the per-sample ``grad_hess``, with the softmax row Hessians
written in O(T²) per row): G = ∂ℓ'/∂M, ∇ℓ' = (G + Gᵀ)z,
∇²ℓ' = G + Gᵀ + diag(zᵀK⁽ᵃ⁾z) + [z_a (K⁽ᵃ⁾z)_b] + [z_b (K⁽ᵇ⁾z)_a] + Σ_i z_i² K⁽ⁱ⁾.
Softmax row i (p = softmax(βM_i·), r = p − y, w = r ⊙ p, s = Σ w, J = diag p − ppᵀ):
G_i· = 2β(w − s p) and K⁽ⁱ⁾ = 2β²[J² + Σ_k w_k (e_k − p)(e_k − p)ᵀ − sJ] with
(J²)_jl = δ_jl p_j² − p_j² p_l − p_j p_l² + |p|² p_j p_l and
Σ_k w_k (e_k − p)(e_k − p)ᵀ = diag w − w pᵀ − p wᵀ + s ppᵀ.
Linear σ: G = 2(M − Y), K⁽ⁱ⁾ = 2I, so ∇²ℓ' = G + Gᵀ + 4(|z|² I + zzᵀ).
"""

from __future__ import annotations

import jax.numpy as jnp

from ..columns import row_gradient, row_hessian, row_mixed, softmax_rows, total

__all__ = ["objective", "grad_hess", "hat_terms"]


def _rows(a, T):
    return [[a[i, j] for j in range(T)] for i in range(T)]


def _score(z, q, S, T):
    """M = S + zzᵀ − qI as nested lists of (P,) arrays."""
    return [[S[i][j] + z[i] * z[j] - (q if i == j else 0.0) for j in range(T)] for i in range(T)]


def objective(kind: str, beta: float):
    """F(z; p) of the batch, p = (ω, v, q, S, Y) column-wise (module docstring) -> (P,)."""
    def obj(z, p):
        omega, v, q, S, Y = p
        T = z.shape[0]
        M = _score(z, q, _rows(S, T), T)
        P = softmax_rows(M, beta, T) if kind == "softmax" else M
        loss = total((P[i][j] - Y[i, j]) ** 2 for i in range(T) for j in range(T))
        return total((z[a] - omega[a]) ** 2 for a in range(T)) / (2 * v) + loss
    return obj


def grad_hess(kind: str, beta: float):
    """(∇F (T, P), ∇²F (T, T, P)) of the batch (module docstring: the closed forms)."""
    def gh(z, p):
        omega, v, q, S, Y = p
        T = z.shape[0]
        r = range(T)
        zc = [z[a] for a in r]
        M = _score(zc, q, _rows(S, T), T)
        if kind == "softmax":
            P = softmax_rows(M, beta, T)
            W = [[(P[i][j] - Y[i, j]) * P[i][j] for j in r] for i in r]
            s = [total(W[i]) for i in r]
            G = [row_gradient(P[i], W[i], s[i], beta, T) for i in r]
            K = [row_hessian(P[i], W[i], s[i], beta, T) for i in r]
            Kz = [[total(K[i][j][l] * zc[l] for l in r) for j in r] for i in r]
            zKz = [total(Kz[i][j] * zc[j] for j in r) for i in r]
            zz = [zc[i] * zc[i] for i in r]

            def hess(a, b):
                h = G[a][b] + G[b][a] + zc[a] * Kz[a][b] + zc[b] * Kz[b][a] \
                    + total(zz[i] * K[i][a][b] for i in r)
                return h + 1.0 / v + zKz[a] if a == b else h
        else:
            G = [[2 * (M[i][j] - Y[i, j]) for j in r] for i in r]
            norm2 = total(zc[i] * zc[i] for i in r)

            def hess(a, b):
                h = G[a][b] + G[b][a] + 4 * zc[a] * zc[b]
                return h + 1.0 / v + 4 * norm2 if a == b else h
        g = [(zc[a] - omega[a]) / v + total((G[a][b] + G[b][a]) * zc[b] for b in r) for a in r]
        H = [[None] * T for _ in r]
        for a in r:
            for b in range(a, T):
                H[a][b] = H[b][a] = hess(a, b)
        return jnp.stack(g), jnp.stack([jnp.stack(row) for row in H])
    return gh


def hat_terms(kind: str, beta: float):
    """Per-sample ingredients of the hats (T30) at the prox minimisers z, column-wise: |f|²,
    f·ξ, f·η (f = (z − ω)/v), div_ω = (Tr H⁻¹/v − T)/v, div_ζ = −Tr(H⁻¹ ∂_ζ∇_zℓ')/v, ∂_qℓ',
    ℓ', F and the replicon term Σ(I − H⁻¹/v)² (H = ∇²F), for ``kind`` "softmax" or "linear"
    (the per-sample ``hats_one`` of :func:`theory.finetuning.lora_channel._channel_fn`, which
    takes ∂_ζ∇_zℓ' and ∂_qℓ' by autodiff; here in closed form). Y = σ(A), A = H* + ζζᵀ − q0 I,
    enters G through r = p − y, so ∂G_i·/∂A_i· = −2β² J_i J^Y_i (softmax; J^Y = diag y − yyᵀ)
    or −2 I (linear), and ∂A_i·/∂ζ_c = δ_ic ζ + ζ_i e_c; ∂_qℓ' = −Tr G.

    Arguments: z, ω, ζ, ξ, η (T, P); v, q scalars; S, Y (T, T, P). Returns a dict of (P,)."""
    from ..prox import sym_inverse

    gh = grad_hess(kind, beta)

    def terms(z, omega, v, q, S, Y, zeta, xi, eta):
        T = z.shape[0]
        r = range(T)
        zc, ze = [z[a] for a in r], [zeta[a] for a in r]
        M = _score(zc, q, _rows(S, T), T)
        if kind == "softmax":
            P = softmax_rows(M, beta, T)
            R = [[P[i][j] - Y[i, j] for j in r] for i in r]
            W = [[R[i][j] * P[i][j] for j in r] for i in r]
            s = [total(W[i]) for i in r]
            G = [row_gradient(P[i], W[i], s[i], beta, T) for i in r]
            # ∂G_i·/∂A_i· = −2β² N_i, N_i = J_i J^Y_i
            N = [row_mixed(P[i], [Y[i, j] for j in r], T) for i in r]
            scale = -2 * beta ** 2
        else:
            R = [[M[i][j] - Y[i, j] for j in r] for i in r]
            G = [[2 * R[i][j] for j in r] for i in r]
            N = [[[1.0 if j == l else 0.0 for l in r] for j in r] for _ in r]
            scale = -2.0
        Nz = [[total(N[i][j][l] * ze[l] for l in r) for j in r] for i in r]

        def dG(i, j, c):                    # ∂G_ij/∂ζ_c
            out = ze[i] * N[i][j][c]
            return scale * (out + Nz[i][j] if i == c else out)

        Jz = [[total((dG(a, b, c) + dG(b, a, c)) * zc[b] for b in r) for c in r] for a in r]
        _, H = gh(z, (omega, v, q, S, Y))
        Hinv = sym_inverse(H)
        f = [(zc[a] - omega[a]) / v for a in r]
        train = total(R[i][j] ** 2 for i in r for j in r)
        trace_inv = total(Hinv[a, a] for a in r)
        return dict(
            f2=total(f[a] * f[a] for a in r), fxi=total(f[a] * xi[a] for a in r),
            feta=total(f[a] * eta[a] for a in r), divw=(trace_inv / v - T) / v,
            divz=-total(Hinv[c, a] * Jz[a][c] for a in r for c in r) / v,
            dq=-total(G[i][i] for i in r), train=train,
            F=total((zc[a] - omega[a]) ** 2 for a in r) / (2 * v) + train,
            at=total(((1.0 if a == b else 0.0) - Hinv[a, b] / v) ** 2 for a in r for b in r))

    return terms
