"""The one batched Newton prox core (theory/prox.py) on the LoRA channel (lora._channel_fn; THEORY.md T29):
analytic derivatives against autodiff, and straggler compaction against the plain loop."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import theory  # noqa: F401  (x64)
from theory.finetuning import lora
from theory.prox import batched_newton


def _closures(kind: str, beta: float, T: int) -> dict:
    run = lora._channel_fn(kind, beta, T, True)
    return {c.cell_contents.__name__: c.cell_contents for c in run.__wrapped__.__closure__
            if callable(c.cell_contents) and hasattr(c.cell_contents, "__name__")}


def _problem(rng, kind: str, T: int):
    z = jnp.asarray(1.5 * rng.normal(size=T))
    S = rng.normal(size=(T, T))
    Y = rng.normal(size=(T, T))
    if kind == "softmax":
        Y = np.exp(Y) / np.exp(Y).sum(-1, keepdims=True)
    p = (jnp.asarray(rng.normal(size=T)), 0.7, 0.4, jnp.asarray(S + S.T), jnp.asarray(Y))
    return z, p


@pytest.mark.parametrize("kind,beta,T", [("softmax", 1.0, 3), ("softmax", 2.5, 3),
                                         ("softmax", 1.0, 2), ("softmax", 0.7, 4),
                                         ("linear", 1.0, 3)])
def test_analytic_gradient_and_hessian_match_autodiff(kind, beta, T):
    """grad_hess (closed form of T29's ∇F, ∇²F) equals jax.grad / jax.hessian of F to rounding."""
    fns = _closures(kind, beta, T)
    analytic = jax.jit(fns["grad_hess"])
    autodiff = jax.jit(lambda z, p: (jax.grad(fns["obj"])(z, p), jax.hessian(fns["obj"])(z, p)))
    rng = np.random.default_rng(0)
    for _ in range(20):
        z, p = _problem(rng, kind, T)
        (g, H), (g_ad, H_ad) = analytic(z, p), autodiff(z, p)
        np.testing.assert_allclose(g, g_ad, rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(H, H_ad, rtol=1e-10, atol=1e-10)


def test_straggler_compaction_takes_the_same_steps():
    """Compaction (first 2 steps on the batch, stragglers 1/16 at a time) returns the same
    minimisers and flags as one loop over the whole batch (first_iter = max_iter).
    Gathered sub-batches are vectorised differently by XLA (last-bit differences), which can
    move the stopping test: a problem whose gradient sits at the 1e-10 tolerance stops when the
    line search finds no decrease, after a rounding-dependent number of steps. So minimisers are
    compared at the solver's resolution (gradient tolerance over Hessian eigenvalues ≳ 1e-3,
    ~1e-7) and the step counts only loosely."""
    fns = _closures("softmax", 1.0, 3)
    rng = np.random.default_rng(1)
    probs = [_problem(rng, "softmax", 3) for _ in range(200)]
    z0 = jnp.stack([z for z, _ in probs])
    p = jax.tree_util.tree_map(lambda *a: jnp.stack([jnp.asarray(x) for x in a]),
                               *[q for _, q in probs])
    plain = batched_newton(fns["obj"], z0, p, grad_hess=fns["grad_hess"], first_iter=40)
    compact = batched_newton(fns["obj"], z0, p, grad_hess=fns["grad_hess"], first_iter=2)
    assert int(plain["iters"]) > 2          # some problems did need the straggler rounds
    np.testing.assert_allclose(compact["z"], plain["z"], rtol=0, atol=1e-7)
    for key in ("converged", "nonpd_path", "pd_end"):
        np.testing.assert_array_equal(compact[key], plain[key])
    assert int(compact["iters"]) <= 40
    assert bool(jnp.all(compact["converged"]))
