"""The shared fixed-point driver (theory/fixed_point.py) and the GOE_T helpers (theory/gaussian.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, strategies as st

from theory.fixed_point import MAX_BACKTRACKS, FixedPointError, damped_fixed_point
from theory.gaussian import frobenius_inner, goe, n_sym, sym_to_vec, vec_to_sym


def test_converges_to_cos_fixed_point():
    sol = damped_fixed_point(np.cos, [1.0], damping=0.3, tol=1e-12, max_iter=500)
    assert sol.converged and sol.result == "converged"
    assert abs(sol.value[0] - 0.7390851332151607) < 1e-10
    assert sol.stats()["iterations"] == sol.iterations


def test_oscillating_map_needs_damping():
    # x -> -1.5 x + 2.5 has the fixed point 1 but diverges undamped (|slope| > 1); the driver
    # raises the damping when the residual grows and still converges.
    sol = damped_fixed_point(lambda x: -1.5 * x + 2.5, [0.0], damping=0.0, tol=1e-10,
                             max_iter=2000)
    assert sol.converged and abs(sol.value[0] - 1.0) < 1e-8


def _coupled_map(x):
    """A contracting but slowly converging 3-d map (spectral radius ≈ 0.9 under damping 0.5)."""
    A = np.array([[0.8, 0.3, 0.0], [-0.2, 0.7, 0.1], [0.1, 0.0, 0.75]])
    return A @ x + 0.05 * np.sin(x) + np.array([1.0, -0.5, 0.2])


def test_anderson_reaches_the_same_fixed_point_in_fewer_iterations():
    plain = damped_fixed_point(_coupled_map, np.zeros(3), damping=0.5, tol=1e-11, max_iter=5000)
    fast = damped_fixed_point(_coupled_map, np.zeros(3), damping=0.5, tol=1e-11, max_iter=5000,
                              anderson=4)
    assert plain.converged and fast.converged
    np.testing.assert_allclose(fast.value, plain.value, atol=1e-9)
    np.testing.assert_allclose(_coupled_map(fast.value), fast.value, atol=1e-9)
    assert fast.iterations < plain.iterations / 3


def test_anderson_does_not_hide_non_convergence():
    sol = damped_fixed_point(lambda x: x + 1.0, [0.0], tol=1e-9, max_iter=20, anderson=3)
    assert not sol.converged and sol.result == "max_iter"


def test_non_converged_is_reported_not_silent():
    sol = damped_fixed_point(lambda x: x + 1.0, [0.0], tol=1e-9, max_iter=20)
    assert not sol.converged and sol.result == "max_iter" and sol.iterations == 20
    with pytest.raises(FixedPointError, match="not converged"):
        damped_fixed_point(lambda x: x + 1.0, [0.0], tol=1e-9, max_iter=20, throw=True)


def test_nonfinite_is_reported():
    sol = damped_fixed_point(lambda x: x * np.nan, [1.0], max_iter=10)
    assert sol.result == "nonfinite" and not sol.converged
    assert sol.value[0] == 1.0  # never a point where the map was not defined


def _defined_on_positive_half_line(x):
    """x* = 1, slope −2; not defined for x < 0 (like a prior step given M̂ ≤ 0)."""
    return np.where(x >= 0.0, 3.0 - 2.0 * x, np.nan)


def test_backtracks_into_the_domain_and_converges():
    # undamped, the first step jumps to x = −2, outside the domain: the driver must halve its way
    # back (to 0.25), damp more and still reach the fixed point of the map
    sol = damped_fixed_point(_defined_on_positive_half_line, [2.5], damping=0.0, tol=1e-10,
                             max_iter=200)
    assert sol.converged and abs(sol.value[0] - 1.0) < 1e-9
    assert np.isnan(sol.history[1]) and np.isfinite(sol.history[0])


def test_backtracking_gives_up_and_reports_the_last_defined_point():
    calls = []

    def defined_only_at_start(x):
        calls.append(float(x[0]))
        return np.array([5.0]) if len(calls) == 1 else np.array([np.nan])

    sol = damped_fixed_point(defined_only_at_start, [1.0], damping=0.5, max_iter=100)
    assert sol.result == "nonfinite" and not sol.converged
    assert sol.value[0] == 1.0 and len(calls) == 2 + MAX_BACKTRACKS


@given(T=st.integers(2, 5))
def test_sym_vec_round_trip_is_isometric(T):
    H = goe(jax.random.key(T), (7,), T, variance=1.3)
    u = sym_to_vec(H)
    assert u.shape == (7, n_sym(T))
    np.testing.assert_allclose(vec_to_sym(u, T), H, atol=1e-12)
    np.testing.assert_allclose(jnp.sum(u * u, -1), frobenius_inner(H, H), rtol=1e-12)


def test_goe_moments():
    """GOE_T(r): off-diagonal variance r, diagonal 2r; E||H||^2 = T(T+1) r (THEORY §1).
    200k samples: relative s.e. of a variance estimate is sqrt(2/n) ~ 0.3%; tolerance 5 s.e."""
    T, r, n = 3, 0.7, 200_000
    H = np.asarray(goe(jax.random.key(0), (n,), T, variance=r))
    tol = 5 * np.sqrt(2 / n)
    assert abs(H[:, 0, 1].var() / r - 1) < tol
    assert abs(H[:, 1, 1].var() / (2 * r) - 1) < tol
    assert abs((H ** 2).sum((1, 2)).mean() / (T * (T + 1) * r) - 1) < tol
    np.testing.assert_array_equal(H, np.swapaxes(H, 1, 2))


def test_anderson_reaches_a_slow_fixed_point_within_its_step_cap():
    """x -> 0.9 x + 1 (slope 0.9, fixed point 10): the damped map (β = 0.5) contracts at 0.95 per
    step, and the Anderson step to the fixed point is |g|/(1 − 0.9) = 20 damped steps long. With
    the default cap (ANDERSON_MAX_STEP = 30 damped steps) Anderson takes it; with a cap of 10 it is
    refused every time and the iteration crawls at the damped rate (solver_constants)."""
    import numpy as np

    from theory.fixed_point import damped_fixed_point
    from theory.solver_constants import ANDERSON_MAX_STEP

    step = lambda x: 0.9 * x + 1.0   # noqa: E731
    fast = damped_fixed_point(step, np.zeros(1), anderson=3, tol=1e-10, max_iter=1000)
    slow = damped_fixed_point(step, np.zeros(1), anderson=3, tol=1e-10, max_iter=1000,
                              anderson_max_step=10)
    assert ANDERSON_MAX_STEP >= 20
    assert fast.converged and slow.converged
    assert abs(fast.value[0] - 10.0) < 1e-8 and abs(slow.value[0] - 10.0) < 1e-8
    assert fast.iterations <= 10 < 100 < slow.iterations


@pytest.mark.parametrize("seed", [0, 1, 7, 12345, 2**31 - 1, 2**32 + 5, 2**40 + 7])
def test_seed_key_is_prngkey(seed):
    # theory.gaussian.seed_key builds the threefry key on the host: the same key as PRNGKey
    from theory.gaussian import seed_key

    a, b = seed_key(seed), jax.random.PRNGKey(seed)
    assert a.dtype == b.dtype and a.shape == b.shape
    assert np.array_equal(np.asarray(a), np.asarray(b))
    assert np.array_equal(np.asarray(jax.random.normal(a, (3,))), np.asarray(jax.random.normal(b, (3,))))
