"""Batched proximal solvers (THEORY.md T7, §3.2, §9 "Prox").

Two layers:

* **Generic core** (any small dimension n, any smooth objective): :func:`newton_minimize` minimises
  ``fun(x, args)`` over x ∈ Rⁿ for one problem by regularised Newton — the Hessian is factorised
  as L D Lᵀ with every pivot replaced by max(|D_j|, floor) (a modified Cholesky: it equals the
  Hessian where that is safely positive definite, and turns negative curvature into a descent
  direction, the "saddle-free" step) — with Armijo backtracking, a fixed iteration cap and a
  converged flag. :func:`multistart_minimize` runs several starts, keeps the lowest value and flags
  samples where two starts ended in distinct local minima. Both are written for one problem and
  are meant to be ``jax.vmap``-ed over samples (the while loops then run on the not-yet-converged
  subset by masking). The factorisation is unrolled at trace time (no per-matrix LAPACK call), which
  is what makes 10⁵ small Newton problems cheap on CPU. A T-dimensional vector prox (T29) can use
  these two functions unchanged with ``fun(z, p) = |z − ω|²/(2v) + ℓ'(z; p)``.

* **Sym_T output prox** (T7): :func:`sym_prox` solves, per sample,
  Ĥ = argmin_{H ∈ Sym_T} ‖H − Ω‖²_F/(2V) + ℓ(Y, H), ℓ = ‖σ(H) − Y‖²_F, Y = σ(Z), Z = H* + ξ,
  in Frobenius-orthonormal coordinates (:mod:`theory.gaussian`), with the starts of §3.2 / §9, and
  returns f = (Ĥ − Ω)/V, the loss, the traces needed by the derivative-form hats (T8), the
  multi-minimum flag and the residual gradient. σ is described by :class:`Attention`.

All functions are pure, float64 and jit/vmap-compatible.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from .gaussian import n_sym, sym_to_vec, vec_to_sym

__all__ = [
    "modified_ldl", "ldl_solve", "newton_minimize", "multistart_minimize", "NewtonResult",
    "MultiStartResult", "Attention", "SymProxResult", "sym_prox", "sym_loss_fn", "sym_loss_derivs", "sym_basis", "ones_direction",
]


# ==============================================================================================
# generic core
# ==============================================================================================
def modified_ldl(H: jax.Array, floor: jax.Array):
    """Modified L D Lᵀ factorisation of one symmetric n×n matrix (unrolled; vmap for batches).

    Every pivot D_j is replaced by max(|D_j|, floor) *before* it is used further, so
    L D̃ Lᵀ = H + E with E ≥ 0 diagonal, E = 0 when all pivots exceed ``floor`` (H is then
    factorised exactly). Returns (L, D̃, pd) where ``pd`` says whether every original pivot was
    > floor (H safely positive definite).
    """
    n = H.shape[-1]
    L = [[None] * n for _ in range(n)]
    D = [None] * n
    pd = jnp.asarray(True)
    for j in range(n):
        dj = H[j, j]
        for k in range(j):
            dj = dj - L[j][k] * L[j][k] * D[k]
        pd = pd & (dj > floor)
        D[j] = jnp.maximum(jnp.abs(dj), floor)
        L[j][j] = jnp.ones_like(dj)
        for i in range(j + 1, n):
            v = H[i, j]
            for k in range(j):
                v = v - L[i][k] * L[j][k] * D[k]
            L[i][j] = v / D[j]
    zero = jnp.zeros_like(D[0])
    Lm = jnp.stack([jnp.stack([L[i][j] if j <= i else zero for j in range(n)]) for i in range(n)])
    return Lm, jnp.stack(D), pd


def ldl_solve(L: jax.Array, D: jax.Array, b: jax.Array) -> jax.Array:
    """Solve (L diag(D) Lᵀ) x = b for one system (unrolled substitutions)."""
    n = D.shape[-1]
    y = [None] * n
    for i in range(n):
        v = b[i]
        for k in range(i):
            v = v - L[i, k] * y[k]
        y[i] = v
    x = [None] * n
    for i in reversed(range(n)):
        v = y[i] / D[i]
        for k in range(i + 1, n):
            v = v - L[k, i] * x[k]
        x[i] = v
    return jnp.stack(x)


class NewtonResult(NamedTuple):
    """One minimisation: the point, its value and gradient sup-norm, whether the gradient test
    passed, whether the Hessian there is positive definite, iterations used."""

    x: jax.Array
    value: jax.Array
    grad_norm: jax.Array
    converged: jax.Array
    hess_pd: jax.Array
    iterations: jax.Array


def newton_minimize(fun: Callable, x0: jax.Array, args, *, max_iter: int = 60, gtol: float = 1e-10,
                    floor_rel: float = 1e-8, armijo: float = 1e-4, max_backtrack: int = 40,
                    derivs: Callable | None = None) -> NewtonResult:
    """Regularised Newton + Armijo backtracking for one problem min_x fun(x, args), x ∈ Rⁿ.

    Gradient and Hessian by autodiff, or ``derivs(x, args) -> (g, H)`` when given. Step: d = −(L D̃ Lᵀ)⁻¹ g (:func:`modified_ldl`, pivot floor
    ``floor_rel``·(1 + max|H_jj|)); the step is halved until the Armijo condition holds. Stops when
    max|g| ≤ gtol·(1 + max|x|), when the line search cannot decrease ``fun`` any more (flat
    floating-point region; ``converged`` then tells whether the gradient test holds loosely,
    at 10³·gtol), or after ``max_iter`` steps. Under ``vmap`` the loop runs until every problem of
    the batch has stopped; stopped ones are frozen by masking.
    """
    if derivs is None:
        grad, hess = jax.grad(fun), jax.hessian(fun)
    else:
        grad = lambda x, a: derivs(x, a)[0]
        hess = lambda x, a: derivs(x, a)[1]

    def gtest(x, g, tol):
        return jnp.max(jnp.abs(g)) <= tol * (1.0 + jnp.max(jnp.abs(x)))

    def cond(s):
        return (~s["stop"]) & (s["it"] < max_iter)

    def body(s):
        x, f, g = s["x"], s["f"], s["g"]
        H = hess(x, args)
        floor = floor_rel * (1.0 + jnp.max(jnp.abs(jnp.diagonal(H))))
        L, D, _ = modified_ldl(H, floor)
        d = -ldl_solve(L, D, g)
        slope = jnp.dot(g, d)

        def ls_cond(c):
            t, k, fn = c
            return (fn > f + armijo * t * slope) & (k < max_backtrack)

        def ls_body(c):
            t, k, _ = c
            t = 0.5 * t
            return t, k + 1, fun(x + t * d, args)

        t, k, fn = lax.while_loop(ls_cond, ls_body, (jnp.asarray(1.0, x.dtype), 0, fun(x + d, args)))
        # Near the minimum the Newton decrement −slope reaches rounding level and Armijo cannot be
        # tested: take the full step there if it does not increase fun beyond rounding.
        tiny = -slope <= 1e-13 * (1.0 + jnp.abs(f))
        fn_full = fun(x + d, args)
        full = tiny & (fn_full <= f + 1e-14 * (1.0 + jnp.abs(f)))
        t = jnp.where(full, 1.0, t)
        fn = jnp.where(full, fn_full, fn)
        accept = full | (fn <= f + armijo * t * slope)
        x_new = jnp.where(accept, x + t * d, x)
        f_new = jnp.where(accept, fn, f)
        g_new = jnp.where(accept, grad(x_new, args), g)
        stop = gtest(x_new, g_new, gtol) | ~accept
        return dict(x=x_new, f=f_new, g=g_new, it=s["it"] + 1, stop=stop)

    f0 = fun(x0, args)
    g0 = grad(x0, args)
    init = dict(x=x0, f=f0, g=g0, it=jnp.asarray(0), stop=gtest(x0, g0, gtol))
    s = lax.while_loop(cond, body, init)
    H = hess(s["x"], args)
    floor = floor_rel * (1.0 + jnp.max(jnp.abs(jnp.diagonal(H))))
    _, _, pd = modified_ldl(H, floor)
    return NewtonResult(x=s["x"], value=s["f"], grad_norm=jnp.max(jnp.abs(s["g"])),
                        converged=gtest(s["x"], s["g"], 1e3 * gtol), hess_pd=pd, iterations=s["it"])


class MultiStartResult(NamedTuple):
    """Best of several starts: the kept minimiser (fields as :class:`NewtonResult`), the index of
    the start kept and whether ≥ 2 starts converged to distinct local minima (``multimin``)."""

    x: jax.Array
    value: jax.Array
    grad_norm: jax.Array
    converged: jax.Array
    hess_pd: jax.Array
    iterations: jax.Array
    best: jax.Array
    multimin: jax.Array


def multistart_minimize(fun: Callable, starts: jax.Array, args, *, dist_tol: float = 1e-5,
                        **newton_kw) -> MultiStartResult:
    """Run :func:`newton_minimize` from each row of ``starts`` (S, n); keep the lowest value among
    converged runs (among all runs if none converged). ``multimin``: two converged runs with a
    positive-definite Hessian end more than ``dist_tol``·(1 + max|x|) apart (sup norm)."""
    res = jax.vmap(lambda x0: newton_minimize(fun, x0, args, **newton_kw))(starts)
    ok = res.converged
    vals = jnp.where(ok, res.value, jnp.inf)
    vals = jnp.where(jnp.any(ok), vals, res.value)
    i = jnp.argmin(vals)
    x = res.x[i]
    good = ok & res.hess_pd
    dx = jnp.max(jnp.abs(res.x - x[None, :]), axis=-1)
    distinct = good & good[i] & (dx > dist_tol * (1.0 + jnp.max(jnp.abs(x))))
    return MultiStartResult(x=x, value=res.value[i], grad_norm=res.grad_norm[i],
                            converged=res.converged[i], hess_pd=res.hess_pd[i],
                            iterations=jnp.max(res.iterations), best=i, multimin=jnp.any(distinct))


# ==============================================================================================
# Sym_T output prox (T7)
# ==============================================================================================
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
             cold: bool = True, max_iter: int = 60, gtol: float = 1e-10, dist_tol: float = 1e-5
             ) -> SymProxResult:
    """Batched output prox (T7) over N samples, in Frobenius coordinates.

    ``omega``: (N, K) cavity scores Ω; ``z``: (N, K) noisy teacher scores H* + ξ (Y = σ(Z));
    ``V`` > 0 scalar; ``warm``: optional (N, K) extra starts (e.g. Ω + V f_previous);
    ``cold=False`` uses the warm start only (cheap inner iterations of a fixed point; ``multimin``
    is then always False).

    Starts (§3.2, §9): Ω; the interpolating point Ω + P_⊥(Ẑ − Ω) with Ẑ = σ⁻¹(Y) (ℓ = 0 there;
    P_⊥ removes the 11ᵀ component for softmax, where ℓ is flat); the linearised prox
    Ω + t P_⊥(Ẑ − Ω), t = 2Vc²/(1 + 2Vc²), c = β/T the slope of softmax at 0 (c = 1 linear: exact
    there); and ``warm``. The lowest objective is kept. For softmax f is projected on 11ᵀ⊥
    afterwards (it is ⊥ 11ᵀ up to rounding because ∇ℓ ⊥ 11ᵀ; :func:`theory.pretraining.general`
    checks the size of the removed part).
    """
    N, K = omega.shape
    T = int(round((math.sqrt(8 * K + 1) - 1) / 2))
    assert n_sym(T) == K
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

    res = jax.vmap(lambda s0, om, zz: multistart_minimize(
        obj, s0, (om, zz), dist_tol=dist_tol, max_iter=max_iter, gtol=gtol,
        derivs=obj_derivs))(starts, omega, z)
    u = res.x
    f = (u - omega) / V
    f_par = f @ e1  # component along 11ᵀ: 0 up to rounding for softmax (∇ℓ ⊥ 11ᵀ)
    if att.flat:
        f = perp(f)

    def traces(uu, zz):
        A = eye + V * l_gh(uu, zz)[1]  # V × Hessian of the prox objective
        floor = 1e-12 * (1.0 + jnp.max(jnp.abs(jnp.diagonal(A))))
        L, D, _ = modified_ldl(A, floor)
        inv = jax.vmap(lambda b: ldl_solve(L, D, b))(eye)  # rows of A⁻¹ (A symmetric)
        B = l_mix(uu, zz)
        return jnp.trace(inv), jnp.sum(inv * B.T)

    tr_inv, tr_mix = jax.vmap(traces)(u, z)
    lval = jax.vmap(loss)(u, z)
    return SymProxResult(u=u, f=f, loss=lval, value=res.value, tr_inv=tr_inv, tr_mix=tr_mix,
                         multimin=res.multimin, converged=res.converged, grad_norm=res.grad_norm,
                         best=res.best, iterations=res.iterations, f_par=f_par)
