"""The pre-training output prox on Sym_T (THEORY.md T7, §3.2, §9 "Prox"), solved by the one
batched Newton core :mod:`theory.prox`.

:func:`sym_prox` solves, per sample,
Ĥ = argmin_{H ∈ Sym_T} ‖H − Ω‖²_F/(2V) + ℓ(Y, H), ℓ = ‖σ(H) − Y‖²_F, Y = σ(Z), Z = H* + ξ,
in Frobenius-orthonormal coordinates (:mod:`theory.gaussian`), with the starts of §3.2 / §9, and
returns f = (Ĥ − Ω)/V, the loss, the traces needed by the derivative-form hats (T8), the
multi-minimum flag and the residual gradient. σ is described by :class:`Attention`; the analytic
derivatives of ℓ are :func:`sym_loss_derivs`. Used by the general-σ pre-training channel
(:mod:`theory.pretraining.channel`) and the reused-sequence channel (T34,
:mod:`theory.finetuning.reuse`). Pure, float64, jit/vmap-compatible.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from ..gaussian import n_sym, sym_to_vec, vec_to_sym
from ..columns import total
from ..prox import multistart_prox, sym_inverse
from ..solver_constants import COLUMN_FORM_MAX_T, PROX_GTOL
from . import output_columns

__all__ = ["Attention", "ones_direction", "sym_basis", "sym_loss_fn", "sym_loss_derivs",
           "SymProxResult", "sym_prox"]


@dataclass(frozen=True)
class Attention:
    """σ of (M3): row softmax(β·) (``kind="softmax"``) or the identity (``"linear"``).

    Hashable (frozen), so it can be a static argument of jitted functions.
    """

    kind: str = "softmax"
    beta: float = 1.0

    def __post_init__(self):
        if self.kind not in ("softmax", "linear"):
            raise ValueError(f"Attention.kind = {self.kind!r}: must be 'softmax' or 'linear'")

    @property
    def flat(self) -> bool:
        """Whether ℓ is flat along 11ᵀ (softmax: σ(H + c11ᵀ) = σ(H), §3.2)."""
        return self.kind == "softmax"

    def sigma(self, H: jax.Array) -> jax.Array:
        """σ(H) over the last two axes."""
        if self.kind == "linear":
            return H
        return jax.nn.softmax(self.beta * H, axis=-1)

    def inverse_perp(self, Y: jax.Array) -> jax.Array:
        """A symmetric representative of σ⁻¹(Y) (T21), projected orthogonally to 11ᵀ for softmax.

        Softmax: log Y_ab = βZ_ab − c_a with Z symmetric, so L = log(Y)/β = Z − r1ᵀ (r = c/β).
        Antisymmetry of L − Lᵀ = 1rᵀ − r1ᵀ gives r (up to a constant) as the row mean of Lᵀ − L:
        (1/T)Σ_b (L_ba − L_ab) = r_a − r̄. Then Z = sym(L + r1ᵀ) (exact for exact Y; the
        least-squares symmetric fit otherwise) and the 11ᵀ component, not identifiable, is removed.
        """
        if self.kind == "linear":
            return Y
        T = Y.shape[-1]
        L = jnp.log(jnp.clip(Y, 1e-300)) / self.beta
        r = jnp.mean(jnp.swapaxes(L, -1, -2) - L, axis=-1)
        Z = L + r[..., :, None]
        Z = 0.5 * (Z + jnp.swapaxes(Z, -1, -2))
        return Z - jnp.mean(Z, axis=(-1, -2), keepdims=True) * jnp.ones((T, T))


def ones_direction(T: int) -> jax.Array:
    """Unit vector of 11ᵀ/T in Frobenius coordinates (the flat direction of softmax, §3.2)."""
    return sym_to_vec(jnp.ones((T, T)) / T)


def sym_basis(T: int) -> jax.Array:
    """(K_T, T, T) Frobenius-orthonormal basis of Sym_T: H = Σ_k u_k E_k (same coordinates as
    :func:`theory.gaussian.sym_to_vec`). A dense contraction is much cheaper to differentiate
    under vmap than the scatter in :func:`theory.gaussian.vec_to_sym`."""
    return vec_to_sym(jnp.eye(n_sym(T)), T)


def sym_loss_fn(att: Attention, T: int) -> Callable:
    """ℓ(u, z) = ‖σ(H(u)) − σ(Z(z))‖²_F with H, Z given by Frobenius coordinates (T7, M4)."""
    E = sym_basis(T)

    def loss(u, z):
        H = jnp.tensordot(u, E, axes=1)
        Z = jnp.tensordot(z, E, axes=1)
        return jnp.sum((att.sigma(H) - att.sigma(Z)) ** 2)

    return loss


def sym_loss_derivs(att: Attention, T: int) -> tuple[Callable, Callable]:
    """Analytic derivatives of ℓ(u, z) = ‖σ(H) − σ(Z)‖²_F in Frobenius coordinates (§3.2).

    Returns ``(grad_hess, mixed)``: ``grad_hess(u, z) -> (∇_uℓ, ∇²_uℓ)`` and
    ``mixed(u, z) -> ∂_z∇_uℓ`` (K×K). Softmax, row by row with p = softmax(βh), y = softmax(βz),
    r = p − y, J(p) = β(diag p − ppᵀ) (symmetric): ∇_hℓ_a = 2J(p)r, i.e. the matrix gradient
    Γ_ab = 2βP_ab[R_ab − Σ_c P_ac R_ac] of §3.2; ∇²_hℓ_a = 2J² + 2β²[diag w − wpᵀ − pwᵀ + s ppᵀ
    − s(diag p − ppᵀ)] with w = r∘p, s = Σw (from ∂²p_c = β²p_c[(e_c − p)(e_c − p)ᵀ − (diag p − ppᵀ)]);
    ∂_{z_a}∇_{h_a}ℓ = −2J(p)J(y). The T row blocks are mapped to coordinates by the basis E_k.
    Linear: ∇ = 2(u − z), ∇² = 2I, mixed = −2I. About 10× cheaper than ``jax.hessian`` under vmap.
    """
    K = n_sym(T)
    E = sym_basis(T)
    eye = jnp.eye(K)

    if not att.flat:
        def grad_hess(u, z):
            return 2.0 * (u - z), 2.0 * eye.astype(u.dtype)

        def mixed(u, z):
            return -2.0 * eye.astype(u.dtype)

        return grad_hess, mixed

    beta = att.beta
    eyeT = jnp.eye(T)
    # constant maps from row blocks to coordinates: one small GEMM per batch under vmap
    Cg = E.reshape(K, T * T).T                                           # (T², K)
    CH = jnp.einsum("kab,lac->abckl", E, E).reshape(T ** 3, K * K)       # (T³, K²)

    def jac(p):  # (T, T) rows -> (T, T, T) J per row
        return beta * (p[:, :, None] * eyeT[None] - p[:, :, None] * p[:, None, :])

    def grad_hess(u, z):
        P = att.sigma(jnp.tensordot(u, E, axes=1))
        Y = att.sigma(jnp.tensordot(z, E, axes=1))
        R = P - Y
        J = jac(P)
        G = 2.0 * jnp.einsum("abc,ac->ab", J, R)
        w = R * P
        s = jnp.sum(w, axis=-1)
        outer = lambda x, y: x[:, :, None] * y[:, None, :]
        Hrow = (2.0 * jnp.einsum("abc,acd->abd", J, J)
                + 2.0 * beta ** 2 * (w[:, :, None] * eyeT[None] - outer(w, P) - outer(P, w)
                                     + s[:, None, None] * outer(P, P))
                - 2.0 * beta * s[:, None, None] * J)
        return G.reshape(-1) @ Cg, (Hrow.reshape(-1) @ CH).reshape(K, K)

    def mixed(u, z):
        P = att.sigma(jnp.tensordot(u, E, axes=1))
        Y = att.sigma(jnp.tensordot(z, E, axes=1))
        Brow = -2.0 * jnp.einsum("abc,acd->abd", jac(P), jac(Y))
        return (Brow.reshape(-1) @ CH).reshape(K, K)

    return grad_hess, mixed


def _column_functions(att: Attention, T: int, V):
    """The prox objective F(u) = |u − Ω|²/(2V) + ℓ(u, z) and (∇F, ∇²F) of a batch held
    column-wise (u, Ω, z: (K, P)), with ℓ and its derivatives (:mod:`.output_columns`)."""
    K = n_sym(T)
    ell = output_columns.loss(att.beta, T)           # softmax (att.flat; sym_prox)
    der = output_columns.derivatives(att.beta, T)

    def obj(u, p):
        om, zz = p
        return total((u[k] - om[k]) ** 2 for k in range(K)) / (2.0 * V) + ell(u, zz)

    def grad_hess(u, p):
        om, zz = p
        g, H, _ = der(u, zz)
        return (jnp.stack([(u[k] - om[k]) / V + g[k] for k in range(K)]),
                jnp.stack([jnp.stack([H[k][l] + (1.0 / V if k == l else 0.0)
                                      for l in range(K)]) for k in range(K)]))

    return obj, grad_hess, ell, der


class SymProxResult(NamedTuple):
    """Per-sample output of :func:`sym_prox` (coordinates are Frobenius, shape (N, K_T)).

    ``u``: Ĥ; ``f``: (Ĥ − Ω)/V; ``loss``: ℓ(Y, Ĥ); ``value``: the prox objective at Ĥ;
    ``tr_inv``: Tr (I + V∇²ℓ)⁻¹ (so div_Ω f = (tr_inv − K)/V); ``tr_mix``: Tr[(I + V∇²ℓ)⁻¹ B]
    with B = ∂_z∇_uℓ (so div_{H*} f = −tr_mix); ``multimin``, ``converged``, ``grad_norm``
    (sup-norm of the prox gradient at Ĥ), ``best`` (index of the start kept), ``iterations``,
    ``f_par`` (component of f along the unit vector of 11ᵀ before the softmax projection).
    """

    u: jax.Array
    f: jax.Array
    loss: jax.Array
    value: jax.Array
    tr_inv: jax.Array
    tr_mix: jax.Array
    multimin: jax.Array
    converged: jax.Array
    grad_norm: jax.Array
    best: jax.Array
    iterations: jax.Array
    f_par: jax.Array


def sym_prox(att: Attention, omega: jax.Array, z: jax.Array, V, *, warm: jax.Array | None = None,
             cold: bool = True, max_iter: int = 60, gtol: float = PROX_GTOL, dist_tol: float = 1e-5
             ) -> SymProxResult:
    """Batched output prox (T7) over N samples, in Frobenius coordinates.

    ``omega``: (N, K) cavity scores Ω; ``z``: (N, K) noisy teacher scores H* + ξ (Y = σ(Z));
    ``V`` > 0 scalar; ``warm``: optional (N, K) extra starts (e.g. Ω + V f_previous);
    ``cold=False`` uses the warm start only (cheap inner iterations of a fixed point; ``multimin``
    is then always False).

    Starts (§3.2, §9): Ω; the interpolating point Ω + P_⊥(Ẑ − Ω) with Ẑ = σ⁻¹(Y) (ℓ = 0 there;
    P_⊥ removes the 11ᵀ component for softmax, where ℓ is flat); the linearised prox
    Ω + t P_⊥(Ẑ − Ω), t = 2Vc²/(1 + 2Vc²), c = β/T the slope of softmax at 0 (c = 1 linear: exact
    there); and ``warm``. All samples × starts are one batch of :func:`theory.prox.multistart_prox`
    (saddle-free L D Lᵀ Newton, straggler compaction); the lowest objective is kept. For softmax
    f is projected on 11ᵀ⊥ afterwards (it is ⊥ 11ᵀ up to rounding because ∇ℓ ⊥ 11ᵀ; the
    pre-training channel reports the size of the removed part). The traces of T8 use the exact
    inverse of A = I + V∇²ℓ at Ĥ (:func:`theory.prox.sym_inverse`).
    """
    N, K = omega.shape
    T = int(round((math.sqrt(8 * K + 1) - 1) / 2))
    if n_sym(T) != K:
        raise ValueError(f"sym_prox: omega has {K} coordinates, not T(T+1)/2 for an integer T")
    loss = sym_loss_fn(att, T)
    V = jnp.asarray(V, dtype=omega.dtype)
    l_gh, l_mix = sym_loss_derivs(att, T)
    eye = jnp.eye(K, dtype=omega.dtype)

    def obj(u, p):
        om, zz = p
        return jnp.sum((u - om) ** 2) / (2.0 * V) + loss(u, zz)

    def obj_derivs(u, p):
        om, zz = p
        g, H = l_gh(u, zz)
        return (u - om) / V + g, eye / V + H

    zhat = sym_to_vec(att.inverse_perp(att.sigma(vec_to_sym(z, T))))
    e1 = ones_direction(T)
    if att.flat:
        perp = lambda x: x - (x @ e1)[:, None] * e1[None, :]
        c2 = (att.beta / T) ** 2
    else:
        perp = lambda x: x
        c2 = 1.0
    step = perp(zhat - omega)
    t = 2.0 * V * c2 / (1.0 + 2.0 * V * c2)
    starts = [omega, omega + step, omega + t * step] if cold else []
    if warm is not None:
        starts.append(warm)
    if not starts:
        raise ValueError("sym_prox: cold=False needs a warm start")
    starts = jnp.stack(starts, axis=1)  # (N, S, K)

    # softmax, T ≤ COLUMN_FORM_MAX_T: the same prox column-wise (output_columns): 192 → 101 ms per
    # cold and 18 → 6 ms per warm call at N = 4000, T = 3 (one core); linear: no gain (its ℓ is
    # quadratic), the per-sample form
    columns = att.flat and T <= COLUMN_FORM_MAX_T
    if columns:
        obj_c, gh_c, ell_c, der_c = _column_functions(att, T, V)
        res = multistart_prox(obj_c, starts, (omega, z), max_iter=max_iter, gtol=gtol,
                              dist_tol=dist_tol, grad_hess=gh_c, columns=True)
    else:
        res = multistart_prox(obj, starts, (omega, z), max_iter=max_iter, gtol=gtol,
                              dist_tol=dist_tol, grad_hess=obj_derivs)
    u = res["z"]
    f = (u - omega) / V
    f_par = f @ e1  # component along 11ᵀ: 0 up to rounding for softmax (∇ℓ ⊥ 11ᵀ)
    if att.flat:
        f = perp(f)

    def at_minimum(uu, om, zz):
        g, Hobj = obj_derivs(uu, (om, zz))
        inv = sym_inverse(V * Hobj)          # (I + V∇²ℓ)⁻¹, PD at a local minimum
        return (jnp.max(jnp.abs(g)), jnp.trace(inv), jnp.sum(inv * l_mix(uu, zz).T),
                loss(uu, zz))

    if columns:
        uc, zc = u.T, z.T
        g, Hobj = gh_c(uc, (omega.T, zc))
        inv = sym_inverse(V * Hobj)          # (K, K, N)
        mixed = der_c(uc, zc)[2]
        grad_norm = jnp.max(jnp.abs(g), axis=0)
        tr_inv = total(inv[k, k] for k in range(K))
        tr_mix = total(inv[k, l] * mixed[l][k] for k in range(K) for l in range(K))
        lval = ell_c(uc, zc)
    else:
        grad_norm, tr_inv, tr_mix, lval = jax.vmap(at_minimum)(u, omega, z)
    return SymProxResult(u=u, f=f, loss=lval, value=res["f"], tr_inv=tr_inv, tr_mix=tr_mix,
                         multimin=res["multimin"], converged=res["converged"],
                         grad_norm=grad_norm, best=res["best"], iterations=res["iters"],
                         f_par=f_par)
