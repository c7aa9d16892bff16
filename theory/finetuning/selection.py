"""Active-selection rules (MODEL.md M13) and the selected law of the frozen score (THEORY.md §7).

A rule sees a pool sequence only through its frozen score B = h(X;Ŝ) (T36): it is a function
``score(cB, beta) -> (...,)`` of the student's frozen pre-activation cB, and the pool keeps the
n′ = ρ·n_pool sequences with the *smallest* score. The same functions are used by the simulator
(``simulations/data.py``) and by the theory, so the two can never disagree about what a rule does.

Rules
-----
``random``               constant score: the i.i.d. pool order decides (baseline).
``smallest_score``       ‖B‖_F (THEORY.md §7 default; exact radial sampler T36, m₂ in closed form T37).
``largest_score``        −‖B‖_F.
``largest_sensitivity``  −E_P‖J_σ(cB)[P]‖²_F, the spike's linear response through the frozen
                         operating point (derived below). For linear σ, J_σ = identity and the rule
                         is the random one.

The sensitivity rule (derivation). In the fine-tuning channel (T28) the spike enters the
teacher's pre-activation additively, H* = aB + N + P with P = ζζᵀ − q0*·I, and the student's as
cB + zzᵀ − qI. Linearising the attention around the frozen operating point, the per-sample
gradient of the loss ‖σ(student) − σ(teacher)‖² in the direction of the spike is J_σ(cB)ᵀJ_σ(aB)[P];
near weak recovery (m → 0) the sample's contribution to m̂ (T30) is then proportional to
E_ζ⟨J_σ(cB)[P], J_σ(aB)[P]⟩, and with a ≈ c (recalibrated backbone) to E_ζ‖J_σ(cB)[P]‖²_F.
P has the second moments of GOE_T(q0*²) (E P_ab² = q0*², E P_aa² = 2q0*², distinct entries
uncorrelated), and the row-wise softmax acts on each row separately with Jacobian
A_r = β(diag p_r − p_r p_rᵀ), p_r = softmax(β(cB)_r), so
    E_ζ‖J_σ(cB)[P]‖²_F = q0*² Σ_r Σ_k (1 + δ_rk) ‖A_r e_k‖²,
a closed form in the row probabilities. Sequences whose softmax rows are saturated (one-hot p_r)
carry no information on ζ through the ERM loss; the rule keeps the least saturated ones.
Whether that lowers the test error is a prediction of the theory (not assumed): see the issue 6
note and ``tests/test_theory_selection.py``.

Selected law (T36). ``smallest_score`` uses the exact CRN radial sampler. Any other rule uses the
empirical quantile: ⌈n/ρ⌉ i.i.d. draws B ~ GOE_T(Q) are scored and the n smallest kept, i.e. n
draws from B conditioned on score ≤ its ρ-quantile, up to the O(1/√n) fluctuation of the
empirical quantile (inside the reported MC error).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from ..gaussian import goe, memoize_by_key, n_sym, seed_key

__all__ = ["RULES", "score", "is_random", "spike_sensitivity", "selected_unit_B", "selection_m2",
           "smallest_score_m2", "smallest_score_scale", "POOL_CHUNK"]

POOL_CHUNK = 1_000_000      # draws scored at once when a pool n/ρ is large (memory bound)


def _random(HB, beta):
    return jnp.zeros(HB.shape[:-2], dtype=HB.dtype)


def _smallest_score(HB, beta):
    return jnp.sqrt(jnp.sum(HB * HB, axis=(-1, -2)))


def _largest_score(HB, beta):
    return -jnp.sqrt(jnp.sum(HB * HB, axis=(-1, -2)))


def spike_sensitivity(HB, beta):
    """E_ζ‖J_σ(H)[ζζᵀ − I]‖²_F for row-wise softmax(β·) at H (q0* = 1; see the module docstring)."""
    T = HB.shape[-1]
    p = jax.nn.softmax(beta * HB, axis=-1)                                  # (..., r, k)
    A = beta * (p[..., :, :, None] * jnp.eye(T) - p[..., :, :, None] * p[..., :, None, :])
    col2 = jnp.sum(A * A, axis=-2)                                          # ‖A_r e_k‖², (..., r, k)
    return jnp.sum(col2 * (1.0 + jnp.eye(T)), axis=(-1, -2))


def _largest_sensitivity(HB, beta):
    if beta is None:          # linear attention: J_σ = identity, every sequence is alike
        return jnp.zeros(HB.shape[:-2], dtype=HB.dtype)
    return -spike_sensitivity(HB, beta)


RULES = {
    "random": _random,
    "smallest_score": _smallest_score,
    "largest_score": _largest_score,
    "largest_sensitivity": _largest_sensitivity,
}


def score(rule: str, HB: jax.Array, beta: float | None) -> jax.Array:
    """Score of every frozen operating point ``HB = c·B`` (..., T, T); smaller is kept.
    ``beta`` is the softmax inverse temperature, ``None`` for linear attention."""
    if rule not in RULES:
        raise ValueError(f"finetune.selection = {rule!r} is not a known rule; known: "
                         f"{', '.join(RULES)} (theory/finetuning/selection.py)")
    return RULES[rule](HB, beta)


def is_random(rule: str, beta: float | None) -> bool:
    """Whether the rule's score is constant (the random rule): ``random``, and
    ``largest_sensitivity`` for linear attention (J_σ = identity)."""
    return rule == "random" or (rule == "largest_sensitivity" and beta is None)


def smallest_score_m2(K: int, rho: float) -> float:
    """(T37) m₂(ρ) = F_{K+2}(F_K⁻¹(ρ))/ρ for ``smallest_score`` (K = K_T)."""
    from scipy import stats      # here: scipy.stats costs 0.5 s of every process's import

    if rho >= 1.0:
        return 1.0
    return float(stats.chi2.cdf(stats.chi2.ppf(rho, K), K + 2) / rho)


def smallest_score_scale(B_unit: np.ndarray, rho: float, K: int) -> np.ndarray:
    """(T36) B_sel = B·√(F_K⁻¹(ρF_K(r²))/r²), r² = ‖B‖²_F/2 for unit-GOE B (vectorised scipy)."""
    from scipy import special

    r2 = 0.5 * np.sum(np.asarray(B_unit) ** 2, axis=(-1, -2))
    u = rho * special.gammainc(K / 2, r2 / 2)
    r2s = 2 * special.gammaincinv(K / 2, u)
    return np.sqrt(r2s / r2)


def selected_unit_B(rule: str, key, n: int, T: int, rho: float, *, scale: float,
                         beta: float | None, B_unit=None, exact: bool = True) -> jax.Array:
    """n unit-GOE matrices B distributed as the kept ones (T36): the rule is applied to
    ``scale·B`` (scale = c√Q, the student's frozen operating point).

    ``smallest_score``: exact radial sampler on ``B_unit`` (or fresh draws). Other rules: the n
    smallest scores among ⌈n/ρ⌉ i.i.d. draws (empirical ρ-quantile), scored in chunks of
    :data:`POOL_CHUNK`. ``exact=False`` uses the empirical route for ``smallest_score`` too (a
    test of the empirical route against the exact sampler)."""
    if rho >= 1.0 or is_random(rule, beta):
        return goe(key, (n,), T) if B_unit is None else B_unit
    if rule == "smallest_score" and exact:
        B = goe(key, (n,), T) if B_unit is None else B_unit
        sc = smallest_score_scale(np.asarray(B), rho, n_sym(T))
        return B * jnp.asarray(sc)[:, None, None]
    n_pool = int(math.ceil(n / rho))
    fn = _score_fn(rule, beta)
    # the n smallest scores of the pool, in increasing order (stable: ties keep the draw order).
    # Per chunk only the draws below the n-th smallest score seen so far can still be kept, so
    # the candidates are filtered by that threshold before the (small) sort of the merge.
    kept_B, kept_s = None, None
    for start in range(0, n_pool, POOL_CHUNK):        # loop over memory chunks, not samples
        size = min(POOL_CHUNK, n_pool - start)
        B = goe(jax.random.fold_in(key, start // POOL_CHUNK), (size,), T)
        s = np.asarray(fn(B, scale))
        if kept_s is not None and kept_s.size >= n:
            cand = np.flatnonzero(s <= kept_s[n - 1])
            B, s = jnp.concatenate([kept_B, B[cand]]), np.concatenate([kept_s, s[cand]])
        elif kept_s is not None:
            B, s = jnp.concatenate([kept_B, B]), np.concatenate([kept_s, s])
        order = np.argsort(s, kind="stable")[:n]
        kept_B, kept_s = B[order], s[order]
    return kept_B


@functools.lru_cache(maxsize=None)
def _score_fn(rule: str, beta: float | None):
    """The jitted score of a rule at scale ``scale`` (one program per rule and β, not per call)."""
    return jax.jit(lambda B, scale: score(rule, scale * B, beta))


def selection_m2(rule: str, T: int, rho: float, *, scale: float, beta: float | None,
                 key=None, n: int = 200_000) -> float:
    """m₂(ρ) = E‖B_sel‖²_F / E‖B‖²_F (T37). Closed form F_{K+2}(F_K⁻¹(ρ))/ρ for
    ``smallest_score``; for other rules the mean over n selected draws (fixed key: a
    deterministic function of its arguments)."""
    if rho >= 1.0 or is_random(rule, beta):
        return 1.0
    if rule == "smallest_score":
        return smallest_score_m2(n_sym(T), rho)
    # memoised (a pure function of its arguments: the Δ_eff,train of one point is asked for
    # several times, the value and its error propagation)
    return _selection_m2_mc(seed_key(12345) if key is None else key, rule, T,
                            float(rho), float(scale), beta, int(n))


@memoize_by_key(maxsize=256)
def _selection_m2_mc(key, rule: str, T: int, rho: float, scale: float, beta, n: int) -> float:
    """m₂ of :func:`selection_m2` from n kept draws of the pool on ``key``."""
    B = selected_unit_B(rule, key, n, T, rho, scale=scale, beta=beta)
    return float(jnp.mean(jnp.sum(B * B, axis=(-1, -2))) / (T * (T + 1)))
