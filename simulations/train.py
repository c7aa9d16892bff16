"""Optimisers of the two stages (MODEL.md M7, M11, M12).

* :func:`lbfgs` — one jitted ``lax.while_loop`` around ``optax.lbfgs`` (zoom line search) that
  stops at a stationarity test, at ``max_steps`` or when the objective stops decreasing
  (``stalled``), and returns an :class:`OptReport` (objective, gradient norm, steps, converged).
  It is pure and vmappable (restarts, seeds).
* :func:`conjugate_gradient` — matrix-free CG for a symmetric PSD operator on pytrees.
* Pre-training (M7): :func:`pretrain_factorized` (W ∈ R^{d×P}, L(W) = Σℓ + λ‖W‖²_F),
  :func:`pretrain_direct_linear` (ridge over symmetric S, exact by CG on the normal equations,
  never a d²×d² matrix), :func:`pretrain_direct_lbfgs` (softmax). ``bayes`` is theory only.
* Fine-tuning (M11, M12): :func:`finetune_lora` — L-BFGS from ``restarts`` starts (one spectral,
  the rest random), vmapped, keeping the lowest objective.

Objectives are minimised in the scaled form L/d² (pre-training) and L'/d (fine-tuning), the
orders of MODEL.md, which are also the reported ``objective`` metrics.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from . import model

__all__ = [
    "OptReport", "lbfgs", "conjugate_gradient", "tree_norm",
    "pretrain_factorized_objective", "pretrain_factorized", "pretrain_direct_objective",
    "pretrain_direct_linear", "pretrain_direct_lbfgs", "normal_operator",
    "finetune_objective", "spectral_direction", "finetune_lora", "RESTART_RTOL",
]

# Restarts whose objective is within this relative distance of the best count as successes.
RESTART_RTOL = 1e-6
# Consecutive non-decreasing steps after which L-BFGS is declared stalled (precision floor).
_STALL_STEPS = 8


class OptReport(NamedTuple):
    """Result of an iterative solver (arrays, so it survives jit and vmap)."""

    value: jax.Array       # objective at the returned point
    grad_norm: jax.Array   # the stationarity measure that was tested against the tolerance
    steps: jax.Array       # iterations taken
    converged: jax.Array   # bool: grad_norm <= tolerance
    stalled: jax.Array     # bool: stopped because the objective no longer decreased


def tree_norm(tree) -> jax.Array:
    """Euclidean norm of a pytree."""
    return jnp.sqrt(sum(jnp.sum(leaf * leaf) for leaf in jax.tree_util.tree_leaves(tree)))


def lbfgs(fun: Callable, params0, *, gtol: float, max_steps: int, memory: int = 10,
          stationarity: Callable | None = None):
    """Minimise ``fun`` by L-BFGS (optax, zoom line search) to stationarity.

    ``stationarity(value, grad)`` is the quantity tested against ``gtol`` (default: the gradient
    norm). Returns ``(params, OptReport)``. Stops early when the objective has not decreased for
    several steps (f64 precision floor); such a run is ``converged`` only if it passes the test.
    """
    if stationarity is None:
        stationarity = lambda value, grad: tree_norm(grad)  # noqa: E731
    opt = optax.lbfgs(memory_size=memory)
    value_and_grad = optax.value_and_grad_from_state(fun)
    value0, grad0 = jax.value_and_grad(fun)(params0)

    def cond(carry):
        _, _, value, grad, step, stall = carry
        return (stationarity(value, grad) > gtol) & (step < max_steps) & (stall < _STALL_STEPS)

    def body(carry):
        params, state, value, grad, step, stall = carry
        updates, state = opt.update(grad, state, params, value=value, grad=grad, value_fn=fun)
        params = optax.apply_updates(params, updates)
        new_value, new_grad = value_and_grad(params, state=state)
        stall = jnp.where(new_value < value, 0, stall + 1)
        return params, state, new_value, new_grad, step + 1, stall

    carry = (params0, opt.init(params0), value0, grad0, jnp.asarray(0), jnp.asarray(0))
    params, _, value, grad, step, stall = jax.lax.while_loop(cond, body, carry)
    measure = stationarity(value, grad)
    report = OptReport(value, measure, step, measure <= gtol, stall >= _STALL_STEPS)
    return params, report


def conjugate_gradient(operator: Callable, rhs, *, rtol: float, max_steps: int, x0=None):
    """Solve ``operator(x) = rhs`` (symmetric PSD, matrix-free, pytrees) by conjugate gradients.

    Returns ``(x, OptReport)`` with ``value`` = relative residual |rhs − A x|/|rhs| and
    ``grad_norm`` the same quantity (the tested one)."""
    dot = lambda a, b: sum(jnp.vdot(x, y) for x, y in  # noqa: E731
                           zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)))
    axpy = lambda a, x, y: jax.tree_util.tree_map(lambda u, v: a * u + v, x, y)  # noqa: E731
    x = jax.tree_util.tree_map(jnp.zeros_like, rhs) if x0 is None else x0
    r = jax.tree_util.tree_map(lambda b, ax: b - ax, rhs, operator(x))
    rhs_norm = jnp.sqrt(dot(rhs, rhs))
    rr = dot(r, r)

    def cond(carry):
        _, _, _, rr, step = carry
        return (jnp.sqrt(rr) > rtol * rhs_norm) & (step < max_steps)

    def body(carry):
        x, r, p, rr, step = carry
        Ap = operator(p)
        a = rr / dot(p, Ap)
        x = axpy(a, p, x)
        r = axpy(-a, Ap, r)
        rr_new = dot(r, r)
        p = axpy(rr_new / rr, p, r)
        return x, r, p, rr_new, step + 1

    x, r, _, rr, step = jax.lax.while_loop(cond, body, (x, r, r, rr, jnp.asarray(0)))
    rel = jnp.sqrt(rr) / rhs_norm
    return x, OptReport(rel, rel, step, rel <= rtol, jnp.asarray(False))


# --------------------------------------------------------------------------------------------
# pre-training (M7)
# --------------------------------------------------------------------------------------------
def _pretrain_stationarity(value, grad):
    """|∇(L/d²)| / (1 + |L/d²|) (sim.pretrain_gtol)."""
    return tree_norm(grad) / (1.0 + jnp.abs(value))


def pretrain_factorized_objective(W, X, G, A_target, *, lam, attention, beta, output):
    """(M7) L(W)/d² with L = Σ_μ ℓ_μ(σ(h(X_μ; W Wᵀ/√(Pd)))) + λ‖W‖²_F."""
    d = X.shape[-1]
    A = model.attention(model.score_factor(X, W), attention, beta)
    return (jnp.sum(model.per_sample_loss(A, A_target, G, output)) + lam * jnp.sum(W * W)) / d**2


def pretrain_factorized(W_init, X, G, A_target, *, lam, attention, beta, output, gtol, max_steps):
    """(M7, factorized) L-BFGS on W from ``W_init``; returns ``(W, OptReport)``."""
    fun = lambda W: pretrain_factorized_objective(  # noqa: E731
        W, X, G, A_target, lam=lam, attention=attention, beta=beta, output=output)
    return lbfgs(fun, W_init, gtol=gtol, max_steps=max_steps, stationarity=_pretrain_stationarity)


def pretrain_direct_objective(S, X, G, A_target, *, lam, attention, beta, output):
    """(M7, direct) L(S)/d² with L = Σ_μ ℓ_μ(σ(h(X_μ; S))) + λ d ‖S‖²_F (S symmetrised)."""
    d = X.shape[-1]
    S = 0.5 * (S + S.T)
    A = model.attention(model.score_dense(X, S), attention, beta)
    return (jnp.sum(model.per_sample_loss(A, A_target, G, output)) + lam * d * jnp.sum(S * S)) / d**2


def normal_operator(S, X, G, *, lam):
    """Normal-equation operator of the linear-attention ridge problem on Sym(d), matrix-free:
    S ↦ sym Σ_μ h_μᵀ(h_μ(S) G_μ) + λ d S  (h_μᵀ the adjoint of the score map; G = I for the
    attention output). Half the Hessian of L(S)."""
    d = X.shape[-1]
    E = model.score_dense(X, S) @ G
    adj = model.score_adjoint(X, E)
    return 0.5 * (adj + adj.T) + lam * d * S


def pretrain_direct_linear(X, G, A_target, *, lam, rtol, max_steps):
    """(M7, direct, linear σ) exact ridge solution by CG on the normal equations
    sym Σ h_μᵀ(h_μ(S) G_μ) + λ d S = sym Σ h_μᵀ(A*_μ G_μ). Returns ``(S, OptReport)``."""
    adj = model.score_adjoint(X, A_target @ G)
    rhs = 0.5 * (adj + adj.T)
    op = lambda S: normal_operator(S, X, G, lam=lam)  # noqa: E731
    return conjugate_gradient(op, rhs, rtol=rtol, max_steps=max_steps)


def pretrain_direct_lbfgs(X, G, A_target, *, lam, attention, beta, output, gtol, max_steps):
    """(M7, direct) L-BFGS on symmetric S from S = 0 (softmax attention)."""
    d = X.shape[-1]
    fun = lambda S: pretrain_direct_objective(  # noqa: E731
        S, X, G, A_target, lam=lam, attention=attention, beta=beta, output=output)
    S, report = lbfgs(fun, jnp.zeros((d, d)), gtol=gtol, max_steps=max_steps,
                      stationarity=_pretrain_stationarity)
    return 0.5 * (S + S.T), report


# --------------------------------------------------------------------------------------------
# fine-tuning (M11, M12)
# --------------------------------------------------------------------------------------------
def finetune_objective(params, X, G, B, A_target, c, *, lam, attention, beta, output):
    """(M11, M12) L'/d with L' = Σ_μ ℓ'_μ(σ(c B_μ + h_LoRA(X_μ))) + penalty (B frozen, precomputed)."""
    d = X.shape[-1]
    A = model.attention(model.lora_score(params, X, B, c), attention, beta)
    loss = jnp.sum(model.per_sample_loss(A, A_target, G, output))
    return (loss + model.lora_penalty(params, lam)) / d


def spectral_direction(X, G, B, A_target, c, *, attention, beta, output):
    """Spectral start: the bottom eigenvector of the Hessian of L' at w = 0.

    w = 0 is stationary and L'(w) = L'(0) + wᵀ(K + λ'I)w + O(|w|⁴) with
    K = Σ_μ sym(X_μᵀ E_μ X_μ − Tr(E_μ) I)/d and E_μ = ∂ℓ_μ/∂H at the frozen score H = c B_μ
    (for linear σ and the attention output E_μ = −2(A'*_μ − c B_μ): the residual, and
    E K ∝ −w*w*ᵀ/d, since E Xᵀ(ζζᵀ − q0* I)X = T(T+1) w*w*ᵀ/d). Returns the unit eigenvector
    of the most negative eigenvalue and that eigenvalue."""
    d = X.shape[-1]

    def loss_of_score(H, A_t, G_):
        return model.per_sample_loss(model.attention(H, attention, beta), A_t, G_, output)

    E = jax.vmap(jax.grad(loss_of_score))(c * B, A_target, G)
    K = model.score_adjoint(X, E) / jnp.sqrt(d)
    K = 0.5 * (K + K.T)
    evals, evecs = jnp.linalg.eigh(K)
    return evecs[:, 0], evals[0]


def finetune_lora(X, G, B, A_target, c, *, key, lora, learned_c, restarts, lam, attention, beta,
                  output, gtol, max_steps, scale_grid=None):
    """(M11, M12) LoRA fine-tuning by L-BFGS from ``restarts`` starts, vmapped.

    Start 0 is spectral (:func:`spectral_direction`), the others uniformly random directions;
    all use the norm |w|²/d chosen by a grid search of the objective along the spectral direction.
    ``learned_c``: c joins the parameters (initial value ``c``). General LoRA starts at u = v.
    Returns ``(best_params, info)`` with the best objective's parameters and a dict of per-restart
    objectives, the best run's :class:`OptReport` fields and the success fraction (within
    :data:`RESTART_RTOL` of the best)."""
    d = X.shape[-1]
    fun = lambda p: finetune_objective(  # noqa: E731
        p, X, G, B, A_target, c, lam=lam, attention=attention, beta=beta, output=output)

    def make_params(w_u, w_v):
        params = {"w": w_u} if lora == "symmetric" else {"u": w_u, "v": w_v}
        if learned_c:
            params["c"] = jnp.asarray(c, dtype=jnp.float64)
        return params

    direction, _ = spectral_direction(X, G, B, A_target, c, attention=attention, beta=beta,
                                      output=output)
    if scale_grid is None:
        scale_grid = jnp.geomspace(0.02, 4.0, 24)
    grid_values = jax.vmap(
        lambda q: fun(make_params(jnp.sqrt(q * d) * direction, jnp.sqrt(q * d) * direction)))(
            scale_grid)
    q_init = scale_grid[jnp.argmin(grid_values)]

    key_u, key_v = jax.random.split(key)
    def random_dirs(k):
        g = jax.random.normal(k, (restarts, d))
        return g / jnp.linalg.norm(g, axis=1, keepdims=True)
    dirs_u = random_dirs(key_u).at[0].set(direction)
    dirs_v = random_dirs(key_v).at[0].set(direction)
    if lora == "symmetric":
        dirs_v = dirs_u
    starts = jax.vmap(make_params)(jnp.sqrt(q_init * d) * dirs_u, jnp.sqrt(q_init * d) * dirs_v)

    solve = lambda p0: lbfgs(fun, p0, gtol=gtol, max_steps=max_steps)  # noqa: E731
    params_all, reports = jax.vmap(solve)(starts)
    best = jnp.argmin(reports.value)
    best_params = jax.tree_util.tree_map(lambda leaf: leaf[best], params_all)
    gap = (reports.value - reports.value[best]) / jnp.abs(reports.value[best])
    info = {
        "objective": reports.value[best],
        "grad_norm": reports.grad_norm[best],
        "steps": reports.steps[best],
        "converged": reports.converged[best],
        "stalled": reports.stalled[best],
        "restart_objectives": reports.value,
        "restart_converged": reports.converged,
        "restart_success_fraction": jnp.mean(gap <= RESTART_RTOL),
        "best_restart": best,
        "q_init": q_init,
    }
    return best_params, info
