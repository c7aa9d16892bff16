"""One-step RSB (1RSB), zero temperature, of symmetric rank-one LoRA ERM — the LINEAR channel
(the channel-independent prior, hats, φ and solver are in :mod:`.one_rsb`; restated here).

Problem (MODEL.md M11, THEORY.md T28): minimise L'(w)/d = (1/d)Σ_μ ℓ'(X_μw/√d; |w|²/d) + λ'|w|²/d,
ℓ'(z; q) = ‖A − zzᵀ‖²_F, A = ζζᵀ − q0*I + √Δ G + qI, G ~ GOE_T(1), Δ = Δ_eff (T25).

Order parameters (R1): self-overlap q (enters ℓ' explicitly, T30), intra-state response
v = β(q − q1), inter-state overlap q0 ≤ q, m = w·w*/d, Parisi μ = β·m_P; conjugates q̂ (of q1),
q̂0, v̂, m̂.  Free energy per d (energy units, to be extremised at fixed μ):
(R2) φ = ½q̂v − ½v̂q + (μ/2)(q̂q − q̂0q0) + m̂m + Φ_in + α'Ψ_out,
(R3) Φ_in = (1/2μ)log D − V P/(2D),  V = 1/(2λ' + v̂), D = 1 − μV(q̂ − q̂0), P = q̂0 + q0*m̂²
     (= −(1/μ)E log E_h1 exp(μV h²/2), h = √q̂0 h0 + m̂w* + √(q̂ − q̂0) h1: ridge prior, closed
     form),
(R4) Ψ_out = −(1/μ) E_{ξ0,η,G} log E_{ξ1} exp(−μ M(ω0 + ω1)),
     M(ω) = min_z |z − ω|²/(2v) + ℓ'(z; q),
     ω0 = √q0 ξ0, ζ = (m/√q0)ξ0 + s'η, s' = √(q0* − m²/q0), ω1 = √(q − q0) ξ1, ξ's ~ N(0, I_T).
Stationarity (⟨·⟩ = average over ξ1 tilted by e^{−μM}; f = (ẑ − ω)/v):
(R5) prior: v = 1/(2λ' + v̂), D = 1 − μv(q̂ − q̂0), m = q0*m̂v/D, q0 = v²(q̂0 + q0*m̂²)/D²,
     q = q0 + v²(q̂ − q̂0)/D;
(R6) channel: q̂ = α'E⟨|f|²⟩, q̂0 = α'E|⟨f⟩|², m̂ = α'E[⟨f⟩·η]/s',
     v̂ = μq̂ − (α'/√(q − q0))E⟨ξ1·f⟩ + 2α'E⟨∂_qℓ'⟩   (Stein on ξ1; "inner")
       = μ(q̂ − q̂0) − (α'/√q0)[E⟨f⟩·ξ0 − (m/(s'√q0))E⟨f⟩·η] + 2α'E⟨∂_qℓ'⟩   (Stein on ξ0; "outer"),
     ∂_qℓ' = 2Tr(A − ẑẑᵀ).
RS reduction: q0 = q (or μ = 0) gives q̂0 = q̂, D = 1 and R2–R6 are T30–T31 term by term.
Energy of the dominant states and complexity: e(μ) = ∂_μ(μφ) = α'E⟨ℓ'(ẑ)⟩ + λ'q (R7),
Σ(μ) = μ(e − φ) = μ²∂_μφ (R8). Ground state: e_GS = max_μ φ(μ) = φ(μ*) at Σ(μ*) = 0 (φ(μ) =
min_e[e − Σ(e)/μ] ≤ e_GS for every μ > 0 where Σ(e_GS) = 0; φ(0) = φ_RS, so 1RSB can only raise the
ground-state energy above RS).

Branches: at fixed μ several saddles exist (an informative one with 0 < q0 < q, m ≠ 0; a symmetric
one with q0 = 0, m = 0; RS, q0 = q, at every μ). The ground state is read on the branch of lowest φ
near μ*, on its physical part (e(μ) non-increasing, i.e. Σ(e) concave); see
benchmarks/one_rsb_linear.py and docs/validation/scarce_data.md §3.16.

Exact prox (R9): in A's eigenbasis (a_1 ≤ … ≤ a_T, ω̃ = Uᵀω) stationarity is
z̃_i = ω̃_i/(1 + 4v(r − a_i)),
r = |z|², i.e. r = h(r) := Σ ω̃_i²/(1 + 4v(r − a_i))². The global minimiser has I/v − 4A + 4rI ⪰ 0
(sphere-constrained trust-region argument: min_z = min_r[r² + min_{|z|²=r} zᵀKz/2 − b·z], the inner
global multiplier θ = 2r makes K + 2θI ⪰ 0), hence r > max(a_T − 1/(4v), 0), where h(r) − r is
strictly decreasing: a unique root, found by bisection. The prox is unique and smooth except on
ω̃_T = 0 (the symmetric "hard case"), where f may jump. The inner ξ1 average is therefore done in
A's eigenbasis (ξ1 isotropic): Gauss–Hermite in the T − 1 smooth directions, and along ξ̃1_T a
Gauss–Legendre rule in u = Φ(x) on each side of the jump x = −ω̃0_T/√(q − q0) (R10).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import ndtr, ndtri

from ..gaussian import goe
from ..prox import jacobi_eigh
from . import one_rsb
from .one_rsb import hats, phi, prior_term, prior_update  # noqa: F401  (re-exported)

__all__ = ["LinearProblem", "draws", "inner_rule", "prox_eig", "channel_means", "prior_term",
           "prior_update", "hats", "phi", "fixed_point_map", "solve_mu", "linear_test_error",
           "RS_RULE"]


@dataclasses.dataclass(frozen=True)
class LinearProblem(one_rsb.Problem):
    """T, α', λ', q0*, Δ (= Δ_eff of T25: Δ'/2 + Q0 − 2cM + c²Q; 2.25 for the zero backbone)."""
    delta: float

    @classmethod
    def from_config(cls, cfg, pre, c: float = 1.0):
        from . import noise
        return cls(cfg.model.T, cfg.finetune.alpha, cfg.finetune.lam, cfg.finetune.q0star,
                   float(noise.delta_eff_train(cfg, pre, c)))


def draws(key, n: int, T: int) -> dict:
    """Frozen outer draws ξ0, η (antithetic: m = 0 stays exactly 0), G ~ GOE_T(1); n even."""
    n2 = n // 2
    k = jax.random.split(key, 3)
    xi0 = jax.random.normal(k[0], (n2, T))
    eta = jax.random.normal(k[1], (n2, T))
    G = goe(k[2], (n2,), T)
    two = lambda a: jnp.concatenate([a, a])
    return dict(xi0=two(xi0), eta=jnp.concatenate([eta, -eta]), G=two(G))


def inner_rule(T: int, n_gh: int = 5, n_gl: int = 6) -> dict:
    """(R10) fixed parts of the inner rule: GH product nodes/weights in the T − 1 smooth eigen-
    directions (probabilists', weights sum to 1) and GL nodes/weights on (0, 1)."""
    x, w = np.polynomial.hermite_e.hermegauss(n_gh)
    w = w / w.sum()
    grids = np.meshgrid(*([x] * (T - 1)), indexing="ij")
    wg = np.meshgrid(*([w] * (T - 1)), indexing="ij")
    nodes = np.stack([g.ravel() for g in grids], -1) if T > 1 else np.zeros((1, 0))
    weights = np.prod(np.stack([g.ravel() for g in wg], -1), -1) if T > 1 else np.ones(1)
    t, wl = np.polynomial.legendre.leggauss(n_gl)
    return dict(gh_x=jnp.asarray(nodes), gh_w=jnp.asarray(weights),
                gl_t=jnp.asarray((t + 1) / 2), gl_w=jnp.asarray(wl / 2))


def prox_eig(a, w, v, bisect: int = 36, newton: int = 6):
    """(R9) global minimiser of |z − ω|²/(2v) + ‖A − zzᵀ‖²_F in A's eigenbasis.
    a: (..., T) ascending eigenvalues, w: (..., T) = Uᵀω. Returns z̃ (..., T).
    g(t) = h(L + t) − (L + t) is convex and decreasing on t > 0: ``bisect`` bracketing steps
    (halving, or dividing the upper end by 16 while no left point with g > 0 is known: roots next to
    the pole t = 0 of the hard case), then Newton from the left end of the bracket (g > 0 there, so
    Newton increases monotonically to the root without overshooting)."""
    a = jnp.broadcast_to(a, w.shape)
    L = jnp.maximum(a[..., -1] - 0.25 / v, 0.0)
    b = 1.0 + 4.0 * v * (L[..., None] - a)                       # x_i(t) = b_i + 4vt, b_T ≥ 0
    w2 = w * w
    hi0 = jnp.maximum(a[..., -1], jnp.sum(w2, -1)) + 1.0 - L

    def g(t):                                                   # h(L + t) − (L + t), decreasing
        x = b + 4.0 * v * t[..., None]
        return jnp.sum(w2 / (x * x), -1) - (L + t)

    def body(_, lh):
        lo, hi = lh
        mid = jnp.where(lo > 0, 0.5 * (lo + hi), hi / 16.0)
        pos = g(mid) > 0
        return jnp.where(pos, mid, lo), jnp.where(pos, hi, mid)

    lo, hi = jax.lax.fori_loop(0, bisect, body, (jnp.zeros_like(L), hi0))

    def nstep(_, t):
        x = b + 4.0 * v * t[..., None]
        gv = jnp.sum(w2 / (x * x), -1) - (L + t)
        gp = -8.0 * v * jnp.sum(w2 / (x * x * x), -1) - 1.0
        tn = t - gv / gp
        return jnp.where(jnp.isfinite(tn) & (tn >= t), jnp.minimum(tn, hi), t)

    t = jax.lax.fori_loop(0, newton, nstep, jnp.where(lo > 0, lo, 0.5 * hi))
    x = jnp.maximum(b + 4.0 * v * t[..., None], 1e-300)
    return w / x


@functools.partial(jax.jit, static_argnames=())
def channel_means(x, mu, q0s, delta, data, rule):
    """Outer-sample quantities of R4/R6 at x = (q, q0, m, v) and Parisi μ (μ = 0 allowed).
    Returns per-outer-sample arrays: F (= −(1/μ)log E_ξ1 e^{−μM}; E_ξ1 M at μ = 0), ⟨|f|²⟩,
    ⟨ℓ'⟩, ⟨∂_qℓ'⟩, ⟨ξ1·f⟩, ⟨M⟩, ⟨f⟩·ξ0, ⟨f⟩·η, |⟨f⟩|² (inner averages by the rule R10)."""
    q, q0, m, v = x[0], x[1], x[2], x[3]
    T = data["xi0"].shape[-1]
    s = jnp.maximum(q - q0, 0.0)
    ss = jnp.sqrt(s)
    sq0 = jnp.sqrt(jnp.maximum(q0, 1e-300))
    sp = jnp.sqrt(jnp.maximum(q0s - m * m / jnp.maximum(q0, 1e-300), 0.0))
    xi0, eta, G = data["xi0"], data["eta"], data["G"]
    om0 = sq0 * xi0
    zeta = (m / sq0) * xi0 + sp * eta
    eye = jnp.eye(T)
    A = zeta[:, :, None] * zeta[:, None, :] + (q - q0s) * eye + jnp.sqrt(delta) * G
    a, U = jacobi_eigh(A)
    rot = lambda y: jnp.einsum("nij,ni->nj", U, y)             # Uᵀy
    w0, x0t, et = rot(om0), rot(xi0), rot(eta)
    # inner nodes (R10): split point of the last (largest-eigenvalue) coordinate
    c = jnp.where(ss > 0, -w0[:, -1] / jnp.where(ss > 0, ss, 1.0), 0.0)
    pl, pu = ndtr(c), ndtr(-c)
    tl = rule["gl_t"]
    xl = ndtri(jnp.clip(pl[:, None] * tl, 1e-300, 1.0))
    xu = -ndtri(jnp.clip(pu[:, None] * tl, 1e-300, 1.0))
    xT = jnp.concatenate([xl, xu], 1)                           # (n, 2 n_gl)
    wT = jnp.concatenate([pl[:, None] * rule["gl_w"], pu[:, None] * rule["gl_w"]], 1)
    gx, gw = rule["gh_x"], rule["gh_w"]                         # (K_gh, T − 1)
    n, KT, Kg = xT.shape[0], xT.shape[1], gx.shape[0]
    xi1 = jnp.concatenate([jnp.broadcast_to(gx[None, :, None, :], (n, Kg, KT, T - 1)),
                           jnp.broadcast_to(xT[:, None, :, None], (n, Kg, KT, 1))], -1)
    xi1 = xi1.reshape(n, Kg * KT, T)
    wk = (gw[None, :, None] * wT[:, None, :]).reshape(n, Kg * KT)
    om = w0[:, None, :] + ss * xi1
    ab = a[:, None, :]
    z = prox_eig(ab, om, v)
    r = jnp.sum(z * z, -1)
    sa2 = jnp.sum(a * a, -1)[:, None]
    loss = sa2 - 2.0 * jnp.sum(ab * z * z, -1) + r * r        # ‖A − zzᵀ‖²_F
    f = (z - om) / v
    M = 0.5 * v * jnp.sum(f * f, -1) + loss
    Mmin = jnp.min(M, -1, keepdims=True)
    lw = jnp.log(wk) - mu * (M - Mmin)
    lse = jax.scipy.special.logsumexp(lw, -1)
    p = jnp.exp(lw - lse[:, None])
    F = jnp.where(mu > 0, Mmin[:, 0] - lse / jnp.where(mu > 0, mu, 1.0), jnp.sum(p * M, -1))
    avg = lambda y: jnp.sum(p * y, -1)
    fm = jnp.einsum("nk,nkj->nj", p, f)
    dq = 2.0 * (jnp.sum(a, -1)[:, None] - r)
    return dict(F=F, f2=avg(jnp.sum(f * f, -1)), train=avg(loss), dq=avg(dq),
                xi1f=avg(jnp.sum(xi1 * f, -1)), M=avg(M), fxi0=jnp.sum(fm * x0t, -1),
                feta=jnp.sum(fm * et, -1), fm2=jnp.sum(fm * fm, -1))


def _means(x, mu, data, rule, prob):
    out = channel_means(jnp.asarray(x, dtype=jnp.float64), jnp.asarray(float(mu)),
                        prob.q0s, prob.delta, data, rule)
    return {k: float(jnp.mean(val)) for k, val in out.items()}, out


def fixed_point_map(x, mu, data, rule, prob, vhat_form="inner"):
    """x ↦ prior_update(hats(channel(x))): R5 ∘ R6. Returns (new x, hats, means)."""
    return one_rsb.map_step(x, mu, lambda y, u: _means(y, u, data, rule, prob), prob,
                            vhat_form)[:3]


RS_RULE = dict(n_gh=1, n_gl=1)   # q0 = q: the inner average is trivial (ω1 = 0)


def solve_mu(prob, mu, data, rule, x0, **kw):
    """:func:`.one_rsb.solve_mu` with this module's channel (R9–R10) and the closed-form T32
    test error."""
    return one_rsb.solve_mu(prob, mu, lambda y, u: _means(y, u, data, rule, prob), x0,
                            lambda q, m: linear_test_error(prob, q, m), **kw)


def linear_test_error(prob: LinearProblem, q, m):
    """T32 linear closed form T(T+1)[Δ_eff + q0*² + q² − 2m²] (any (q, m); Δ_eff = prob.delta on
    fresh sequences)."""
    return prob.T * (prob.T + 1) * (prob.delta + prob.q0s ** 2 + q * q - 2 * m * m)
