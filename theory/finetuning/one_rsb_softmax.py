"""One-step RSB (1RSB), zero temperature, of symmetric rank-one LoRA ERM — the SOFTMAX channel
(any channel of :class:`.lora_channel._Setup`; the channel-independent prior, hats, φ and solver
are :mod:`.one_rsb`, equations R2–R8 there; docs/validation/scarce_data.md §3.17).

Channel (T28): ℓ'(z; q) = ‖σ(S + zzᵀ − qI) − Y‖²_F, σ the row softmax at inverse temperature β,
Y = σ(H + ζζᵀ − q0*I) the teacher of the sample (S, H: the student's backbone score and the
teacher's noisy score, the frozen outer arrays ``Sst``, ``Htea`` of the RS channel). The 1RSB
fields of R4: ω = √q0 ξ0 + √(q − q0) ξ1, ζ = (m/√q0)ξ0 + s'η, s' = √(q0* − m²/q0); (ξ0, η, S, H)
are the outer sample (the RS channel's draws, ξ0 its ξ_t), ξ1 ~ N(0, I_T) the inner one.

Per inner node the prox ẑ = argmin_z |z − ω|²/(2v) + ℓ'(z; q) is the project's multistart
saddle-free Newton (:func:`theory.prox.multistart_prox`, column-wise objective of
:mod:`.lora_columns`) from the starts ω, ±√λ_max e_max of the RS spectral target (T29); the lowest
F is kept.
∂_qℓ' = −Tr G, G = ∂ℓ'/∂M (row i: G_i· = 2β(w − s p), p = σ(βM_i·), w = (p − y) ⊙ p, s = Σw).

Inner rule (R10 for softmax): ξ1 is isotropic, so a tensor Gauss–Hermite rule (n_gh^T nodes,
probabilists', exact for polynomials of degree < 2n_gh in each coordinate) is rotated by an
independent Haar-random orthogonal matrix per outer sample (frozen with the draws). The prox
jumps across the surfaces where two local minima exchange (the RS channel's multi-minimum
samples); the rotations turn the rule's error there from a bias fixed by the grid's orientation
into one that averages over the outer samples. The rule's convergence is checked in the tests and
in §3.17 (n_gh = 3, 4, 5).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from ..prox import jacobi_eigh, multistart_prox
from . import lora_columns, one_rsb
from .lora_channel import _Setup, _test_fn, start_target

__all__ = ["SoftmaxProblem", "outer_draws", "inner_rule", "rs_rule", "channel_means", "Channel",
           "solve_mu"]


@dataclasses.dataclass(frozen=True)
class SoftmaxProblem(one_rsb.Problem):
    """T, α', λ', q0*, β (the softmax inverse temperature)."""
    beta: float


def outer_draws(cfg, pre, key) -> tuple[SoftmaxProblem, dict]:
    """The problem and the frozen outer sample of (cfg, pre): the RS channel's own arrays
    (:meth:`.lora_channel._Setup.data`: ξ0 = ξ_t, η antithetic, S, H, and the fresh test arrays),
    so that at q0 = q every 1RSB mean equals the RS channel's on the same draws."""
    if cfg.model.attention != "softmax":
        raise ValueError("one_rsb_softmax: model.attention must be 'softmax' (the linear "
                         "channel is theory.finetuning.one_rsb_linear)")
    S = _Setup(cfg, pre)
    d = S.data(key)
    prob = SoftmaxProblem(S.T, S.alpha, S.lam, S.q0, S.beta)
    return prob, dict(xi0=d["xi_t"], eta=d["eta"], Sst=d["Sst"], Htea=d["Htea"], St=d["St"],
                      Ht=d["Ht"], Nt=d["Nt"])


def inner_rule(T: int, n: int, n_gh: int, key=None) -> dict:
    """Rotated tensor Gauss–Hermite rule (module docstring): nodes (n, n_gh^T, T) and weights
    (n_gh^T,), one Haar rotation per outer sample drawn from ``key`` (none if ``key`` is None)."""
    x, w = np.polynomial.hermite_e.hermegauss(n_gh)
    w = w / w.sum()
    grid = np.stack([g.ravel() for g in np.meshgrid(*([x] * T), indexing="ij")], -1)
    wts = np.prod(np.stack([g.ravel() for g in np.meshgrid(*([w] * T), indexing="ij")], -1), -1)
    nodes = jnp.broadcast_to(jnp.asarray(grid), (n,) + grid.shape)
    if key is not None:
        Qm, Rm = jnp.linalg.qr(jax.random.normal(key, (n, T, T)))
        Qm = Qm * jnp.sign(jnp.diagonal(Rm, axis1=-2, axis2=-1))[:, None, :]   # Haar
        nodes = jnp.einsum("nij,nkj->nki", Qm, nodes)
    return dict(nodes=nodes, weights=jnp.asarray(wts))


def rs_rule(T: int, n: int) -> dict:
    """q0 = q: ω1 = 0, one node of weight 1."""
    return dict(nodes=jnp.zeros((n, 1, T)), weights=jnp.ones(1))


@functools.lru_cache(maxsize=None)
def _programs(beta: float, T: int):
    obj = lora_columns.objective("softmax", beta)
    gh = lora_columns.grad_hess("softmax", beta)
    eye = jnp.eye(T)

    def loss_dq(z, q, S, Y):                       # ℓ'(z; q) and ∂_qℓ' = −Tr G, per problem
        P = jax.nn.softmax(beta * (S + jnp.outer(z, z) - q * eye), axis=-1)
        R = P - Y
        G = 2 * beta * P * (R - jnp.sum(R * P, -1, keepdims=True))
        return jnp.sum(R * R), -jnp.trace(G)

    @jax.jit
    def run(x, mu, q0s, data, rule, warm):
        """Per-outer-sample means of R4/R6 at x = (q, q0, m, v), μ ≥ 0, and the proxes (warm)."""
        q, q0, m, v = x[0], x[1], x[2], x[3]
        ss = jnp.sqrt(jnp.maximum(q - q0, 0.0))
        sq0 = jnp.sqrt(jnp.maximum(q0, 1e-300))
        sp = jnp.sqrt(jnp.maximum(q0s - m * m / jnp.maximum(q0, 1e-300), 0.0))
        xi0, eta, S, H = data["xi0"], data["eta"], data["Sst"], data["Htea"]
        n = xi0.shape[0]
        zeta = (m / sq0) * xi0 + sp * eta
        Y = jax.nn.softmax(beta * (H + zeta[:, :, None] * zeta[:, None, :] - q0s * eye), -1)
        A = jax.vmap(functools.partial(start_target, "softmax", beta))(
            zeta, S, H, jnp.full((n,), q0s)) + q * eye
        lam, U = jacobi_eigh(A)
        e = U[:, :, -1] * jnp.sqrt(jnp.maximum(lam[:, -1], 0.0))[:, None]
        xi1 = rule["nodes"]                                         # (n, K, T)
        K = xi1.shape[1]
        om = (sq0 * xi0)[:, None, :] + ss * xi1                     # (n, K, T)
        rep = lambda a: jnp.repeat(a, K, axis=0)
        omf = om.reshape(n * K, T)
        ef = rep(e)
        starts = [omf, ef, -ef] + ([] if warm is None else [warm.reshape(n * K, T)])
        starts = jnp.stack(starts, axis=1)
        p = (omf, jnp.full((n * K,), v), jnp.full((n * K,), q), rep(S), rep(Y))
        r = multistart_prox(obj, starts, p, grad_hess=gh, columns=True)
        z = r["z"]
        loss, dq = jax.vmap(loss_dq, in_axes=(0, None, 0, 0))(z, q, p[3], p[4])
        f = ((z - omf) / v).reshape(n, K, T)
        loss, dq = loss.reshape(n, K), dq.reshape(n, K)
        M = 0.5 * v * jnp.sum(f * f, -1) + loss
        Mmin = jnp.min(M, -1, keepdims=True)
        lw = jnp.log(rule["weights"])[None, :] - mu * (M - Mmin)
        lse = jax.scipy.special.logsumexp(lw, -1)
        w = jnp.exp(lw - lse[:, None])
        F = jnp.where(mu > 0, Mmin[:, 0] - lse / jnp.where(mu > 0, mu, 1.0), jnp.sum(w * M, -1))
        avg = lambda a: jnp.sum(w * a, -1)
        fm = jnp.einsum("nk,nkj->nj", w, f)
        out = dict(F=F, f2=avg(jnp.sum(f * f, -1)), train=avg(loss), dq=avg(dq),
                   xi1f=avg(jnp.sum(xi1 * f, -1)), M=avg(M), fxi0=jnp.sum(fm * xi0, -1),
                   feta=jnp.sum(fm * eta, -1), fm2=jnp.sum(fm * fm, -1),
                   multimin=jnp.mean(r["multimin"].reshape(n, K).astype(jnp.float64), -1),
                   unconv=jnp.mean((~r["converged"]).reshape(n, K).astype(jnp.float64), -1))
        return out, z.reshape(n, K, T)

    return run


def channel_means(prob: SoftmaxProblem, x, mu, data, rule, warm=None):
    """(means over the outer samples (floats), per-outer-sample arrays, proxes (n, K, T));
    ``warm`` (n, K, T): an extra start per node."""
    out, z = _programs(float(prob.beta), prob.T)(
        jnp.asarray(x, dtype=jnp.float64), jnp.asarray(float(mu)), float(prob.q0s), data, rule,
        warm)
    return {k: float(jnp.mean(val)) for k, val in out.items()}, out, z


class Channel:
    """The softmax channel of one frozen outer sample and inner rule, as a ``means_fn`` of
    :func:`.one_rsb.solve_mu`: a pure function of x and μ. The starts are ω and ±√λ_max e_max
    (T29) only. (A warm start from the previous call, as the RS iteration uses, makes the map
    depend on its history: the finite-difference Jacobian of Powell's method then sees the
    O(1/N) jumps of samples whose chosen minimum changed, and fails; measured at α' = 0.75.)"""

    def __init__(self, prob: SoftmaxProblem, data: dict, rule: dict):
        self.prob, self.data, self.rule = prob, data, rule

    def __call__(self, x, mu):
        mn, out, _ = channel_means(self.prob, x, mu, self.data, self.rule, None)
        return mn, out

    def test_error(self, q, m):
        """T32 on the fresh test arrays of the outer sample (MC over the outer samples)."""
        e, _ = _test_fn("softmax", self.prob.beta, self.prob.T)(
            q, m, self.prob.q0s, self.data["xi0"], self.data["eta"], self.data["St"],
            self.data["Ht"], self.data["Nt"])
        return float(jnp.mean(e))


# The map's resolution (one_rsb.solve_mu): at N = 1000 outer samples one jumping sample moves the
# RS means by O(10⁻³) (measured at α' = 0.75, zero backbone: a shift of m by 10⁻⁴ moved the q
# update by 2·10⁻³); the inner average spreads the jumps over K nodes in the 1RSB channel.
NOISY_MAP = dict(res_tol=1e-2, res_scale=0.1, max_iter=40)


def solve_mu(channel: Channel, mu, x0, **kw):
    """:func:`.one_rsb.solve_mu` with the softmax channel and :data:`NOISY_MAP` settings
    (overridable; ``rs=True``: q0 = q, use a :func:`rs_rule` channel)."""
    return one_rsb.solve_mu(channel.prob, mu, channel, x0, channel.test_error,
                            **{**NOISY_MAP, **kw})
