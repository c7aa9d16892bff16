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
"""

from __future__ import annotations

import dataclasses
import math
import time
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from theory.fixed_point import damped_fixed_point
from theory.gaussian import goe
from theory.states import FinetuneState, PretrainState

__all__ = ["solve", "alpha_weak_recovery", "delta_n", "gh_grid", "z_out", "choose_nodes",
           "se_moments", "test_error_softmax"]

_CHUNK = 128
from ..solver_constants import ANDERSON_MEMORY  # noqa: E402
STABILITY_STEP = 1e-3     # finite-difference step (× q0*) of the SE map's slope at a fixed point
UNSTABLE_KICK = 1e-2      # start (× q0*) of the plain iteration that leaves an unstable point
PLAIN_ESCAPE = 30         # plain damped steps away from an unstable point before Anderson again
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


def _solve_branch(q_init, draws, q0s, dn, alpha, nodes, logw, proj, cfg):
    """One SE branch from ``q_init``: Anderson-accelerated damped iteration (secant-like for
    this scalar map; the plain iteration needs ~100 steps near q = 0 and near the transition).
    Anderson mixing can land on an unstable fixed point (q = 0 above weak recovery), which the
    plain iteration would leave: the undamped map's slope is checked there (finite difference on
    the same frozen draws) and an unstable point is left by plain damped iterations from a
    perturbed start. The returned branch carries its slope and ``stable``."""
    zeta, eta, A = draws
    qmax = q0s * (1.0 - 1e-9)

    def step(x):
        mom, _ = se_moments(float(np.clip(x[0], 0.0, qmax)), zeta, eta, A, q0s, dn, nodes, logw,
                            proj=proj)
        return np.array([_prior_q(alpha * float(mom[0]), q0s)])

    def slope_at(q):
        h = STABILITY_STEP * q0s if q < 0.5 * q0s else -STABILITY_STEP * q0s
        return float((step(np.array([q + h]))[0] - step(np.array([q]))[0]) / h)

    sol = damped_fixed_point(step, [q_init], damping=cfg.theory.damping, tol=cfg.theory.tol,
                             max_iter=cfg.theory.max_iter, anderson=ANDERSON_MEMORY)
    q = float(np.clip(sol.value[0], 0.0, qmax))
    slope = slope_at(q)
    if sol.converged and slope >= 1.0:
        # leave the unstable point: PLAIN_ESCAPE plain damped steps from a kicked start, then
        # Anderson again; if that lands on an unstable point too, plain iteration to the end
        kick = UNSTABLE_KICK * q0s if q < 0.5 * q0s else -UNSTABLE_KICK * q0s
        used = sol.iterations
        for plain_cap, accel in ((PLAIN_ESCAPE, ANDERSON_MEMORY), (cfg.theory.max_iter, 0)):
            escape = damped_fixed_point(step, [q + kick], damping=cfg.theory.damping,
                                        tol=cfg.theory.tol, max_iter=plain_cap)
            again = escape if escape.converged else damped_fixed_point(
                step, escape.value, damping=cfg.theory.damping, tol=cfg.theory.tol,
                max_iter=cfg.theory.max_iter, anderson=accel)
            used += escape.iterations + (0 if again is escape else again.iterations)
            if not again.converged:
                continue
            q_again = float(np.clip(again.value[0], 0.0, qmax))
            slope_again = slope_at(q_again)
            sol, q, slope = dataclasses.replace(again, iterations=used), q_again, slope_again
            if slope_again < 1.0:
                break
    mom, se = se_moments(q, zeta, eta, A, q0s, dn, nodes, logw, proj=proj)
    mom, se = np.asarray(mom), np.asarray(se)
    qhat = alpha * float(mom[0])
    return dict(q=q, qhat=qhat, g2=float(mom[0]), g2_nishimori=float(mom[1]),
                g2_se=float(se[0]), free_entropy=_free_entropy(q, qhat, float(mom[2]), q0s, alpha),
                slope=slope, stable=bool(slope < 1.0), stats=sol.stats())


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
    key = jax.random.PRNGKey(cfg.theory.seed)
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

    Branches start from q = 0.99 q0* (informative) and q = 1e-4 q0* (uninformative), or from
    ``init`` (a q value) if given; the selected branch maximises the free entropy. Each branch is
    solved on cfg.theory.mc_repeats frozen samples (key = cfg.theory.seed folded with the repeat
    index); metrics are repeat means and ``mc_err`` their standard errors."""
    t0 = time.perf_counter()
    T, q0s, alpha = cfg.model.T, cfg.finetune.q0star, cfg.finetune.alpha
    proj = cfg.model.attention == "softmax"
    dn = delta_n(cfg, pre)
    key = jax.random.PRNGKey(cfg.theory.seed)
    flags = []
    grid_ok, grid_diff = True, float("nan")
    if n_nodes is None:
        n_nodes, grid_ok, grid_diff = choose_nodes(T, q0s, dn, proj, key=jax.random.fold_in(key, 999))
        if not grid_ok:
            flags.append(f"grid_unconverged: Gauss-Hermite grid not converged at Delta_N={dn:.3g}")
    nodes, logw = gh_grid(n_nodes, T)
    starts = [init] if init is not None else [0.99 * q0s, 1e-4 * q0s]
    R = cfg.theory.mc_repeats
    per_start = []
    for q_start in starts:
        reps = []
        for r in range(R):
            draws = _draws(jax.random.fold_in(key, r), cfg.theory.mc_samples, T, q0s, dn)
            q_init = q_start if r == 0 else reps[0]["q"]
            reps.append(_solve_branch(q_init, draws, q0s, dn, alpha, nodes, logw, proj, cfg))
        per_start.append(reps)

    def summary(reps):
        qs = np.array([b["q"] for b in reps])
        fe = np.array([b["free_entropy"] for b in reps])
        se = lambda x: float(x.std(ddof=1) / math.sqrt(len(x))) if len(x) > 1 else float("nan")
        return dict(q=float(qs.mean()), q_err=se(qs), free_entropy=float(fe.mean()),
                    free_entropy_err=se(fe), reps=reps)

    branches = [summary(r) for r in per_start]
    labels = ["informative", "uninformative"] if init is None else ["init"]
    for b, lab in zip(branches, labels):
        b["label"] = lab
    for b in branches:
        b["stable"] = all(r["stable"] for r in b["reps"])
    # select among the stable fixed points the larger free entropy (common random numbers)
    candidates = [b for b in branches if b["stable"]] or branches
    if not any(b["stable"] for b in branches):
        flags.append("no stable SE fixed point found (slope of the SE map >= 1 at every branch)")
    best = max(candidates, key=lambda b: b["free_entropy"])
    distinct = len(branches) > 1 and abs(branches[0]["q"] - branches[1]["q"]) > 1e-3 * q0s
    if not distinct:
        best = branches[0]
    q, q_err = best["q"], best["q_err"]
    reps = best["reps"]
    qhat = float(np.mean([b["qhat"] for b in reps]))
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
    nish = [(b["g2"], b["g2_nishimori"]) for b in reps]
    g2, g2n = np.mean(nish, 0)
    conv = all(b["stats"]["converged"] for br in branches for b in br["reps"])
    if not conv:
        flags.append("not_converged")
    solver = dict(converged=conv, iterations=int(max(b["stats"]["iterations"] for b in reps)),
                  residual=float(max(b["stats"]["residual"] for b in reps)),
                  seconds=time.perf_counter() - t0, branch=best["label"], n_nodes=int(n_nodes),
                  grid_converged=bool(grid_ok), grid_diff=grid_diff,
                  nishimori_g2=float(g2), nishimori_g2_cross=float(g2n),
                  nishimori_rel_diff=float(abs(g2 - g2n) / max(abs(g2), 1e-12)),
                  free_entropy=best["free_entropy"], distinct_branches=bool(distinct))
    out_branches = tuple(dict(q=b["q"], m=b["q"], q_err=b["q_err"], free_entropy=b["free_entropy"],
                              free_entropy_err=b["free_entropy_err"], label=b["label"],
                              stable=b["stable"], selected=b is best) for b in branches)
    return FinetuneState(q=q, m=q, v=q0s - q, qhat=qhat, mhat=qhat, c=(pre.M / pre.Q if pre.Q > 0 else 0.0),
                         delta_eff=dn, delta_eff_train=dn, metrics=metrics, mc_err=mc_err,
                         solver=solver, branches=out_branches, flags=tuple(flags))
