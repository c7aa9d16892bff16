"""Bayes-optimal rank-one fine-tuning: state evolution (THEORY.md §8, T38–T40).

Reduction (T38). With Ŝ known, the known background (M/Q)B is subtracted (linear) or σ is inverted
modulo 11ᵀ (softmax: on symmetric scores row-wise softmax(β·) is injective modulo c·11ᵀ) and then
subtracted. What is left is a sequence single-index model with known background:

    A := Ỹ + q0*·I = ζζᵀ + N,   N ~ GOE_T(Δ_N),   Δ_N = Δ'/2 + Q0 − M²/Q,
    P_out(A | ζ) ∝ exp(−‖Π(A − ζζᵀ)‖²_F / (4Δ_N)),  Π = id (linear), P_⊥ (softmax; removes 11ᵀ,
    ‖P_⊥X‖² = ‖X‖² − (1ᵀX1)²/T²).

State evolution (T39), Nishimori (m = q, v = q0* − q):
    Z_out(A, ω, v) = E_{u~N(0,I_T)} P_out(A | ω + √v u),   g_out = (E[ζ|A, ω] − ω)/v,
    q̂ = α' E|g_out|²   over ζ ~ N(0, q0* I_T), ω = (q/q0*)ζ + √(q − q²/q0*) η, N;
    q = q0*² q̂ / (1 + q0* q̂).
The prior step is that of w* ~ N(0, q0* I); for MODEL's spherical prior |w*|² = q0*·d the
saddle point of the von Mises–Fisher posterior gives cos(ŵ, w*)² = s/(1+s), s = q0* q̂, i.e. the
same q (checked in the report).

Free entropy (to select between branches):
    Φ(q) = −q q̂/2 + ψ_w(q̂) + α' Ψ_out(q),  ψ_w(q̂) = (q0* q̂ − log(1 + q0* q̂))/2,
    Ψ_out(q) = E log Z_out(A, ω, q0* − q)   (A drawn independently of q: common random numbers),
stationary in (q, q̂) at the SE fixed point (∂Ψ_out/∂q = E|g_out|²/2).

Weak recovery (T40): linearising at q = 0, q_new = α' q E‖E[ζζᵀ|A]/q0* − I‖²_F, so
α'_WR = 1 / E_A ‖E[ζζᵀ|A]/q0* − I_T‖²_F (E[ζ|A] = 0 by ζ → −ζ symmetry).

Outputs (T39/T32): o_w = √(q/q0*); linear test = T(T+1)(Δ_N + q0*² − q²) (the plug-in
ω̂ω̂ᵀ − qI is the posterior mean of ζζᵀ − q0*I), clean = test − T(T+1)Δ'/2; softmax: plug-in
with (q, m) = (q_BO, q_BO) and c = M/Q, by Monte Carlo.

Quadrature of Z_out: a Gauss–Hermite tensor grid in u with n nodes per dimension and
log-sum-exp. The node count is chosen by :func:`choose_nodes`: n is increased until E|g_out|²
and E log Z_out change by less than ``grid_tol`` (relative) on a sub-sample at the most peaked
point (v = q0*). The likelihood's width in u is ≈ √(Δ_N/v)/(2|ζ|), so the grid is accurate for
Δ_N ≳ 0.2 q0*² at T = 3 with ≤ 40 nodes; below that the solver flags ``grid_unconverged``.
(The importance-sampling fallback of THEORY §8 is NOT implemented.)

Solve (THEORY.md §9 "Bayes SE iteration"): the map is :class:`BayesSEChannel`, a channel of the
one RS engine (:mod:`theory.engine`), which owns the protocol: one phase of the damped map with
Anderson mixing (no stall test: the map is smooth in q on its frozen draws), the slope check at
every fixed point and the escape from unstable ones (the channel's ``stability`` hook), every
start on every MC repeat (``Settings.repeats_per_branch``), the choice of the larger repeat-mean
free entropy among the stable branches, and the aggregation of the repeats.
"""

from __future__ import annotations

import math
import time
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from .. import engine
from ..gaussian import goe, seed_key
from ..solver_constants import STABILITY_STEP, UNSTABLE_KICK
from ..states import FinetuneState, PretrainState

__all__ = ["solve", "BayesSEChannel", "alpha_weak_recovery", "delta_n", "gh_grid", "z_out",
           "choose_nodes", "se_moments", "test_error_softmax"]

_CHUNK = 128
NODE_LADDER = (12, 16, 20, 24, 32, 40)


def delta_n(cfg, pre: PretrainState) -> float:
    """Δ_N = Δ'/2 + Q0 − M²/Q (T38), the effective noise of the Bayes channel."""
    proj = pre.M ** 2 / pre.Q if pre.Q > 0 else 0.0
    return float(cfg.delta_prime / 2.0 + pre.Q0 - proj)


def gh_grid(n: int, T: int):
    """Tensor Gauss–Hermite rule for N(0, I_T): nodes (n^T, T), log-weights (n^T,)."""
    x, w = np.polynomial.hermite.hermgauss(n)
    x = x * math.sqrt(2.0)
    lw = np.log(w / math.sqrt(math.pi))
    grids = np.meshgrid(*([x] * T), indexing="ij")
    lws = np.meshgrid(*([lw] * T), indexing="ij")
    nodes = np.stack([g.ravel() for g in grids], axis=-1)
    logw = np.sum(np.stack([l.ravel() for l in lws], axis=-1), axis=-1)
    return jnp.asarray(nodes), jnp.asarray(logw)


def _loglik(zeta, A, delta, proj: bool):
    """log P_out(A|ζ) up to the ζ-independent normaliser (T38); zeta (..., T)."""
    D = A - zeta[..., :, None] * zeta[..., None, :]
    s = jnp.sum(D * D, axis=(-1, -2))
    if proj:
        T = A.shape[-1]
        s = s - jnp.sum(D, axis=(-1, -2)) ** 2 / T ** 2
    return -s / (4.0 * delta)


def z_out(A, omega, v, delta, nodes, logw, proj: bool):
    """log Z_out(A, ω, v) and the posterior mean and second moment of ζ (T39), one sample."""
    zeta = omega + jnp.sqrt(v) * nodes
    l = _loglik(zeta, A, delta, proj) + logw
    logz = jax.scipy.special.logsumexp(l)
    p = jnp.exp(l - logz)
    mean = p @ zeta
    second = jnp.einsum("k,ka,kb->ab", p, zeta, zeta)
    return logz, mean, second


def _draws(key, n, T, q0s, dn):
    """Frozen draws (ζ, η, A) for the SE expectation; A = ζζᵀ + N, N ~ GOE_T(Δ_N)."""
    k1, k2, k3 = jax.random.split(key, 3)
    zeta = jnp.sqrt(q0s) * jax.random.normal(k1, (n, T))
    eta = jax.random.normal(k2, (n, T))
    A = zeta[:, :, None] * zeta[:, None, :] + goe(k3, (n,), T, dn)
    return zeta, eta, A


@partial(jax.jit, static_argnames=("proj",))
def se_moments(q, zeta, eta, A, q0s, dn, nodes, logw, proj: bool):
    """Monte-Carlo SE averages at overlap q: E|g|², E[g·(ζ−ω)]/v (Nishimori), E log Z_out."""
    v = q0s - q
    omega = (q / q0s) * zeta + jnp.sqrt(jnp.maximum(q - q * q / q0s, 0.0)) * eta
    n, T = zeta.shape
    nb = n // _CHUNK
    batch = lambda x: x[: nb * _CHUNK].reshape(nb, _CHUNK, *x.shape[1:])

    def one(args):
        Ab, ob, zb = args
        logz, mean, _ = jax.vmap(z_out, (0, 0, None, None, None, None, None))(
            Ab, ob, v, dn, nodes, logw, proj)
        g = (mean - ob) / v
        return jnp.stack([jnp.sum(g * g, -1), jnp.sum(g * (zb - ob), -1) / v, logz], -1)

    out = jax.lax.map(one, (batch(A), batch(omega), batch(zeta))).reshape(-1, 3)
    return jnp.mean(out, 0), jnp.std(out, 0) / jnp.sqrt(out.shape[0])


@partial(jax.jit, static_argnames=("proj",))
def _wr_samples(A, q0s, dn, nodes, logw, proj: bool):
    """‖E[ζζᵀ|A]/q0* − I‖²_F per sample at ω = 0, v = q0* (T40)."""
    n, T = A.shape[0], A.shape[-1]
    nb = n // _CHUNK

    def one(Ab):
        _, _, sec = jax.vmap(z_out, (0, None, None, None, None, None, None))(
            Ab, jnp.zeros(T), q0s, dn, nodes, logw, proj)
        return jnp.sum((sec / q0s - jnp.eye(T)) ** 2, axis=(-1, -2))

    return jax.lax.map(one, A[: nb * _CHUNK].reshape(nb, _CHUNK, T, T)).reshape(-1)


def choose_nodes(T, q0s, dn, proj, *, key, n_check=512, grid_tol=2e-3, q=0.0):
    """Smallest node count in NODE_LADDER whose E|g|², E log Z agree with the next one within
    ``grid_tol`` (relative) on ``n_check`` frozen samples at overlap q. Returns (n, converged, diff)."""
    zeta, eta, A = _draws(key, n_check, T, q0s, dn)
    ladder = [n for n in NODE_LADDER if n ** T <= 80000] or [NODE_LADDER[0]]
    prev = None
    for n in ladder:
        nodes, logw = gh_grid(n, T)
        mom, _ = se_moments(q, zeta, eta, A, q0s, dn, nodes, logw, proj=proj)
        mom = np.asarray(mom)
        if prev is not None:
            diff = float(max(abs(mom[0] - prev[1][0]) / (abs(mom[0]) + 1e-3),
                             abs(mom[2] - prev[1][2]) / (abs(mom[2]) + 1e-3)))
            if diff < grid_tol:
                return prev[0], True, diff
        prev = (n, mom)
    return prev[0], False, float("nan") if len(ladder) == 1 else diff


def _prior_q(qhat, q0s):
    """Gaussian (equivalently spherical) prior step of T39."""
    return q0s ** 2 * qhat / (1.0 + q0s * qhat)


def _free_entropy(q, qhat, logz_mean, q0s, alpha):
    return -0.5 * q * qhat + 0.5 * (q0s * qhat - math.log1p(q0s * qhat)) + alpha * logz_mean


class BayesSEChannel:
    """The Bayes SE (T39) as a channel of :func:`theory.engine.solve`: x = (q,), the map
    q ↦ q0*² q̂/(1 + q0* q̂), q̂ = α' E|g_out|²(q) (:func:`se_moments` on the frozen draws
    (ζ, η, A) of one repeat); no prox, no warm start (``means`` ignores ``full`` and the warm
    state). ``objective`` = −Φ (the engine minimises it: the larger free entropy wins). Stability
    hook (T39, THEORY.md §9 "Bayes SE iteration"): the slope of the undamped map by a one-sided
    finite difference of STABILITY_STEP·q0* (towards the middle of [0, q0*]) on the same draws,
    the kick UNSTABLE_KICK·q0* in the same direction. Holds only numbers of (cfg, pre) and the
    quadrature grid."""

    stage = "SE"

    def __init__(self, cfg, pre: PretrainState, nodes, logw):
        self.T, self.q0s, self.alpha = cfg.model.T, cfg.finetune.q0star, cfg.finetune.alpha
        self.proj, self.dn = cfg.model.attention == "softmax", delta_n(cfg, pre)
        self.n, self.nodes, self.logw = cfg.theory.mc_samples, nodes, logw
        self.key = seed_key(cfg.theory.seed)
        self.qmax = self.q0s * (1.0 - 1e-9)

    def draws(self, key):
        """Repeat r draws from fold_in(seed key, r), repeat 0 included (the rule of this solver
        since T39 was implemented, kept so that every repeat's draws are unchanged): the
        engine's repeat 0 is the seed key itself (:func:`theory.engine.repeat_key`), mapped here
        to fold_in(seed key, 0); the engine's repeat i > 0 is already fold_in(seed key, i)."""
        if np.array_equal(np.asarray(key), np.asarray(self.key)):
            key = jax.random.fold_in(key, 0)
        return _draws(key, self.n, self.T, self.q0s, self.dn)

    def cold_warm(self, data):
        return None

    def sanitize(self, x) -> np.ndarray:
        return np.array([float(np.clip(x[0], 0.0, self.qmax))])

    def means(self, x, warm, data, full: bool):
        mom, se = se_moments(float(x[0]), *data, self.q0s, self.dn, self.nodes, self.logw,
                             proj=self.proj)
        mom, se = np.asarray(mom), np.asarray(se)
        return dict(g2=float(mom[0]), g2_nishimori=float(mom[1]), logz=float(mom[2]),
                    g2_se=float(se[0])), warm

    def hats(self, x, means: dict, force_stein: bool):
        return (self.alpha * means["g2"],), False

    def prior(self, hats: tuple) -> np.ndarray:
        return np.array([_prior_q(hats[0], self.q0s)])

    def stability(self, x, data):
        """(slope of the SE map at x, kick of the escape start) (module docstring of
        :mod:`theory.engine.driver`)."""
        q = float(x[0])
        sign = 1.0 if q < 0.5 * self.q0s else -1.0
        h = sign * STABILITY_STEP * self.q0s
        F = lambda q_: self.prior(self.hats(None, self.means(self.sanitize([q_]), None, data,
                                                             True)[0], False)[0])[0]
        return float((F(q + h) - F(q)) / h), np.array([sign * UNSTABLE_KICK * self.q0s])

    def record(self, x, hats: tuple, means: dict, stein: bool) -> dict:
        q, qhat = float(x[0]), float(hats[0])
        fe = _free_entropy(q, qhat, means["logz"], self.q0s, self.alpha)
        return dict(q=q, qhat=qhat, g2=means["g2"], g2_nishimori=means["g2_nishimori"],
                    g2_se=means["g2_se"], free_entropy=fe, objective=-fe,
                    overlap=math.sqrt(q / self.q0s), rs_doubtful=False)

    def outputs(self, branch, data) -> dict:
        r = branch.record
        return {k: float(r[k]) for k in ("q", "qhat", "free_entropy", "objective", "g2",
                                         "g2_nishimori")}

    def label(self, record: dict) -> str:
        return "informative" if record["q"] > 1e-3 * self.q0s else "uninformative"

    def distinct(self, a: dict, b: dict) -> bool:
        return abs(a["q"] - b["q"]) > 1e-3 * self.q0s

    def doubt(self, record: dict):
        return None


def test_error_softmax(q, cfg, pre, *, key, n=None):
    """Plug-in softmax test error (T32 with c = M/Q, m = q): (noisy, clean, their s.e.)."""
    T, beta = cfg.model.T, cfg.model.beta
    q0s = cfg.finetune.q0star
    n = n or cfg.theory.mc_samples
    ks = jax.random.split(key, 5)
    c = pre.M / pre.Q if pre.Q > 0 else 0.0
    zeta = jnp.sqrt(q0s) * jax.random.normal(ks[0], (n, T))
    omega = (q / q0s) * zeta + math.sqrt(max(q - q * q / q0s, 0.0)) * jax.random.normal(ks[1], (n, T))
    B = goe(ks[2], (n,), T, pre.Q)
    R = goe(ks[3], (n,), T, max(pre.Q0 - c * pre.M, 0.0))
    xi = goe(ks[4], (n,), T, cfg.delta_prime / 2.0)
    outer = lambda z: z[:, :, None] * z[:, None, :]
    eye = jnp.eye(T)
    student = jax.nn.softmax(beta * (c * B + outer(omega) - q * eye), axis=-1)
    base = c * B + R + outer(zeta) - q0s * eye
    e = jnp.sum((student - jax.nn.softmax(beta * (base + xi), -1)) ** 2, axis=(-1, -2))
    ec = jnp.sum((student - jax.nn.softmax(beta * base, -1)) ** 2, axis=(-1, -2))
    return (float(e.mean()), float(ec.mean()), float(e.std() / math.sqrt(n)),
            float(ec.std() / math.sqrt(n)))


def alpha_weak_recovery(cfg, pre: PretrainState, *, n_nodes=None):
    """α'_WR = 1/E‖E[ζζᵀ|Ỹ]/q0* − I‖²_F (T40) by Monte Carlo: returns (value, s.e.).

    The s.e. is from the spread over cfg.theory.mc_repeats independent frozen samples."""
    T, q0s = cfg.model.T, cfg.finetune.q0star
    proj = cfg.model.attention == "softmax"
    dn = delta_n(cfg, pre)
    key = seed_key(cfg.theory.seed)
    if n_nodes is None:
        n_nodes, _, _ = choose_nodes(T, q0s, dn, proj, key=jax.random.fold_in(key, 999))
    nodes, logw = gh_grid(n_nodes, T)
    vals = []
    for r in range(cfg.theory.mc_repeats):
        _, _, A = _draws(jax.random.fold_in(key, r), cfg.theory.mc_samples, T, q0s, dn)
        vals.append(float(jnp.mean(_wr_samples(A, q0s, dn, nodes, logw, proj=proj))))
    vals = np.array(vals)
    inv = 1.0 / vals
    err = float(inv.std(ddof=1) / math.sqrt(len(inv))) if len(inv) > 1 else float("nan")
    return float(1.0 / vals.mean()), err


def solve(cfg, pre: PretrainState, *, init=None, n_nodes=None) -> FinetuneState:
    """Bayes-optimal fine-tuning SE fixed point (T38–T40) for σ ∈ {linear, softmax}.

    The SE map is the channel :class:`BayesSEChannel` of :func:`theory.engine.solve` with
    ``repeats_per_branch`` (THEORY.md §9): branches start from q = 0.99 q0* (informative) and
    q = 1e-4 q0* (uninformative), or from ``init`` (a q value) if given; each branch is solved
    on every one of cfg.theory.mc_repeats frozen samples (key = cfg.theory.seed folded with the
    repeat index; repeat r > 0 from the branch's repeat-0 solution), an unstable fixed point is
    left (escape protocol of the engine), and the selected branch maximises the repeat-mean free
    entropy among the stable ones (common random numbers). Metrics are repeat means and
    ``mc_err`` their standard errors (NaN with one repeat)."""
    t0 = time.perf_counter()
    T, q0s = cfg.model.T, cfg.finetune.q0star
    proj = cfg.model.attention == "softmax"
    dn = delta_n(cfg, pre)
    key = seed_key(cfg.theory.seed)
    flags = []
    grid_ok, grid_diff = True, float("nan")
    if n_nodes is None:
        n_nodes, grid_ok, grid_diff = choose_nodes(T, q0s, dn, proj, key=jax.random.fold_in(key, 999))
        if not grid_ok:
            flags.append(f"grid_unconverged: Gauss-Hermite grid not converged at Delta_N={dn:.3g}")
    nodes, logw = gh_grid(n_nodes, T)
    ch = BayesSEChannel(cfg, pre, nodes, logw)
    starts = [engine.Start("init", np.array([float(init)]))] if init is not None else \
        [engine.Start("informative", np.array([0.99 * q0s])),
         engine.Start("uninformative", np.array([1e-4 * q0s]))]
    settings = engine.Settings.from_config(cfg, repeats_per_branch=True, stall=None,
                                           phase2_rounds=0, stein_retry=False)
    sol = engine.solve(ch, settings, key, starts)
    # the flags of this solver (the store counts any flag: the engine's informational "several
    # fixed points" is solver["distinct_branches"] here, its non-convergence "not_converged")
    flags += [f for f in sol.flags if f.startswith("no stable")]
    if not sol.stats["converged"]:
        flags.append("not_converged")
    nan = lambda e: float("nan") if e is None else float(e)
    best = next(b for b in sol.starts if b["selected"])
    reps = [r.record for r in best["results"]]
    q, q_err, qhat = best["q"], nan(best["mc_err"]["q"]), best["qhat"]
    overlap = math.sqrt(max(q, 0.0) / q0s)
    metrics = dict(q=q, m=q, overlap=overlap, q0star=q0s, delta_eff=dn,
                   train_error=float("nan"), objective=float("nan"))
    mc_err = dict(q=q_err, m=q_err, overlap=(q_err / (2 * math.sqrt(q * q0s)) if q > 0 else float("nan")))
    K = T * (T + 1)
    if proj:
        vals = [test_error_softmax(b["q"], cfg, pre, key=jax.random.fold_in(jax.random.fold_in(key, 7), r))
                for r, b in enumerate(reps)]
        vals = np.array(vals)
        metrics["test_error"] = float(vals[:, 0].mean())
        metrics["test_error_clean"] = float(vals[:, 1].mean())
        sdev = lambda x: float(x.std(ddof=1) / math.sqrt(len(x))) if len(x) > 1 else float("nan")
        mc_err["test_error"] = sdev(vals[:, 0])
        mc_err["test_error_clean"] = sdev(vals[:, 1])
    else:
        metrics["test_error"] = K * (dn + q0s ** 2 - q ** 2)
        metrics["test_error_clean"] = metrics["test_error"] - K * cfg.delta_prime / 2.0
        mc_err["test_error"] = mc_err["test_error_clean"] = 2 * K * q * q_err
    g2, g2n = best["g2"], best["g2_nishimori"]
    results = best["results"]
    solver = dict(converged=bool(sol.stats["converged"]), engine="theory.engine",
                  result=sol.result, mc_repeats=settings.repeats,
                  iterations=int(max(r.iterations for r in results)),
                  residual=float(max(r.residual for r in results)),
                  seconds=time.perf_counter() - t0, branch=best["start"], n_nodes=int(n_nodes),
                  grid_converged=bool(grid_ok), grid_diff=grid_diff,
                  nishimori_g2=float(g2), nishimori_g2_cross=float(g2n),
                  nishimori_rel_diff=float(abs(g2 - g2n) / max(abs(g2), 1e-12)),
                  free_entropy=best["free_entropy"],
                  distinct_branches=bool(sol.stats["n_branches"] > 1))
    out_branches = tuple(dict(q=b["q"], m=b["q"], q_err=nan(b["mc_err"]["q"]),
                              free_entropy=b["free_entropy"],
                              free_entropy_err=nan(b["mc_err"]["free_entropy"]),
                              label=b["start"], stable=b["stable"], slope=b["slope"],
                              selected=b["selected"]) for b in sol.starts)
    return FinetuneState(q=q, m=q, v=q0s - q, qhat=qhat, mhat=qhat, c=(pre.M / pre.Q if pre.Q > 0 else 0.0),
                         delta_eff=dn, delta_eff_train=dn, metrics=metrics, mc_err=mc_err,
                         solver=solver, branches=out_branches, flags=tuple(flags))
