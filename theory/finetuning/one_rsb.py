"""One-step RSB (1RSB), zero temperature, of symmetric rank-one LoRA ERM: the channel-independent
part (THEORY.md §10, docs/validation/scarce_data.md §3.16–§3.17).

The 1RSB free energy (R2) is a ridge-prior term, which has a closed form (R3), plus α'Ψ_out, an
average over the outer fields of a tilted inner average of the Moreau envelope M(ω) of the
channel's loss ℓ'(z; q) (R4). Only Ψ_out and its sample means depend on the attention: the linear
channel (:mod:`.one_rsb_linear`, exact prox and quadrature) and the softmax channel
(:mod:`.one_rsb_softmax`, the project's multistart prox and a rotated Gauss–Hermite inner rule)
supply them as a ``means_fn``; everything below is shared.

Order parameters x = (q, q0, m, v): self-overlap q (enters ℓ' explicitly, T30), inter-state
overlap q0 ≤ q, m = w·w*/d, intra-state response v = β(q − q1); Parisi μ = β·m_P; conjugates
(q̂, q̂0, v̂, m̂).

(R2) φ = ½q̂v − ½v̂q + (μ/2)(q̂q − q̂0q0) + m̂m + Φ_in + α'Ψ_out,
(R3) Φ_in = (1/2μ)log D − VP/(2D),  V = 1/(2λ' + v̂), D = 1 − μV(q̂ − q̂0), P = q̂0 + q0*m̂²,
(R4) Ψ_out = −(1/μ) E_out log E_ξ1 exp(−μ M(ω0 + ω1)), M(ω) = min_z |z − ω|²/(2v) + ℓ'(z; q),
     ω0 = √q0 ξ0, ζ = (m/√q0)ξ0 + s'η, s' = √(q0* − m²/q0), ω1 = √(q − q0) ξ1, ξ's ~ N(0, I_T).
(R5) prior: v = 1/(2λ' + v̂), D = 1 − μv(q̂ − q̂0), m = q0*m̂v/D, q0 = v²(q̂0 + q0*m̂²)/D²,
     q = q0 + v²(q̂ − q̂0)/D.
(R6) channel (⟨·⟩ the inner average tilted by e^{−μM}, f = (ẑ − ω)/v): q̂ = α'E⟨|f|²⟩,
     q̂0 = α'E|⟨f⟩|², m̂ = α'E[⟨f⟩·η]/s',
     v̂ = μq̂ − (α'/√(q − q0))E⟨ξ1·f⟩ + 2α'E⟨∂_qℓ'⟩   ("inner", Stein on ξ1)
       = μ(q̂ − q̂0) − (α'/√q0)[E⟨f⟩·ξ0 − (m/(s'√q0))E⟨f⟩·η] + 2α'E⟨∂_qℓ'⟩   ("outer").
(R7) e(μ) = ∂_μ(μφ) = α'E⟨ℓ'(ẑ)⟩ + λ'q; (R8) Σ(μ) = μ(e − φ) = μ²∂_μφ.
Ground state: e_GS = φ(μ*) at Σ(μ*) = 0 on the physical (e non-increasing) part of a branch.
RS reduction: q0 = q (or μ = 0) gives T30–T31 term by term; q0 = q is invariant under R5∘R6.

The derivation is channel-independent (Gaussian integration by parts in ξ0, ξ1, η acts on ω and ζ,
never on the form of ℓ'); only ∂_qℓ' (the explicit-q term of T30) is the channel's.

A ``means_fn(x, mu)`` returns ``(means, per_sample)``: floats F (R4's −(1/μ)log E e^{−μM}, E M at
μ = 0), f2 = ⟨|f|²⟩, fm2 = |⟨f⟩|², train = ⟨ℓ'⟩, dq = ⟨∂_qℓ'⟩, xi1f = ⟨ξ1·f⟩, fxi0 = ⟨f⟩·ξ0,
feta = ⟨f⟩·η, M = ⟨M⟩, averaged over the outer samples, and the per-outer-sample arrays of F and
train (antithetic in η: the first and second halves are pairs) for the MC errors.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from .lora_channel import antithetic_units

__all__ = ["Problem", "hats", "prior_term", "prior_update", "phi", "sanitize", "map_step",
           "solve_mu", "ground_state", "RECORD_KEYS"]


@dataclasses.dataclass(frozen=True)
class Problem:
    """The prior's and the sample ratio's constants: T, α', λ', q0*."""
    T: int
    alpha: float
    lam: float
    q0s: float


def hats(x, mu, means: dict, prob, vhat_form: str = "inner"):
    """(R6) conjugates (q̂, q̂0, v̂, m̂) from the outer means. vhat_form: "inner" (Stein on ξ1,
    needs q > q0) or "outer" (Stein on ξ0: the RS formula of T30 at q0 = q)."""
    q, q0, m, v = (float(t) for t in x)
    al = prob.alpha
    sp = math.sqrt(max(prob.q0s - m * m / q0, 0.0))
    qh = al * means["f2"]
    qh0 = al * means["fm2"]
    mh = al * means["feta"] / sp if sp > 0 else 0.0
    expl = 2 * al * means["dq"]
    if vhat_form == "inner" and q - q0 > 0:
        vh = mu * qh - al / math.sqrt(q - q0) * means["xi1f"] + expl
    else:
        vh = mu * (qh - qh0) - al / math.sqrt(q0) * (means["fxi0"] - m / (sp * math.sqrt(q0))
                                                     * means["feta"]) + expl
    return qh, qh0, vh, mh


def prior_term(mu, qh, qh0, vh, mh, lam, q0s):
    """(R3) Φ_in = (1/2μ)log D − VP/(2D); μ → 0: −V(q̂ + q0*m̂²)/2 (the RS prior term of T31)."""
    V = 1.0 / (2 * lam + vh)
    dq = qh - qh0
    D = 1.0 - mu * V * dq
    P = qh0 + q0s * mh * mh
    lg = -V * dq / 2 if mu == 0 else math.log(D) / (2 * mu)
    return lg - V * P / (2 * D)


def prior_update(mu, qh, qh0, vh, mh, lam, q0s):
    """(R5) (q, q0, m, v) from the conjugates (stationarity of R2 in q̂, q̂0, m̂, v̂)."""
    v = 1.0 / (2 * lam + vh)
    D = 1.0 - mu * v * (qh - qh0)
    if not D > 0:
        raise FloatingPointError(f"1RSB prior: D = {D} ≤ 0")
    q0 = v * v * (qh0 + q0s * mh * mh) / D ** 2
    return np.array([q0 + v * v * (qh - qh0) / D, q0, q0s * mh * v / D, v])


def phi(x, mu, h, means: dict, prob):
    """(R2) the 1RSB free energy at (x, hats h), and (R7) the energy of the dominant states."""
    q, q0, m, v = (float(t) for t in x)
    qh, qh0, vh, mh = h
    val = (0.5 * qh * v - 0.5 * vh * q + 0.5 * mu * (qh * q - qh0 * q0) + mh * m
           + prior_term(mu, qh, qh0, vh, mh, prob.lam, prob.q0s) + prob.alpha * means["F"])
    return val, prob.alpha * means["train"] + prob.lam * q


def sanitize(x, q0s):
    """Clip x = (q, q0, m, v) into the domain 0 < q0 ≤ q, m² < q0 q0*, v > 0."""
    q = max(float(x[0]), 1e-10)
    q0 = min(max(float(x[1]), 1e-10), q)
    m = float(np.clip(x[2], -(1 - 1e-9) * math.sqrt(q0 * q0s), (1 - 1e-9) * math.sqrt(q0 * q0s)))
    return np.array([q, q0, m, max(float(x[3]), 1e-8)])


def map_step(x, mu, means_fn, prob, vhat_form="inner"):
    """x ↦ prior_update(hats(channel(x))): R5 ∘ R6. Returns (new x, hats, means, per-sample)."""
    x = sanitize(x, prob.q0s)
    mn, out = means_fn(x, mu)
    h = hats(x, mu, mn, prob, vhat_form)
    return prior_update(mu, *h, prob.lam, prob.q0s), h, mn, out


RECORD_KEYS = ("q", "q0", "m", "v", "phi", "energy", "sigma", "train", "overlap", "overlap_inter",
               "test_error", "phi_se", "train_se", "residual", "converged")


def solve_mu(prob, mu, means_fn, x0, test_error, *, rs=False, tol=1e-8, damping=0.5,
             max_iter=6, maxfev_factor=12, fd_step=None, res_tol=1e-6, res_scale=1e-3):
    """Saddle of R2 at fixed μ: damped iteration of the map R5∘R6, then Powell's hybrid method
    (scipy ``root``, finite-difference Jacobian; frozen draws make the map deterministic) on
    G(x) − x. ``rs``: the RS subspace q0 = q (3 unknowns; v̂ by the outer Stein form = T30).
    ``test_error(q, m)``: the channel's T32 test error of a state with those overlaps.

    Smooth maps (the linear channel's exact prox) take the defaults. A map whose samples jump
    between local minima as x moves (the softmax channel's multistart prox) is smooth only above
    the scale of one sample's jump, O(1/N): ``fd_step`` (relative finite-difference step, e.g.
    1e-2) keeps the Jacobian above it, and ``res_tol``/``res_scale`` set the convergence test
    max_i |G_i(x)|/(|x_i| + res_scale) < res_tol to the map's own resolution.

    Returns a record with x, hats, φ, e (R7), Σ = μ(e − φ) (R8), the residual, converged, the MC
    errors of φ and train from the outer samples, and ``nfev`` (map evaluations)."""
    from scipy.optimize import root

    form = "outer" if rs else "inner"
    full = (lambda y: np.array([y[0], y[0], y[1], y[2]])) if rs else (lambda y: y)
    red = (lambda x: np.array([x[0], x[2], x[3]])) if rs else (lambda x: np.asarray(x))
    nfev = [0]

    def G(y):
        nfev[0] += 1
        x = sanitize(full(y), prob.q0s)
        return red(map_step(x, mu, means_fn, prob, form)[0]) - red(x)

    y = red(sanitize(x0, prob.q0s))
    for _ in range(max_iter):
        try:
            step = G(y)
        except FloatingPointError:
            damping *= 0.5
            continue
        y = red(sanitize(full(y + damping * step), prob.q0s))
        if np.max(np.abs(step) / (np.abs(y) + 1e-3)) < 1e-3:
            break

    def Gs(y):
        try:
            return G(y)
        except FloatingPointError:
            return np.full(y.shape, 1e3)
    opts = dict(xtol=tol, maxfev=maxfev_factor * (y.size + 1))
    if fd_step is not None:
        opts["eps"] = fd_step ** 2              # MINPACK epsfcn: the step is √eps · |x|
    sol = root(Gs, y, method="hybr", options=opts)
    if np.max(np.abs(Gs(sol.x))) < np.max(np.abs(Gs(y))):
        y = sol.x
    x = sanitize(full(y), prob.q0s)
    try:
        xn, h, mn, out = map_step(x, mu, means_fn, prob, form)
        res = float(np.max(np.abs(xn - x) / (np.abs(x) + res_scale)))
    except FloatingPointError:
        mn, out = means_fn(x, mu)
        h = hats(x, mu, mn, prob, form)
        res = math.inf
    ph, e = phi(x, mu, h, mn, prob)
    # MC errors of φ and of the train error from the outer samples (antithetic pairs averaged;
    # at a saddle the order parameters' own fluctuations move φ only at second order)
    q, q0, m, v = (float(t) for t in x)
    return dict(mu=mu, q=q, q0=q0, m=m, v=v, qhat=h[0], qhat0=h[1], vhat=h[2], mhat=h[3], phi=ph,
                energy=e, sigma=mu * (e - ph), train=mn["train"], residual=res,
                converged=res < res_tol, overlap=abs(m) / math.sqrt(q * prob.q0s),
                overlap_inter=abs(m) / math.sqrt(q0 * prob.q0s),
                test_error=float(test_error(q, m)), phi_se=prob.alpha * _se(out["F"]),
                train_se=_se(out["train"]), nfev=nfev[0])


def _se(y) -> float:
    """Standard error of the mean of per-outer-sample values (antithetic pairs averaged)."""
    u = antithetic_units(y)
    return float(u.std(ddof=1) / math.sqrt(u.size))


def ground_state(recs, keys=RECORD_KEYS):
    """μ* where Σ crosses 0 from above between two neighbouring saddles of a branch (records in
    increasing μ), both converged and not RS (q0 < q); every quantity linearly interpolated
    between them. None if no such crossing. (A record that did not converge breaks the branch:
    the continuation may have left it there, e.g. for the symmetric m = 0 branch, and an
    interpolation across the gap would mix two branches.)"""
    ok = lambda r: r["converged"] and r["q"] - r["q0"] > 1e-6 * r["q"]
    for a, b in zip(recs, recs[1:]):
        if ok(a) and ok(b) and a["sigma"] > 0 >= b["sigma"]:
            t = a["sigma"] / (a["sigma"] - b["sigma"])
            g = {k: (1 - t) * a[k] + t * b[k] for k in keys if k != "converged"}
            g["mu"] = (1 - t) * a["mu"] + t * b["mu"]
            return g
    return None
