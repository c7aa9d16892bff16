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


# ------------------------------------------------------------------------------------------------
# the column-wise form (theory/finetuning/lora_columns.py, prox ``columns = True``)
# ------------------------------------------------------------------------------------------------
def _batch(rng, kind: str, T: int, n: int):
    probs = [_problem(rng, kind, T) for _ in range(n)]
    z = jnp.stack([z for z, _ in probs])
    p = jax.tree_util.tree_map(lambda *a: jnp.stack([jnp.asarray(x) for x in a]),
                               *[q for _, q in probs])
    return z, p


def _to_columns(tree):
    return jax.tree_util.tree_map(lambda a: jnp.moveaxis(jnp.asarray(a), 0, -1), tree)


@pytest.mark.parametrize("kind,beta,T", [("softmax", 2.5, 3), ("softmax", 1.0, 2),
                                         ("softmax", 0.7, 4), ("linear", 1.0, 3)])
def test_column_form_equals_the_per_sample_form(kind, beta, T):
    """lora_columns.objective / grad_hess (unrolled over T, problems on the last axis) equal
    the per-sample obj / grad_hess of the channel to rounding, problem by problem."""
    from theory.finetuning import lora_columns

    fns = _closures(kind, beta, T)
    z, p = _batch(np.random.default_rng(2), kind, T, 64)
    f_ref = jax.vmap(fns["obj"])(z, p)
    g_ref, H_ref = jax.vmap(fns["grad_hess"])(z, p)
    zc, pc = z.T, _to_columns(p)
    f = lora_columns.objective(kind, beta)(zc, pc)
    g, H = lora_columns.grad_hess(kind, beta)(zc, pc)
    np.testing.assert_allclose(f, f_ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(g.T, g_ref, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(jnp.moveaxis(H, -1, 0), H_ref, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("kind,beta,T", [("softmax", 2.5, 3), ("softmax", 0.7, 4),
                                         ("linear", 1.0, 3)])
def test_column_hat_terms_equal_the_autodiff_hats(kind, beta, T):
    """lora_columns.hat_terms (closed forms of ∂_ζ∇_zℓ' and ∂_qℓ', T30) equal the per-sample
    hats_one of the channel (autodiff) at the same minimisers, ingredient by ingredient."""
    from theory.finetuning import lora_columns

    fns = _closures(kind, beta, T)
    rng = np.random.default_rng(3)
    n, q0 = 48, 1.0
    x = jnp.asarray([0.6, 0.4, 0.7])                               # (q, m, v)
    xi, eta, zeta, omega = (jnp.asarray(rng.normal(size=(n, T))) for _ in range(4))
    S = rng.normal(size=(n, T, T))
    Htea = rng.normal(size=(n, T, T))
    S, Htea = jnp.asarray(S + np.swapaxes(S, 1, 2)), jnp.asarray(Htea + np.swapaxes(Htea, 1, 2))
    z = jnp.asarray(rng.normal(size=(n, T)))
    ref = jax.vmap(fns["hats_one"], in_axes=(0, None, None, 0, 0, 0, 0, 0, 0))(
        z, x, q0, xi, eta, omega, zeta, S, Htea)
    Y = jax.vmap(fns["teacher"], in_axes=(0, 0, None))(zeta, Htea, q0)
    c = _to_columns
    got = lora_columns.hat_terms(kind, beta)(z.T, omega.T, x[2], x[0], c(S), c(Y), zeta.T,
                                             xi.T, eta.T)
    for k, v in ref.items():
        np.testing.assert_allclose(got[k], v, rtol=1e-9, atol=1e-9, err_msg=k)


def test_column_newton_takes_the_same_steps():
    """batched_newton with ``columns = True`` on the column-wise functions returns the
    per-sample run's minimisers, flags and step count (the same steps, stored transposed)."""
    from theory.finetuning import lora_columns

    fns = _closures("softmax", 1.0, 3)
    z0, p = _batch(np.random.default_rng(1), "softmax", 3, 200)
    ref = batched_newton(fns["obj"], z0, p, grad_hess=fns["grad_hess"], first_iter=2)
    col = batched_newton(lora_columns.objective("softmax", 1.0), z0.T, _to_columns(p),
                         grad_hess=lora_columns.grad_hess("softmax", 1.0), first_iter=2,
                         columns=True)
    assert int(ref["iters"]) > 2                  # the straggler rounds ran in both layouts
    np.testing.assert_allclose(col["z"].T, ref["z"], rtol=0, atol=1e-7)
    for key in ("converged", "nonpd_path", "pd_end"):
        np.testing.assert_array_equal(col[key], ref[key])
    assert abs(int(col["iters"]) - int(ref["iters"])) <= 2
    with pytest.raises(ValueError, match="columns"):
        batched_newton(fns["obj"], z0.T, _to_columns(p), columns=True)


def _at(tree, path):
    for entry in path:
        tree = tree[entry.key]
    return tree


def test_channel_means_equal_in_both_layouts(monkeypatch):
    """The channel's sample means (full multistart and warm polish) with the column-wise prox
    and hats equal those of the per-sample form (COLUMN_FORM_MAX_T = 0) to 1e-9: the layout is
    an implementation detail, not a change of the theory."""
    from theory.config import Config
    from theory.finetuning import lora_channel
    from theory.states import PretrainState

    cfg = Config().replace(theory={"mc_samples": 400})
    pre = PretrainState(Q=1.2, M=1.3, Q0=2.0, V=0.5)
    S = lora_channel._Setup(cfg, pre)
    data = S.data(jax.random.PRNGKey(0))
    x = jnp.asarray([0.8, 0.7, 0.5])
    out = {}
    for t_max in (4, 0):
        monkeypatch.setattr(lora_channel, "COLUMN_FORM_MAX_T", t_max)
        lora_channel._channel_fn.cache_clear()
        run = lora_channel._channel_fn(S.kind, S.beta, S.T, True)
        full, z = run(x, S.q0, jnp.zeros((S.n, S.T)), data, full=True)
        warm, z2 = run(x * 1.01, S.q0, z, data, full=False)
        out[t_max] = (full, z, warm, z2)
    lora_channel._channel_fn.cache_clear()
    for a, b in zip(out[4], out[0]):
        if isinstance(a, dict):                  # the means, with their per-sample arrays
            for path, leaf in jax.tree_util.tree_leaves_with_path(a):
                np.testing.assert_allclose(leaf, _at(b, path), rtol=1e-9, atol=1e-9,
                                           err_msg=jax.tree_util.keystr(path))
        else:
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-8)


@pytest.mark.parametrize("beta,T", [(1.3, 3), (0.7, 2), (2.0, 4)])
def test_output_prox_column_derivatives_equal_sym_loss_derivs(beta, T):
    """The pre-training output prox's column-wise (softmax) ℓ, ∇ℓ, ∇²ℓ and ∂_z∇ℓ in Frobenius coordinates
    (theory/pretraining/output_columns.py) equal sym_loss_fn / sym_loss_derivs (T7–T8, §3.2)."""
    from theory.gaussian import n_sym
    from theory.pretraining import output_columns
    from theory.pretraining.output_prox import Attention, sym_loss_derivs, sym_loss_fn

    K, att, n = n_sym(T), Attention("softmax", beta), 20
    rng = np.random.default_rng(0)
    u, z = (jnp.asarray(rng.normal(size=(n, K))) for _ in range(2))
    gh, mix = sym_loss_derivs(att, T)
    g_ref, H_ref = jax.vmap(gh)(u, z)
    g, H, M = output_columns.derivatives(beta, T)(u.T, z.T)
    full = lambda A: jnp.moveaxis(jnp.array([[jnp.broadcast_to(x, (n,)) for x in row]
                                             for row in A]), -1, 0)
    np.testing.assert_allclose(jnp.stack(g).T, g_ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(full(H), H_ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(full(M), jax.vmap(mix)(u, z), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(output_columns.loss(beta, T)(u.T, z.T),
                               jax.vmap(sym_loss_fn(att, T))(u, z), rtol=1e-12, atol=1e-12)


def test_output_prox_is_the_same_in_both_layouts(monkeypatch):
    """sym_prox (softmax, T = 3) returns the same minimisers, f, traces, loss and flags with the
    column-wise prox as with the per-sample one (COLUMN_FORM_MAX_T = 0), cold and warm."""
    from theory.gaussian import n_sym
    from theory.pretraining import output_prox

    att, T, n = output_prox.Attention("softmax", 2.0), 3, 300
    rng = np.random.default_rng(4)
    om = jnp.asarray(rng.normal(size=(n, n_sym(T))))
    z = jnp.asarray(1.5 * rng.normal(size=(n, n_sym(T))))
    out = {}
    for t_max in (4, 0):
        monkeypatch.setattr(output_prox, "COLUMN_FORM_MAX_T", t_max)
        cold = output_prox.sym_prox(att, om, z, 0.7, warm=om)
        warm = output_prox.sym_prox(att, om * 1.01, z, 0.7, warm=cold.u, cold=False)
        out[t_max] = (cold, warm)
    for a, b in zip(out[4], out[0]):
        for name in ("u", "f", "loss", "value", "tr_inv", "tr_mix", "grad_norm"):
            np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=1e-8, atol=1e-8,
                                       err_msg=name)
        # (``best``, the index of the start kept, is not compared: where several starts reach
        # the same minimiser their objectives tie to rounding, and either index is right)
        for name in ("multimin", "converged"):
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
