"""Replica-symmetric pre-training fixed point for any σ (softmax with β, or linear), ``direct`` and
``factorized`` (THEORY.md T6–T11, T13, T14–T19, §9).

The equations are the channel :class:`theory.pretraining.channel.PretrainChannel` (T6–T8 output
side with the Sym_T prox T7, T13 or T14–T17 prior step, T10/T19 free energy, T11 outputs); the
solve protocol is :mod:`theory.engine` (one driver for every RS channel, constants in
:mod:`theory.solver_constants`): the damped, Anderson-accelerated iteration of x = (Q, M, V) in
the channel's coordinates y = (log Q, atanh(M/√(Q Q0)), log V), an iterate whose hats leave the
prior's domain backtracked; phase 1 with the prox warm-started only (each sample from its previous
minimiser; a cold start begins at Ω), phase 2 one full multistart step (§3.2: Ω, the interpolating
point, the linearised prox, the warm start), phase 1 again from the minima it chose if some
sample switched (rounds); a stalled derivative-form iteration retried with the Stein hats; the
reported point a fixed point of the full map, its last full evaluation the reported one.
``theory.max_iter`` caps each solve. MC error (§9): the whole solve is repeated over
``cfg.theory.mc_repeats`` independent frozen samples (repeat r > 0 on the draws of
``fold_in(PRNGKey(seed), r)``, started at repeat 0's fixed point); metrics are the mean over
repeats and ``mc_err`` the standard error of that mean (one repeat: the per-sample standard
errors of the final expectations test/clean/train, None for the rest).

Factorized pre-training also has the exact fixed point Ŝ = 0 (Q = M = V = 0) wherever the
nuclear threshold λ√κ exceeds M̂·edge at the hats of the V → 0 channel (T14–T17;
:meth:`PretrainChannel.zero_row`). The engine's log coordinates cannot reach it (from above the
threshold the iteration ends "nonfinite" on its way to Q = 0), so it is evaluated directly and
competes with the engine's point by free energy (:func:`_choose_zero`): ``solver["branch"]`` is
"zero" or "unique", ``solver["branches"]`` holds both.

Softmax (§3.2, T21): ℓ is flat along 11ᵀ, so f ⊥ 11ᵀ (checked: ``solver["f_parallel_max"]``) and
only n_σ = T² + T − 2 of the T(T+1) entries carry information: the effective sample ratio is
α_eff = α n_σ (α T(T+1) linear). It sets the initial point (the T12 solution at ᾱ = α_eff) and
the near-interpolation warning.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Sequence

import jax
import numpy as np

from ..gaussian import seed_key
from .. import engine
from ..config import Config
from ..solver_constants import STEIN_THRESHOLD
from ..states import PretrainState
from .channel import (Draws, PretrainChannel, channel_averages, draw_channel, hats,  # noqa: F401
                      n_sigma)

__all__ = ["solve", "solve_curve", "Draws", "draw_channel", "channel_averages", "hats",
           "PretrainChannel"]


def initial_point(cfg: Config, alpha: float) -> np.ndarray:
    """T12 (ridge, linear σ) at the effective ratio ᾱ = α n_σ: a cheap, sensible start."""
    pt = cfg.pretrain
    ab = alpha * n_sigma(cfg)
    lam = max(pt.lam, 1e-3)
    B = lam + ab - 1.0
    nu = 2.0 / (B + math.sqrt(B * B + 4.0 * lam)) if B > 0 else (-B + math.sqrt(B * B + 4 * lam)) / (2 * lam)
    nu = min(nu, 20.0)
    a, b = ab * nu / (1 + nu), min(ab * nu * nu / (1 + nu) ** 2, 0.9)
    Q0 = 1.0 + pt.kappa0
    mse = (Q0 * (1 - a) ** 2 + b * pt.delta / 2) / (1 - b)
    M = Q0 * a
    Q = max(mse - Q0 + 2 * M, 1.01 * M * M / Q0, 1e-3)
    return np.array([Q, M, nu / 2.0])


def _start_x(cfg: Config, alpha: float, init) -> np.ndarray:
    if init is None:
        return initial_point(cfg, alpha)
    if isinstance(init, PretrainState):
        if not (init.Q > 0 and init.V > 0):      # the exact zero branch: not a start in log coordinates
            return initial_point(cfg, alpha)
        return np.array([init.Q, init.M, init.V])
    return np.asarray(init, float)


def _key(cfg: Config) -> jax.Array:
    return seed_key(cfg.theory.seed)


def _state(cfg: Config, alpha: float, rows: list, result: str, seconds: float,
           branch: str = "unique") -> PretrainState:
    """Mean over repeats, standard errors, solver block and flags (``rows``: the
    :meth:`PretrainChannel.outputs` row of each repeat, repeat 0 first; ``result``: its code;
    ``branch``: "unique" (the engine's) or "zero" (the exact Ŝ = 0 point))."""
    R = len(rows)
    mean, err = engine.aggregate(rows)
    names = ("test_error", "test_error_clean", "train_error", "objective", "Q", "M", "Q0", "mse")
    metrics = {k: mean[k] for k in names}
    mc_err = {k: err[k] for k in names}
    if R == 1:  # per-sample s.e. of the final expectations only (no propagation through the fixed point)
        N, a = cfg.theory.mc_samples, rows[0]
        mc_err.update(test_error=a["sd_test"] / math.sqrt(N),
                      test_error_clean=a["sd_clean"] / math.sqrt(N),
                      train_error=a["sd_train"] / math.sqrt(N))
    mc_err["Q0"] = 0.0
    col = lambda k: [r[k] for r in rows]
    conv = all(c == 1.0 for c in col("converged"))
    mm = max(col("multimin"))
    stein = any(col("stein_hats"))
    solver = {
        "method": "rs_mc_T6_T8", "engine": "theory.engine", "converged": conv,
        "result": result, "iterations": int(sum(col("iterations"))),
        "iterations_first": int(rows[0]["iterations"]),
        "residual": float(max(col("residual"))), "seconds": seconds,
        "branch": branch, "hat_form": "stein" if stein else "derivative",
        "stein_retries": int(sum(col("stein_retry"))),
        "multimin_fraction": float(mm), "mc_samples": cfg.theory.mc_samples, "mc_repeats": R,
        "alpha_eff": alpha * n_sigma(cfg), "V": mean["V"],
        "objective_gap": mean["objective"] - mean["obj_direct"],
        "objective_alpha_train_plus_penalty": mean["obj_direct"],
        "prox_converged_fraction": float(min(col("prox_converged"))),
        "prox_grad_max": float(max(col("grad_max"))),
        "f_parallel_max": float(max(col("f_par_max"))),
    }
    flags = []
    if not conv:
        flags.append(f"general RS fixed point not converged ({result}, residual "
                     f"{solver['residual']:.3g} after {solver['iterations']} iterations)")
    if solver["prox_converged_fraction"] < 1.0:
        flags.append(f"prox not converged on a fraction "
                     f"{1 - solver['prox_converged_fraction']:.3g} of the samples")
    if cfg.model.attention == "softmax" and solver["f_parallel_max"] > 1e-8 * (
            1.0 + max(col("f_max"))):
        flags.append(f"f not orthogonal to 11ᵀ: max |component| {solver['f_parallel_max']:.3g}")
    if stein:
        flags.append(f"prox discontinuous during the iteration (multi-minimum fraction >= "
                     f"{STEIN_THRESHOLD:g}, or a stalled derivative-form iteration; {mm:.3g} at "
                     "the fixed point): Stein hats [RS doubtful]")
    if cfg.pretrain.estimator == "direct" and cfg.pretrain.lam < 1e-3 and \
            abs(solver["alpha_eff"] - 1) < 0.1:
        flags.append(f"near the interpolation point alpha_eff = {solver['alpha_eff']:.3g} ≈ 1 "
                     "at small lam")
    return PretrainState(
        Q=metrics["Q"], M=metrics["M"], Q0=metrics["Q0"], V=mean["V"], Qhat=mean["Qhat"],
        Mhat=mean["Mhat"], Vhat=mean["Vhat"], tau_hat=mean["tau_hat"],
        rank_fraction=mean["rank_fraction"], metrics=metrics, mc_err=mc_err, solver=solver,
        flags=tuple(flags))


def solve(cfg: Config, *, init: PretrainState | Sequence[float] | None = None) -> PretrainState:
    """RS pre-training fixed point (T6–T11 with T13 or T14–T19) for ``cfg``; see module docstring.

    ``init``: a previous :class:`PretrainState` or (Q, M, V); default: T12 at α_eff. A state
    that carries its engine solution (a neighbouring point of a curve solved here) is continued
    per MC repeat and per sample (:func:`theory.engine.solve`'s ``previous``); the cold T12
    start then runs only if that continuation does not converge. The start is named by the
    label of the one branch ("unique").
    """
    t0 = time.perf_counter()
    ch = PretrainChannel(cfg)
    previous = getattr(init, "solution", None)
    x0 = _start_x(cfg, ch.alpha, None if previous is not None else init)
    starts = [engine.Start("unique", x0)]
    zero = _zero_rows(ch, cfg)

    def engine_state(repeats):
        settings = engine.Settings.from_config(cfg, repeats=repeats)
        sol = engine.solve(ch, settings, _key(cfg), starts, previous=previous)
        state = _state(cfg, ch.alpha, list(sol.repeats), sol.best.result,
                       time.perf_counter() - t0)
        return dataclasses.replace(state, solution=sol,
                                   solver={**state.solver, "continued": sol.stats["continued"]})

    if zero is None:
        return engine_state(None)
    # Ŝ = 0 is a fixed point: the engine searches for another on the first draws only, and
    # its MC repeats run only if that search finds a converged point distinct from zero
    search = engine_state(1)
    if _competes(ch, search) and cfg.theory.mc_repeats > 1:
        search = engine_state(None)
    return _choose_zero(cfg, ch, search, zero, time.perf_counter() - t0)


def _zero_rows(ch: PretrainChannel, cfg: Config) -> list | None:
    """The exact Ŝ = 0 point on each MC repeat's draws (:meth:`PretrainChannel.zero_row`), or
    None unless it is a fixed point on every repeat (factorized pre-training above its
    threshold λ√κ > M̂·edge, T14–T17)."""
    if cfg.pretrain.estimator != "factorized":
        return None
    rows = []
    for r in range(cfg.theory.mc_repeats):
        row = ch.zero_row(ch.draws(engine.repeat_key(_key(cfg), r)))
        if row is None:
            return None
        rows.append(row)
    return rows


def _competes(ch: PretrainChannel, state: PretrainState) -> bool:
    """The engine's point is another branch than Ŝ = 0: converged and distinct from Q = M = 0
    (``PretrainChannel.distinct``: Q or M above ≈ 1e-3)."""
    return bool(state.solver["converged"]) and ch.distinct(state.metrics, {"Q": 0.0, "M": 0.0})


def _choose_zero(cfg: Config, ch: PretrainChannel, engine_state: PretrainState, zero_rows: list,
                 seconds: float) -> PretrainState:
    """The branch choice between the exact Ŝ = 0 fixed point and the engine's (the RS rule,
    §9: the lowest free energy Φ = α·train + penalty among the fixed points found). The engine's
    point competes only when it converged and is distinct from zero (``PretrainChannel.distinct``:
    Q or M above ≈ 1e-3); otherwise it was heading to (or stuck near) Ŝ = 0, which its log
    coordinates cannot reach. Both branches are recorded in ``solver["branches"]``; a choice
    within twice the combined MC error of ΔΦ is flagged."""
    zero = _state(cfg, ch.alpha, zero_rows, "converged", seconds, branch="zero")
    es = engine_state.solver
    nonzero = dict(result=es["result"], converged=es["converged"],
                   iterations=es["iterations"], Q=engine_state.Q, M=engine_state.M,
                   objective=engine_state.metrics["objective"],
                   objective_mc_err=engine_state.mc_err["objective"])
    zero_summary = dict(Q=0.0, M=0.0, objective=zero.metrics["objective"],
                        objective_mc_err=zero.mc_err["objective"])
    competes = _competes(ch, engine_state)
    d_phi = nonzero["objective"] - zero_summary["objective"]
    err = [e for e in (nonzero["objective_mc_err"], zero_summary["objective_mc_err"])
           if e is not None]
    sigma = math.sqrt(sum(e * e for e in err)) if err else None
    pick_zero = (not competes) or d_phi >= 0
    chosen = zero if pick_zero else engine_state
    flags = list(chosen.flags)
    if competes and sigma is not None and abs(d_phi) < 2 * sigma:
        flags.append(f"pre-training branches Ŝ = 0 and Ŝ ≠ 0 (Q = {engine_state.Q:.3g}) with "
                     f"free energies within MC error (ΔΦ = {d_phi:.3g} ± {sigma:.2g})")
    solver = {**chosen.solver, "continued": engine_state.solver.get("continued", False),
              "branches": {"zero": zero_summary, "engine": {**nonzero, "competes": competes}},
              "seconds": seconds}
    return dataclasses.replace(chosen, solver=solver, flags=tuple(flags),
                               solution=None if pick_zero else engine_state.solution)


def solve_curve(cfg: Config, alphas: Sequence[float], *,
                init: PretrainState | Sequence[float] | None = None) -> list[PretrainState]:
    """Fixed points along ``alphas`` (in the given order) with continuation: for each MC repeat
    the same frozen draws are kept along the path and each point starts from the previous one
    (order parameters and the per-sample prox solutions, :func:`theory.engine.solve_branch`)."""
    alphas = [float(a) for a in alphas]
    settings = engine.Settings.from_config(cfg, repeats=1)
    per_alpha = [[] for _ in alphas]
    secs = [0.0 for _ in alphas]
    for r in range(cfg.theory.mc_repeats):
        key = engine.repeat_key(_key(cfg), r)
        data, prev = None, None
        for i, a in enumerate(alphas):
            c = cfg.replace(pretrain={"alpha": a})
            ch = PretrainChannel(c, a)
            data = ch.draws(key) if data is None else data
            t0 = time.perf_counter()
            start = engine.Start("curve", _start_x(c, a, init)) if prev is None else \
                engine.Start("curve", prev.x, warm=prev.warm)
            prev = engine.solve_branch(ch, data, start, settings)
            secs[i] += time.perf_counter() - t0
            per_alpha[i].append(prev)
    out = []
    for i, a in enumerate(alphas):
        c = cfg.replace(pretrain={"alpha": a})
        ch = PretrainChannel(c, a)
        rows = [ch.outputs(b, None) for b in per_alpha[i]]
        out.append(_state(c, a, rows, per_alpha[i][0].result, secs[i]))
    return out
