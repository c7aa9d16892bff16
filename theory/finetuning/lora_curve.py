"""Learned recalibration c (M11, T31) and continuation along α' (T28–T31) for the symmetric
LoRA RS theory, on the solve protocol of :mod:`.lora` (split from it; re-exported there)."""

from __future__ import annotations

import dataclasses
import time

import jax
import numpy as np

from ..gaussian import seed_key
from ..config import Config
from ..states import FinetuneState, PretrainState
from .. import engine
from . import noise
from .lora import (LoraChannel, _branch_record, _initial_points, _Setup,
                   _solve_setup, _state_from)


LEARNED_C_XTOL = 1e-3      # absolute tolerance of the learned recalibration c


def solve_learned_c(cfg: Config, pre: PretrainState, *, init=None, repeats: int | None = None,
                    explicit_q: bool = True) -> FinetuneState:
    """(M11 "learned", T31) c trained jointly with w, unpenalised.

    c is one scalar, so the joint ERM is min_c [min_w L'(w; c)/d]; at the RS saddle the inner
    minimum is the objective α'·train + λ'q of the fixed point at fixed c (φ = objective, T31),
    hence c_learned = argmin_c objective(c) and (q, m, v) are the fixed point at c_learned
    (envelope theorem: ∂φ/∂c = 0 there is T31's stationarity). Bounded Brent minimisation on
    [0, 2·max(1, M/Q) + 1] with common random draws (objective(c) is then smooth in c),
    warm-started along the evaluations; a minimiser on the boundary is flagged.
    """
    from scipy.optimize import minimize_scalar

    if cfg.finetune.selection == "largest_sensitivity" and cfg.rho < 1:
        raise NotImplementedError(
            "recalibrate = 'learned' with selection = 'largest_sensitivity': the simulator scores "
            "the pool at the initial c = 1, before c is learned; use a number or 'optimal'")
    state = {"init": init}
    evaluations = []

    def objective(c):
        st = _solve_setup(_Setup(cfg, pre, c=c), init=state["init"], repeats=1,
                          explicit_q=explicit_q)
        state["init"] = st
        evaluations.append((float(c), float(st.metrics["objective"]), bool(st.solver["converged"])))
        return st.metrics["objective"]

    upper = 2.0 * max(1.0, noise.backbone_projection(float(pre.Q), float(pre.M),
                                                     float(pre.Q0))[0]) + 1.0
    res = minimize_scalar(objective, bounds=(0.0, upper), method="bounded",
                          options={"xatol": LEARNED_C_XTOL})
    c_star = float(res.x)
    final = _solve_setup(_Setup(cfg, pre, c=c_star), init=state["init"], repeats=repeats,
                         explicit_q=explicit_q)
    flags = list(final.flags)
    if min(c_star, upper - c_star) < 10 * LEARNED_C_XTOL:
        flags.append(f"learned c = {c_star:.4g} on the boundary of [0, {upper:.3g}]")
    if not all(conv for _, _, conv in evaluations):
        flags.append("a fixed point along the c minimisation did not converge")
    solver = dict(final.solver, c_learned=c_star, c_evaluations=len(evaluations),
                  c_minimiser_success=bool(res.success))
    return dataclasses.replace(final, solver=solver, flags=tuple(flags))



def solve_curve(cfg: Config, pre: PretrainState, alphas, *, repeats: int = 1) -> dict:
    """Continuation in α' (T28–T31) with two tracks (informative / uninformative), warm-started
    in (q, m, v) and in the per-sample prox solutions; frozen draws shared along the curve
    (branches by :func:`theory.engine.solve_branch`, every track with the full cap).

    Returns dict(alphas, states (global, per α'), branches (per α', every distinct fixed point),
    spinodals (list of (α'_left, α'_right, 'appears'|'disappears', label))). A spinodal is recorded
    where the number of distinct branches changes between neighbouring α'.
    ``repeats`` > 1 re-solves the global branch on independent draws (MC errors)."""
    alphas = [float(a) for a in alphas]
    key = seed_key(cfg.theory.seed)
    settings = engine.Settings.from_config(cfg, repeats=repeats)
    S0 = _Setup(cfg.replace(finetune={"alpha": alphas[0]}), pre)
    data = S0.data(key)
    tracks = None
    states, branches_all, labels = [], [], []
    t0 = time.perf_counter()
    for al in alphas:
        S = _Setup(cfg.replace(finetune={"alpha": al}), pre)
        ch = LoraChannel(S)
        if tracks is None:
            starts = [engine.Start(n, x) for n, x in _initial_points(S)]
        else:
            starts = [engine.Start(n, b.x, b.warm) for n, b in tracks.items()]
        res = []
        for s in starts:
            b = engine.solve_branch(ch, data, s, settings)
            b.record.update(start=s.name, label=ch.label(b.record))
            res.append((s.name, b))
        tracks = dict(res)
        found = []
        for _, b in res:
            if all(ch.distinct(b.record, f.record) for f in found):
                found.append(b)
        found.sort(key=lambda b: b.record["objective"])
        best = found[0]
        rows = [engine.sample_row(ch, best, data)]
        for i in range(1, repeats):
            d_i = S.data(engine.repeat_key(key, i))
            r_i = engine.solve_branch(ch, d_i, engine.repeat_start(best), settings,
                                      cap=settings.repeat_cap(best.iterations))
            rows.append(engine.sample_row(ch, r_i, d_i))
        rec = best.record
        flags = ["RS doubtful"] if rec["rs_doubtful"] else []
        extra = dict(converged=rec["converged"], iterations=rec["iterations"],
                     branch=rec["label"], n_branches=len(found), lambda_AT=rec["lambda_AT"],
                     frac_multimin=rec["frac_multimin"], rs_doubtful=rec["rs_doubtful"])
        records = [_branch_record(b.record) for b in found]
        states.append(_state_from(S, rec, records, rows, extra, flags))
        branches_all.append(records)
        labels.append(sorted(b.record["label"] for b in found))
    spinodals = []
    for i in range(1, len(alphas)):
        a, b = labels[i - 1], labels[i]
        if len(a) != len(b):
            kind = "appears" if len(b) > len(a) else "disappears"
            spinodals.append((alphas[i - 1], alphas[i], kind, a if len(a) > len(b) else b))
    return dict(alphas=alphas, states=states, branches=branches_all, spinodals=spinodals,
                seconds=time.perf_counter() - t0)
