"""The one batched Newton / multistart prox core of hdlora (THEORY.md T7, T29, §9 "Prox").

Every per-sample proximal problem of the theory — the LoRA channels' T-dimensional prox (T29, T33)
and the pre-training Sym_T output prox (T7, :mod:`theory.pretraining.output_prox`, also used on
reused sequences, T34) — is solved here:

ẑ_i = argmin_z F(z; p_i) for every problem i of a batch (F possibly non-convex).

All samples × starts are solved at once (:func:`batched_newton`): one ``lax.while_loop`` over the
whole batch. Each step is a saddle-free Newton step — the Hessian factorised as L D Lᵀ with every
pivot replaced by max(|D_j|, floor) (:func:`modified_ldl`, a modified Cholesky: it equals the
Hessian where that is safely positive definite and turns negative curvature into a descent
direction), step length capped — with an Armijo line search evaluated on a fixed ladder of step
sizes in parallel (and the full step where the Newton decrement is at rounding level and F
does not increase beyond rounding). Straggler compaction keeps the cost near the median problem's: the batch runs
a few steps, then the problems still running are gathered a fraction at a time into a
static-shape buffer and finished. :func:`multistart_prox` keeps the lowest F among the starts and
flags samples where two starts converged to distinct local minima (the prox may jump, §9).
The factorisations are unrolled at trace time (elementwise jnp only; batched LAPACK inside loops
was slow and was seen to hang on XLA:CPU), which is what makes 10⁵ small Newton problems cheap.
Pure, float64; ``obj(z, p)`` is a scalar function of z ∈ Rⁿ and a pytree p of per-problem
parameters; ``grad_hess(z, p) -> (∇F, ∇²F)`` supplies analytic derivatives.

(Until issue 13 there were two engines: a per-problem vmapped ``newton_minimize`` with halving
line searches, used by the pre-training, and this one; the vmapped one ran every sample as many
Newton steps as the slowest, and was removed.)
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from .solver_constants import PROX_GTOL

__all__ = ["modified_ldl", "ldl_solve", "sym_inverse", "jacobi_eigh", "batched_newton",
           "multistart_prox"]


def modified_ldl(H: jax.Array, floor: jax.Array):
    """Modified L D Lᵀ factorisation of one symmetric n×n matrix (unrolled; vmap for batches),
    or of a batch held column-wise, H (n, n, P) with ``floor`` (P,) (elementwise on the last axis).

    Every pivot D_j is replaced by max(|D_j|, floor) *before* it is used further, so
    L D̃ Lᵀ = H + E with E ≥ 0 diagonal, E = 0 when all pivots exceed ``floor`` (H is then
    factorised exactly). Returns (L, D̃, pd) where ``pd`` says whether every original pivot was
    > floor (H safely positive definite).
    """
    n = H.shape[0]
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
    """Solve (L diag(D) Lᵀ) x = b for one system (unrolled substitutions), or for a batch held
    column-wise (L (n, n, P), D and b (n, P))."""
    n = D.shape[0]
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


_LADDER = 0.3 ** np.arange(0, 8)   # numpy: a constant, whatever the trace context


def jacobi_eigh(A, sweeps: int = 6):
    """Eigen-decomposition of a batch of small symmetric matrices (..., T, T) by cyclic Jacobi
    rotations: returns (eigenvalues ascending, eigenvectors as columns)."""
    T = A.shape[-1]
    V = jnp.broadcast_to(jnp.eye(T, dtype=A.dtype), A.shape)
    pairs = [(p, q) for p in range(T) for q in range(p + 1, T)]

    def sweep(_, AV):
        A, V = AV
        for p, q in pairs:
            apq = A[..., p, q]
            app, aqq = A[..., p, p], A[..., q, q]
            small = jnp.abs(apq) <= 1e-300 + 1e-15 * (jnp.abs(app) + jnp.abs(aqq)) * 1e-3
            theta = (aqq - app) / (2.0 * jnp.where(small, 1.0, apq))
            t = jnp.sign(theta) / (jnp.abs(theta) + jnp.sqrt(theta * theta + 1.0))
            t = jnp.where(theta == 0, 1.0, t)
            t = jnp.where(small, 0.0, t)
            c = 1.0 / jnp.sqrt(t * t + 1.0)
            s = t * c
            # A <- Jᵀ A J and V <- V J, J the (p, q) rotation, written elementwise
            cp, cq = A[..., :, p], A[..., :, q]
            A = A.at[..., :, p].set(c[..., None] * cp - s[..., None] * cq)
            A = A.at[..., :, q].set(s[..., None] * cp + c[..., None] * cq)
            rp, rq = A[..., p, :], A[..., q, :]
            A = A.at[..., p, :].set(c[..., None] * rp - s[..., None] * rq)
            A = A.at[..., q, :].set(s[..., None] * rp + c[..., None] * rq)
            vp, vq = V[..., :, p], V[..., :, q]
            V = V.at[..., :, p].set(c[..., None] * vp - s[..., None] * vq)
            V = V.at[..., :, q].set(s[..., None] * vp + c[..., None] * vq)
        return A, V

    A, V = lax.fori_loop(0, sweeps, sweep, (A, V))
    lam = jnp.diagonal(A, axis1=-2, axis2=-1)
    order = jnp.argsort(lam, axis=-1)
    lam = jnp.take_along_axis(lam, order, axis=-1)
    V = jnp.take_along_axis(V, order[..., None, :], axis=-1)
    return lam, V


def sym_inverse(A):
    """Exact inverse of one small symmetric non-singular matrix by an unrolled (unpivoted,
    signed) L D Lᵀ elimination: elementwise jnp operations only (vmap for batches). Same value
    as U diag(1/λ) Uᵀ from :func:`jacobi_eigh` (indefinite matrices included), without the
    rotations. A batch held column-wise, A (n, n, P), is inverted elementwise on its last axis."""
    n = A.shape[0]
    L = [[None] * n for _ in range(n)]
    D = [None] * n
    for j in range(n):
        dj = A[j, j]
        for k in range(j):
            dj = dj - L[j][k] * L[j][k] * D[k]
        D[j] = dj
        for i in range(j + 1, n):
            v = A[i, j]
            for k in range(j):
                v = v - L[i][k] * L[j][k] * D[k]
            L[i][j] = v / dj
    cols = []
    for c in range(n):                       # solve A x = e_c
        y = [None] * n
        for i in range(n):
            v = jnp.asarray(1.0 if i == c else 0.0, A.dtype)
            for k in range(i):
                v = v - L[i][k] * y[k]
            y[i] = v
        x = [None] * n
        for i in reversed(range(n)):
            v = y[i] / D[i]
            for k in range(i + 1, n):
                v = v - L[k][i] * x[k]
            x[i] = v
        cols.append(jnp.stack(x))
    return jnp.stack(cols, axis=1)          # [i, c] (…): x of column c; (n, n) or (n, n, P)


def batched_newton(obj, z0, p, *, max_iter: int = 40, gtol: float = PROX_GTOL,
                   eig_floor: float = 1e-10, grad_hess=None, first_iter: int = 8,
                   straggler_fraction: float = 1 / 16, factor: str = "ldl",
                   columns: bool = False):
    """Minimise ``obj(z_i, p_i)`` for every problem i of the batch (z0: (P, T)).

    Returns dict z, f, converged, nonpd_path (Hessian not PD at some iterate), pd_end,
    iters. ``grad_hess(z, p) -> (g, H)`` (per problem) supplies analytic derivatives.

    ``columns``: the batch is stored column-wise (structure of arrays): z0 is (T, P), every leaf
    of ``p`` has the problem axis last, and ``obj(z, p) -> (P,)`` and ``grad_hess(z, p) ->
    ((T, P), (T, T, P))`` (required) act on the whole batch — e.g. unrolled over the T
    coordinates, so that every operation is elementwise on length-P vectors, which XLA:CPU
    vectorises (2–4× faster than the vmapped per-problem form at T = 3,
    :mod:`theory.finetuning.lora_columns`). The L D Lᵀ factorisation then runs on the batch
    directly (``factor = "ldl"`` only), and z is returned as (T, P). Same steps, same tests.

    ``factor``: the saddle-free direction from a modified L D Lᵀ (``"ldl"``, default: pivots
    |D_j| floored; 3× cheaper per step than the eigen-decomposition at T = 3, same minimisers)
    or from the Jacobi eigen-decomposition (``"eigh"``: eigenvalues |λ| floored); both flag a
    Hessian that is not positive definite (``nonpd_path``).

    Line search: Armijo on the full Newton step first; the backtracking ladder (t = 0.3^k,
    k < 8, the first accepted t taken) is evaluated only in the steps where an active problem
    rejects the full step (same accepted steps as always evaluating it; near convergence, e.g.
    a warm-started polish, a step then costs one objective evaluation instead of eight).

    Straggler compaction: a vectorised loop costs as many steps as its slowest problem, while
    most problems converge in a few (median 3–4 Newton steps at T = 3, 99th percentile ~9, a
    tail of ~20). So the whole batch runs ``first_iter`` steps, then the problems still running
    are gathered K = ⌈P·straggler_fraction⌉ at a time into a fixed-size buffer (shapes stay
    static) that is iterated up to ``max_iter`` steps in all and scattered back. Each problem
    takes exactly the steps it would take alone; ``iters`` is the number of steps of the longest
    problem."""
    if columns:
        if grad_hess is None or factor != "ldl":
            raise ValueError("columns = True needs grad_hess and factor = 'ldl'")
        gh, fv = grad_hess, obj
    elif grad_hess is None:
        gh = jax.vmap(lambda z, p: (jax.grad(obj)(z, p), jax.hessian(obj)(z, p)))
    else:
        gh = jax.vmap(grad_hess)
    if not columns:
        fv = jax.vmap(obj)
    # the layout: ``ax`` is z's coordinate axis; ``per`` broadcasts a per-problem (P,) array
    # against z; ``take`` / ``put`` gather / scatter problems
    ax = 0 if columns else -1
    per = (lambda a: a[None]) if columns else (lambda a: a[:, None])
    take = (lambda a, idx: a[..., idx]) if columns else (lambda a, idx: a[idx])
    put = (lambda a, idx, v: a.at[..., idx].set(v)) if columns else \
        (lambda a, idx, v: a.at[idx].set(v))

    def direction(z, p):
        g, H = gh(z, p)
        hax = (0, 1) if columns else (-1, -2)
        finite = jnp.all(jnp.isfinite(H), axis=hax) & jnp.all(jnp.isfinite(g), axis=ax)
        eye = jnp.eye(z.shape[ax])
        H = jnp.where(finite, H, eye[:, :, None]) if columns else \
            jnp.where(finite[:, None, None], H, eye)
        g = jnp.where(per(finite), g, 0.0)
        if factor == "ldl":
            # modified L D Lᵀ (pivots |D_j| floored): the same saddle-free descent idea, an
            # order cheaper than the Jacobi eigen-decomposition for K = T(T+1)/2 coordinates;
            # column-wise it runs on the batch as it is (elementwise on the problem axis)
            diag = jnp.diagonal(H, axis1=hax[0], axis2=hax[1])         # (P, T) either way
            floor = eig_floor * (1.0 + jnp.max(jnp.abs(diag), -1))
            if columns:
                L, D, pd = modified_ldl(H, floor)
                d = -ldl_solve(L, D, g)
            else:
                L, D, pd = jax.vmap(modified_ldl)(H, floor)
                d = -jax.vmap(ldl_solve)(L, D, g)
            lam0 = jnp.where(pd, 1.0, -1.0)
        else:
            lam, U = jacobi_eigh(H)
            scale = jnp.maximum(jnp.abs(lam), eig_floor * (1.0 + jnp.max(jnp.abs(lam), -1,
                                                                           keepdims=True)))
            d = -jnp.einsum("pij,pj->pi", U, jnp.einsum("pji,pj->pi", U, g) / scale)
            lam0 = lam[:, 0]
        dmax = 10.0 * (1.0 + jnp.linalg.norm(z, axis=ax))
        d = d * per(jnp.minimum(1.0, dmax / (jnp.linalg.norm(d, axis=ax) + 1e-300)))
        return g, d, lam0, finite

    def iterate(s, p, n_iter):
        """Newton steps on every not-done problem of ``s`` until all are done or n_iter."""
        def cond(c):
            return jnp.any(~c["done"]) & (c["it"] < n_iter)

        def body(c):
            z = c["z"]
            g, d, lmin, finite = direction(z, p)
            gnorm = jnp.max(jnp.abs(g), ax)
            conv = gnorm <= gtol * (1.0 + jnp.max(jnp.abs(z), ax))
            f0 = fv(z, p)
            slope = jnp.sum(g * d, ax)
            # Armijo on the full Newton step first (t = _LADDER[0] = 1); near the minimum the
            # Newton decrement −slope reaches rounding level and Armijo cannot be tested: take
            # the full step there if it does not increase F beyond rounding (otherwise such a
            # problem would stop with |∇F| ~ 1e-8 instead of gtol)
            f1 = fv(z + d, p)
            tiny = -slope <= 1e-13 * (1.0 + jnp.abs(f0))
            ok1 = (f1 <= f0 + 1e-4 * slope) | (tiny & (f1 <= f0 + 1e-14 * (1.0 + jnp.abs(f0))))

            active = ~c["done"] & ~conv & finite

            def backtrack(b):
                # the ladder t = _LADDER[j], j = 1, 2, …, one objective evaluation per rung, while
                # an active problem has not accepted a step yet: each problem takes its first
                # accepted t, as if the whole ladder had been evaluated
                t = jnp.asarray(_LADDER)[b["j"]]
                ok = fv(z + t * d, p) <= f0 + 1e-4 * t * slope
                new = ok & ~b["found"]
                return dict(j=b["j"] + 1, k=jnp.where(new, b["j"], b["k"]),
                            found=b["found"] | ok)

            b = lax.while_loop(
                lambda b: (b["j"] < len(_LADDER)) & jnp.any(active & ~b["found"]), backtrack,
                dict(j=jnp.asarray(1, jnp.int32), k=jnp.zeros(ok1.shape, jnp.int32), found=ok1))
            k, anyok = b["k"], b["found"]
            anyok = anyok & finite
            move = anyok & ~c["done"] & ~conv
            z_new = jnp.where(per(move), z + per(jnp.asarray(_LADDER)[k]) * d, z)
            return dict(z=z_new, it=c["it"] + 1, done=c["done"] | conv | ~anyok,
                        nonpd=c["nonpd"] | ((lmin <= 0) & ~c["done"]),
                        steps=c["steps"] + (~c["done"]).astype(jnp.int32))

        return lax.while_loop(cond, body, dict(s, it=jnp.asarray(0)))

    P = z0.shape[-1] if columns else z0.shape[0]
    s = dict(z=z0, done=jnp.zeros(P, bool), nonpd=jnp.zeros(P, bool),
             steps=jnp.zeros(P, jnp.int32))
    n_first = min(first_iter, max_iter)
    s = {k: v for k, v in iterate(s, p, n_first).items() if k != "it"}
    K = min(P, max(1, int(math.ceil(P * straggler_fraction))))
    if n_first < max_iter:
        def round_cond(c):
            return jnp.any(~c["done"] & ~c["tried"])

        def round_body(c):
            # the K not-done, not-yet-tried problems first (stable sort on a 0/1 key)
            idx = jnp.argsort((c["done"] | c["tried"]).astype(jnp.int32), stable=True)[:K]
            sub = {k: take(c[k], idx) for k in ("z", "done", "nonpd", "steps")}
            sub = iterate(sub, jax.tree_util.tree_map(lambda a: take(a, idx), p),
                          max_iter - n_first)
            out = {k: put(c[k], idx, sub[k]) for k in ("z", "done", "nonpd", "steps")}
            out["tried"] = c["tried"].at[idx].set(True)
            return out

        s = lax.while_loop(round_cond, round_body, dict(s, tried=s["done"]))
    z = s["z"]
    g, _, lmin, finite = direction(z, p)
    conv = jnp.max(jnp.abs(g), ax) <= 1e3 * gtol * (1.0 + jnp.max(jnp.abs(z), ax))
    return dict(z=z, f=fv(z, p), converged=conv & finite, nonpd_path=s["nonpd"] | (lmin <= 0),
                pd_end=(lmin > 0) & finite, iters=jnp.max(s["steps"]))


def multistart_prox(obj, starts, p, *, max_iter: int = 40, gtol: float = PROX_GTOL,
                    dist_tol: float = 1e-5, grad_hess=None, factor: str = "ldl",
                    columns: bool = False):
    """Batch of N samples, S starts each (``starts``: (N, S, T); start 0 must be ω; ``p``: leaves
    with leading axis N). Keeps the lowest F per sample. Returns z (N, T), f, nonconvex,
    multimin, converged (per sample). ``columns``: ``obj`` and ``grad_hess`` are the column-wise
    batch functions of :func:`batched_newton` (the inputs and outputs here keep the layout
    above; the batch is transposed once on the way in and out)."""
    N, S, T = starts.shape
    pS = jax.tree_util.tree_map(lambda a: jnp.repeat(a, S, axis=0), p)
    z0 = starts.reshape(N * S, T)
    if columns:
        pS = jax.tree_util.tree_map(lambda a: jnp.moveaxis(a, 0, -1), pS)
        z0 = z0.T
    res = batched_newton(obj, z0, pS, max_iter=max_iter, gtol=gtol,
                         grad_hess=grad_hess, factor=factor, columns=columns)
    if columns:
        res = dict(res, z=res["z"].T)
    res = {k: (v.reshape(N, S, *v.shape[1:]) if k != "iters" else v) for k, v in res.items()}
    f = jnp.where(res["converged"], res["f"], jnp.inf)
    f = jnp.where(jnp.all(~res["converged"], -1, keepdims=True), res["f"], f)
    i = jnp.argmin(f, axis=-1)
    take = lambda a: jnp.take_along_axis(a, i.reshape((N, 1) + (1,) * (a.ndim - 2)), axis=1)[:, 0]
    z = take(res["z"])
    good = res["converged"] & res["pd_end"]
    dz = jnp.max(jnp.abs(res["z"] - z[:, None, :]), axis=-1)
    distinct = good & take(good)[:, None] & (dz > dist_tol * (1.0 + jnp.max(jnp.abs(z), -1))[:, None])
    return dict(z=z, f=take(res["f"]), nonconvex=res["nonpd_path"][:, 0],
                multimin=jnp.any(distinct, -1), converged=take(res["converged"]),
                iters=res["iters"], best=i)
