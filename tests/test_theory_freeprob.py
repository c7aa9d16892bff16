"""Free-probability building blocks (THEORY.md T15–T17, T23): theory/freeprob.py."""

import numpy as np
import pytest

from theory import freeprob as fp

# (κ0, δ): one bulk, two bulks (κ0 < 1, small δ), κ0 > 1, hard edge at δ = 0
CASES = [(1.0, 0.8), (0.5, 0.5), (0.5, 0.1), (2.0, 0.3), (1.0, 0.0), (0.5, 0.0), (0.3, 1.5)]


@pytest.mark.parametrize("kappa0,delta", CASES)
def test_density_moments(kappa0, delta):
    """μ_δ has mass 1 (atom included), mean √κ0, variance 1 + δ² (M5 + free convolution).

    Gauss–Legendre in θ with square-root edges is spectrally accurate: measured errors ~1e-14
    (1e-12 at the δ = 0 hard edge of κ0 = 1); 1e-9 leaves room without hiding an O(δ²) mistake.
    """
    sp = fp.support(delta, kappa0)
    one = lambda x, h: np.ones_like(x)
    mass = fp.integrate(one, delta, kappa0) + sp.atom
    m1 = fp.integrate(lambda x, h: x, delta, kappa0)
    m2 = fp.integrate(lambda x, h: x * x, delta, kappa0)
    assert abs(mass - 1.0) < 1e-9
    assert abs(m1 - np.sqrt(kappa0)) < 1e-9
    assert abs(m2 - m1 ** 2 - (1.0 + delta ** 2)) < 1e-9


@pytest.mark.parametrize("kappa0,delta", CASES)
def test_hilbert_identities(kappa0, delta):
    """∫hμ = 0 and ∫x h μ = 1/2 (antisymmetric / symmetrised double integrals over x ≠ y).

    h = Re g includes the atom a0 (δ = 0, κ0 < 1) as a0/x. Over the absolutely continuous part:
    ∫_ac h μ + a0·h_ac(0) = 0 with h_ac(0) = −∫_ac μ/y, and ∫_ac x h μ = (1 − a0²)/2 (the
    atom–atom pairs lie on the diagonal). Exception: at δ = 0, κ0 = 1 (hard edge, μ ~ x^{-1/2})
    ∬μμ/(x − y) is not absolutely convergent and h ≡ 1/2 on (0, 4), so ∫hμ = 1/2 there; the
    functionals we use, χ = 2∫(x−ε)₊hμ, are unaffected ((x−ε)₊ vanishes at the edge).
    """
    a0 = fp.support(delta, kappa0).atom
    first = fp.integrate(lambda x, h: h, delta, kappa0)
    if a0 > 0:
        first += a0 * (-fp.integrate(lambda x, h: 1.0 / x, delta, kappa0))
    expected = 0.5 if (delta == 0.0 and kappa0 == 1.0) else 0.0
    assert abs(first - expected) < 1e-9
    assert abs(fp.integrate(lambda x, h: x * h, delta, kappa0) - 0.5 * (1 - a0 ** 2)) < 1e-9


def test_number_of_bulks():
    """κ0 < 1 and small δ: the MP atom at 0 becomes a separate small bulk (T15)."""
    assert len(fp.support(0.1, 0.5).bulks) == 2
    assert len(fp.support(0.5, 0.5).bulks) == 1
    assert len(fp.support(0.8, 1.0).bulks) == 1
    l, r = fp.support(0.0, 1.0).bulks[0]
    assert abs(l) < 1e-15 and abs(r - 4.0) < 1e-12  # MP(1) on [0, 4]


@pytest.mark.parametrize("kappa0,delta,eps", [(1.0, 0.8, 0.6), (0.5, 0.5, 0.3), (0.5, 0.1, 0.05),
                                              (1.0, 0.65, 0.0), (2.0, 0.4, 1.0)])
def test_derivative_identities(kappa0, delta, eps):
    """χ = ∂J/∂(δ²), F1 = −½∂_εJ, F0 = −∂_εF1 (T16) by central differences.

    Step h = 1e-5: truncation O(h²·J''') ~ 1e-10, rounding ~1e-16/h ~ 1e-11; tolerance 1e-7
    relative. (J, F1 are C² in ε; F0 = μ((ε,∞)) is C¹ where μ is continuous.)
    """
    f = fp.spectral_functionals(delta, eps, kappa0)
    h = 1e-5
    Jp = fp.spectral_functionals(np.sqrt(delta ** 2 + h), eps, kappa0).J
    Jm = fp.spectral_functionals(np.sqrt(delta ** 2 - h), eps, kappa0).J
    assert abs((Jp - Jm) / (2 * h) - f.chi) < 1e-7 * (1 + abs(f.chi))
    if eps > 0:
        fp_ = fp.spectral_functionals(delta, eps + h, kappa0)
        fm_ = fp.spectral_functionals(delta, eps - h, kappa0)
        assert abs(-(fp_.J - fm_.J) / (4 * h) - f.F1) < 1e-7 * (1 + f.F1)
        assert abs(-(fp_.F1 - fm_.F1) / (2 * h) - f.F0) < 1e-7


@pytest.mark.parametrize("kappa0", [1.0, 0.5])
def test_small_delta_is_continuous(kappa0):
    """δ → 0 is graceful: δ = 1e-6 (cubic route) agrees with δ = 0 (MP closed form) to O(δ).

    Not at ε = 0 when κ0 < 1: the atom at 0 becomes a bulk of width O(δ) and mass 1 − κ0 that
    (x)₊ cuts in half, so F0 jumps by (1 − κ0)/2 and χ by an O(1) amount as δ → 0⁺ (the
    difference quotient of (x)₊ inside that bulk is O(1) whatever its width). That limit is
    genuinely singular; the code returns the δ = 0 values at δ = 0.
    """
    for eps in ((0.0, 0.5) if kappa0 >= 1 else (0.5, 1e-2)):
        a = fp.spectral_functionals(1e-6, eps, kappa0)
        b = fp.spectral_functionals(0.0, eps, kappa0)
        for k in ("J", "F1", "F0", "chi"):
            assert abs(getattr(a, k) - getattr(b, k)) < 1e-4, k


def test_mmse_reference_values_and_limits():
    """mmse_S (T23): §11(vii) reference values (4 digits), small-s slope c = 2κ0 − κ0² (κ0 < 1)
    or 1, and the large-s limit Var μ0 = 1."""
    assert abs(fp.mmse_S(0.3, 1.0) - 0.1986) < 1e-4
    assert abs(fp.mmse_S(1.5, 1.0) - 0.5465) < 1e-4
    assert abs(fp.mmse_S(0.5, 0.5) - 0.2493) < 1e-4
    for k0, c in [(0.5, 0.75), (1.0, 1.0), (2.0, 1.0)]:
        assert abs(fp.mmse_S(1e-7, k0) / 1e-7 - c) < 2e-3
    assert abs(fp.mmse_S(1e4, 1.0) - 1.0) < 1e-3
    assert fp.mmse_S(0.0, 1.0) == 0.0


@pytest.mark.parametrize("kappa0,s", [(0.5, 0.5), (1.0, 0.3)])
def test_mmse_against_empirical_rie(kappa0, s):
    """Empirical RIE at d = 400: apply φ(x) = x − 2s h_s(x) to the eigenvalues of S0* + √s Z.

    Eigenvalues outside the limiting support (O(d^{-2/3}) of them) are clipped onto it. Each
    sample's ‖φ(Y) − S0*‖²/d fluctuates by O(1/d) and is biased by O(1/d) (§11(vii): 2e-4 at
    d = 1000); with 3 samples at d = 400 we allow 4 s.e. + 2/d·mmse.
    """
    d = 400
    vals = []
    bulks = fp.support(np.sqrt(s), kappa0).bulks
    lo, hi = bulks[0][0], bulks[-1][1]
    for seed in range(3):
        rng = np.random.default_rng(seed)
        P0 = int(round(kappa0 * d))
        W0 = rng.standard_normal((d, P0))
        S0 = W0 @ W0.T / np.sqrt(P0 * d)
        G = rng.standard_normal((d, d))
        Y = S0 + np.sqrt(s) * (G + G.T) / np.sqrt(2 * d)
        nu, U = np.linalg.eigh(Y)
        x = np.clip(nu, lo + 1e-9, hi - 1e-9)
        S = (U * fp.rie_denoiser(x, s, kappa0)) @ U.T
        vals.append(np.sum((S - S0) ** 2) / d)
    vals = np.array(vals)
    m = fp.mmse_S(s, kappa0)
    se = vals.std(ddof=1) / np.sqrt(len(vals))
    assert abs(vals.mean() - m) < 4 * se + 2.0 / d * m
