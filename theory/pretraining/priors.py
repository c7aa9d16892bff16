"""Prior (matrix-denoising) step of the pre-training RS equations (THEORY.md T9, T13, T14, T17, T19, T20).

Given the conjugates (Q̂, M̂, V̂) the step solves, for Y_S = M̂ S0* + √Q̂ Z (Z a d×d GOE with
semicircle of variance 1),
    Ŝ = argmin_S (V̂/2)‖S‖²_F − Tr(S Y_S) + R(S),
and returns Q = ‖Ŝ‖²_F/d, M = Tr(Ŝ S0*)/d, V = (2/d²) div_F Ŝ(Y_S) (T9 normalisation),
τ̂ = Tr Ŝ/d, the rank fraction of Ŝ and Ψ_R = (1/d) min (T10, T19).

* :func:`ridge_prior` — ``direct``, R(S) = λ‖S‖²_F: Ŝ = Y_S/(V̂ + 2λ) (T13).
* :func:`nuclear_prior` — ``factorized``, R(S) = λ√κ Tr S + ι_{S⪰0} (T14): soft threshold
  Ŝ = η (S0* + δZ − ε)₊, δ = √Q̂/M̂, ε = λ√κ/M̂, η = M̂/V̂, functionals by free probability (T15–T17).
* :func:`goe_prior_sample` — the same step by sampling S0* and Z at finite d (T20), for tests.

Both analytic functions are pure, float64, and cost ~1 ms (ridge: µs).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import freeprob

__all__ = ["HatDomainError", "PriorStep", "ridge_prior", "nuclear_prior", "goe_prior_sample"]


class HatDomainError(ValueError):
    """The conjugate parameters (Q̂, M̂, V̂) given to a prior step lie outside its domain (e.g.
    M̂ ≤ 0). Inside a fixed-point iteration this means the iterate left the domain of the map;
    :func:`theory.fixed_point.damped_fixed_point` backtracks (the map returns NaN there)."""


@dataclass(frozen=True)
class PriorStep:
    """Result of the prior step (T9): Q, M, V, τ̂ = Tr Ŝ/d, rank fraction of Ŝ, Ψ_R (T10/T19)."""

    Q: float
    M: float
    V: float
    tau_hat: float
    rank_fraction: float
    psi: float


def ridge_prior(*, Q0: float, tau0: float, lam: float, Qhat: float, Mhat: float,
                Vhat: float) -> PriorStep:
    """Ridge prior step (T13), R(S) = λ‖S‖²_F.

    Ŝ = Y_S/(V̂ + 2λ), so V = 1/(V̂ + 2λ) (the divergence of a linear map counts d(d+1)/2 → d²/2
    Frobenius coordinates), M = Q0 M̂ V, Q = (Q0 M̂² + Q̂) V² (‖Z‖²_F/d → 1), τ̂ = τ0 M̂ V,
    Ψ_R = −(Q0 M̂² + Q̂)/(2(V̂ + 2λ)). ``rank_fraction`` = 1 (Ŝ is full rank).
    Requires V̂ + 2λ > 0.
    """
    denom = Vhat + 2.0 * lam
    if not denom > 0:
        raise HatDomainError(f"ridge_prior: Vhat + 2 lam = {denom!r} must be > 0")
    V = 1.0 / denom
    power = Q0 * Mhat * Mhat + Qhat
    return PriorStep(Q=float(power * V * V), M=float(Q0 * Mhat * V), V=float(V),
                     tau_hat=float(tau0 * Mhat * V), rank_fraction=1.0,
                     psi=float(-power / (2.0 * denom)))


def nuclear_prior(*, kappa0: float, kappa: float, lam: float, Qhat: float, Mhat: float,
                  Vhat: float, nodes: int = 600) -> PriorStep:
    """Nuclear-norm prior step on PSD Ŝ (T14, T17, T19), penalty λ√κ Tr Ŝ.

    With δ = √Q̂/M̂, ε = λ√κ/M̂, η = M̂/V̂ and (J, F1, F0, χ) of T16 at (δ, ε):
    Q = η² J, M = η (J + εF1 − δ²χ) (Stein on Z / RIE overlap), V = χ/V̂ (Daleckii–Krein
    divergence; χ is invariant under the rescaling Y_S = M̂(S0* + δZ)), τ̂ = η F1,
    rank fraction F0, Ψ_R = −(M̂²/(2V̂)) J.

    Rank cap (Ŝ = WWᵀ/√(Pd) has rank ≤ κd): if κ < F0 the **hard cut** is applied [conj, T14]:
    only the top κd eigenvalues are kept, i.e. the integrals run over x > c with
    μ_δ((c, ∞)) = κ, keeping φ(x) = η(x − ε) there (φ jumps at c; χ = 2∫φ h μ still holds as a
    principal value, and the Daleckii–Krein divergence includes the jump). Rank fraction = κ then.

    Requires M̂ > 0, V̂ > 0, Q̂ ≥ 0, λ ≥ 0.
    """
    if not Mhat > 0:
        raise HatDomainError(f"nuclear_prior: Mhat = {Mhat!r} must be > 0")
    if not Vhat > 0:
        raise HatDomainError(f"nuclear_prior: Vhat = {Vhat!r} must be > 0")
    if not Qhat >= 0:
        raise HatDomainError(f"nuclear_prior: Qhat = {Qhat!r} must be >= 0")
    if not lam >= 0:
        raise ValueError(f"nuclear_prior: lam = {lam!r} must be >= 0")
    delta = float(np.sqrt(Qhat) / Mhat)
    eps = float(lam * np.sqrt(kappa) / Mhat)
    eta = Mhat / Vhat
    f = freeprob.spectral_functionals(delta, eps, kappa0, nodes=nodes)
    if kappa < f.F0:
        cut = freeprob.upper_quantile(kappa, delta, kappa0, nodes=nodes)
        f = freeprob.spectral_functionals(delta, eps, kappa0, nodes=nodes, cut=cut)
    # ∫_{x>c} (x − ε) x μ = J + ε F1 holds with or without the cut
    M = eta * (f.J + eps * f.F1 - delta * delta * f.chi)
    return PriorStep(Q=float(eta * eta * f.J), M=float(M), V=float(f.chi / Vhat),
                     tau_hat=float(eta * f.F1), rank_fraction=float(f.F0),
                     psi=float(-(Mhat * Mhat / (2.0 * Vhat)) * f.J))


def goe_prior_sample(*, d: int, kappa0: float, kappa: float | None, lam: float, Qhat: float,
                     Mhat: float, Vhat: float, seed: int = 0, estimator: str = "nuclear") -> PriorStep:
    """GOE-sampling route (T20) at finite d: one draw of S0* (M5) and Z, frozen by ``seed``.

    Eigendecompose Y_S = M̂ S0* + √Q̂ Z, apply φ(ν) = (ν − λ√κ)₊/V̂ (``nuclear``; top κd only if the
    cap binds) or ν/(V̂ + 2λ) (``ridge``); Q = ‖Ŝ‖²/d, M = Tr(ŜS0*)/d,
    V = (2/d²)[Σ φ′(ν_i) + Σ_{i<j} (φ_i − φ_j)/(ν_i − ν_j)]. Finite-d corrections are O(1/d)
    (the diagonal Σφ′ term) plus sampling fluctuations O(1/d) for these spectral averages.
    """
    rng = np.random.default_rng(seed)
    P0 = max(1, int(round(kappa0 * d)))
    W0 = rng.standard_normal((d, P0))
    S0 = W0 @ W0.T / np.sqrt(P0 * d)
    G = rng.standard_normal((d, d))
    Z = (G + G.T) / np.sqrt(2.0 * d)
    Y = Mhat * S0 + np.sqrt(Qhat) * Z
    import scipy.linalg          # here: 0.26 s of every process's import otherwise

    nu, U = scipy.linalg.eigh(Y, driver="evd")
    if estimator == "nuclear":
        thr = lam * np.sqrt(kappa)
        phi = np.maximum(nu - thr, 0.0) / Vhat
        dphi = (nu > thr) / Vhat
        if kappa is not None:
            P = max(1, int(round(kappa * d)))
            if P < d:
                keep = np.zeros(d, bool)
                keep[np.argsort(nu)[-P:]] = True
                phi = np.where(keep, phi, 0.0)
                dphi = np.where(keep, dphi, 0.0)
    elif estimator == "ridge":
        phi = nu / (Vhat + 2 * lam)
        dphi = np.full(d, 1.0 / (Vhat + 2 * lam))
    else:
        raise ValueError(estimator)
    S = (U * phi) @ U.T
    dnu = nu[:, None] - nu[None, :]
    dphi_m = phi[:, None] - phi[None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(np.abs(dnu) > 0, dphi_m / dnu, 0.0)
    iu = np.triu_indices(d, 1)
    div = np.sum(dphi) + np.sum(ratio[iu])
    return PriorStep(Q=float(np.sum(S * S) / d), M=float(np.sum(S * S0) / d), V=float(2.0 * div / d ** 2),
                     tau_hat=float(np.trace(S) / d), rank_fraction=float(np.mean(phi > 0)),
                     psi=float("nan"))
