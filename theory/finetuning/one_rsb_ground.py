"""The 1RSB ground state of a fine-tuning configuration (symmetric rank-one LoRA ERM; THEORY.md
T33b, docs/validation/scarce_data.md §3.16–§3.17): ``hdlora one-rsb``.

Per MC repeat (an independent key; frozen outer draws shared by RS and 1RSB):

1. the RS fixed point (q0 = q) on those draws, from the RS engine's fixed point and
   :data:`RS_STARTS` (the lowest φ among the converged ones; the lowest residual if none
   converged, flagged);
2. for each continuation start (default: "informative", q0 = q/2, m = ½√(q0 q0*), from the RS
   (q, v)), the 1RSB saddle on the μ grid, each μ started from the previous saddle;
3. the ground state (R8): the first downward zero of the complexity Σ(μ) along the converged,
   non-RS part of a branch, every quantity interpolated linearly in μ
   (:func:`.one_rsb.ground_state`); e_GS = φ(μ*). Of several branches with a zero, the one of
   highest φ (φ(μ) ≤ e_GS for every μ on the true ground state's branch).

The channel is the project's own (:class:`.lora_channel._Setup`): linear σ by the exact prox and
quadrature of :mod:`.one_rsb_linear` (with A = ζζᵀ + (q − q0*)I + H − S, any backbone), softmax by
:mod:`.one_rsb_softmax`. Where no branch has a zero on the grid (the 1RSB solution is RS, or the
grid is too short), the repeat reports none and the result says so.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import numpy as np

from ..gaussian import seed_key
from . import one_rsb, one_rsb_linear, one_rsb_softmax
from .lora_channel import _Setup

__all__ = ["Settings", "channel", "search", "predict_one_rsb", "RS_STARTS"]

# RS starts (q, q, m, v): an informative, an uninformative and a small-q point (the response v
# of the softmax channel is ≈ 10× the linear one's at the scarce-data points)
RS_STARTS = {"linear": ((1.0, 1.0, 0.9, 0.05), (2.0, 2.0, 0.01, 0.05), (0.5, 0.5, 0.4, 0.05)),
             "softmax": ((1.5, 1.5, 0.9, 0.5), (1.5, 1.5, 0.05, 0.5), (1.0, 1.0, 0.5, 0.5))}
DEFAULT_MUS = {"linear": (0.03, 0.06, 0.1, 0.15, 0.2, 0.3, 0.45),
               "softmax": (1.0, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0)}


@dataclasses.dataclass(frozen=True)
class Settings:
    """repeats: MC repeats (keys theory.seed + 1000 + r); n_outer: outer samples per repeat;
    n_gh: Gauss–Hermite nodes per axis of the inner rule (softmax: n_gh^T rotated nodes;
    linear: n_gh^(T−1) × 2·n_gl split at the prox's jump); mus: the μ grid (None: the
    attention's default); starts: (name, q0/q, m/√(q0 q0*)) of the continuations.

    n_gh = 5 (softmax): at the α' = 0.75 zero-backbone saddle one map step moves q by −0.08 with
    n_gh = 3, by +0.000/+0.009 (4), +0.001/+0.013 (5) and +0.007…+0.014 (6–8) with two rotations
    each (§3.17): 3 is biased, from 5 on the rule's error is below the map's MC resolution."""
    repeats: int = 3
    n_outer: int = 600
    n_gh: int = 5
    n_gl: int = 8
    mus: tuple | None = None
    starts: tuple = (("informative", 0.5, 0.5),)

    def __post_init__(self):
        for name, low in (("repeats", 1), ("n_outer", 2), ("n_gh", 1), ("n_gl", 1)):
            if int(getattr(self, name)) < low:
                raise ValueError(f"one-rsb {name} = {getattr(self, name)}: must be ≥ {low}")
        if self.mus is not None and (not self.mus or any(not (u > 0) for u in self.mus)
                                     or list(self.mus) != sorted(self.mus)):
            raise ValueError(f"one-rsb mus = {self.mus}: must be increasing and > 0")


def _check(cfg):
    ft = cfg.finetune
    if ft.lora != "symmetric":
        raise NotImplementedError("one-rsb: finetune.lora must be 'symmetric' (the 1RSB theory "
                                  "of the u vᵀ LoRA, T33, is not derived)")
    if cfg.model.attention == "linear" and not ft.reuse and ft.selection != "random":
        raise NotImplementedError("one-rsb: linear attention with finetune.selection is not "
                                  "reduced to the exact-prox channel; use softmax or random")


def channel(cfg, pre, key, settings: Settings):
    """(problem, RS solve(x0), 1RSB solve(μ, x0)) on the frozen draws of ``key``: each solve
    returns a :func:`.one_rsb.solve_mu` record."""
    _check(cfg)
    n = settings.n_outer + settings.n_outer % 2            # even: η antithetic pairs
    cfg = cfg.replace(theory={"mc_samples": n})
    if cfg.model.attention == "softmax":
        prob, data = one_rsb_softmax.outer_draws(cfg, pre, key)
        rs = one_rsb_softmax.Channel(prob, data, one_rsb_softmax.rs_rule(prob.T, n))
        rule = one_rsb_softmax.inner_rule(prob.T, n, settings.n_gh, jax.random.fold_in(key, 101))
        ch = one_rsb_softmax.Channel(prob, data, rule)
        return (prob, lambda x0: one_rsb_softmax.solve_mu(rs, 0.0, np.asarray(x0), rs=True),
                lambda mu, x0: one_rsb_softmax.solve_mu(ch, mu, np.asarray(x0)))
    S = _Setup(cfg, pre)
    d = S.data(key)
    # exact-prox channel with A = ζζᵀ + (q − q0*)I + √Δ G, G = (H − S)/√Δ: any backbone; Δ the
    # fresh Δ_eff of the T32 test error
    prob = one_rsb_linear.LinearProblem(S.T, S.alpha, S.lam, S.q0, float(S.delta_eff))
    data = dict(xi0=d["xi_t"], eta=d["eta"], G=(d["Htea"] - d["Sst"]) / math.sqrt(prob.delta))
    rule_rs = one_rsb_linear.inner_rule(S.T, **one_rsb_linear.RS_RULE)
    rule = one_rsb_linear.inner_rule(S.T, settings.n_gh, settings.n_gl)
    return (prob, lambda x0: one_rsb_linear.solve_mu(prob, 0.0, data, rule_rs, np.asarray(x0),
                                                     rs=True),
            lambda mu, x0: one_rsb_linear.solve_mu(prob, mu, data, rule, np.asarray(x0)))


def search(prob, solve_rs, solve_rsb, mus, starts, log=None, rs_starts=None) -> dict:
    """Steps 1–3 of the module docstring for one repeat: {rs, rs_converged, branches, ground}.
    ``rs_starts``: the RS starts (default :data:`RS_STARTS` of the problem's channel)."""
    say = log or (lambda s: None)
    if rs_starts is None:
        rs_starts = RS_STARTS["linear" if hasattr(prob, "delta") else "softmax"]
    rs = best = None
    for st in rs_starts:
        r = solve_rs(st)
        if r["converged"] and (rs is None or r["phi"] < rs["phi"]):
            rs = r
        if best is None or r["residual"] < best["residual"]:
            best = r
    rs_ok = rs is not None
    rs = rs if rs_ok else best
    say(f"RS: q={rs['q']:.4g} m={rs['m']:.4g} φ={rs['phi']:.5g} residual={rs['residual']:.1e}")
    branches = []
    for name, frac_q0, frac_m in starts:
        x = np.array([rs["q"], frac_q0 * rs["q"],
                      frac_m * math.sqrt(frac_q0 * rs["q"] * prob.q0s), rs["v"]])
        recs = []
        for mu in mus:
            r = solve_rsb(mu, x)
            recs.append(r)
            say(f"{name} μ={mu:.3g}: q={r['q']:.4g} q0={r['q0']:.4g} m={r['m']:.4g} "
                f"φ={r['phi']:.5g} Σ={r['sigma']:.3g} converged={r['converged']}")
            if r["converged"] and r["q"] - r["q0"] > 1e-6 * r["q"]:
                x = np.array([r["q"], r["q0"], r["m"], r["v"]])
            if one_rsb.ground_state(recs) is not None:
                break
        branches.append(dict(name=name, records=recs, ground=one_rsb.ground_state(recs)))
    grounds = [b["ground"] for b in branches if b["ground"] is not None]
    ground = max(grounds, key=lambda g: g["phi"]) if grounds else None
    return dict(rs=rs, rs_converged=rs_ok, branches=branches, ground=ground)


_OUT = (("test_error", "test_error"), ("train_error", "train"), ("objective", "phi"), ("q", "q"),
        ("m", "m"), ("overlap", "overlap"))


def _entry(values):
    v = np.asarray(values, dtype=float)
    if v.size == 0:
        return {"value": None, "mc_err": None}
    return {"value": float(v.mean()),
            "mc_err": float(v.std(ddof=1) / math.sqrt(v.size)) if v.size > 1 else None}


def predict_one_rsb(cfg, pre, settings: Settings = Settings(), log=None) -> dict:
    """The RS and 1RSB fine-tuning metrics (MODEL.md §4 names; value ± MC error over the
    repeats with a ground state; null when unknown) and the 1RSB diagnostics (μ*, q0, the
    inter-state overlap |m|/√(q0 q0*), φ_1RSB − φ_RS on the same draws, repeats with a Σ zero,
    every repeat's records)."""
    _check(cfg)
    mus = tuple(settings.mus or DEFAULT_MUS[cfg.model.attention])
    # the RS engine's own fixed point first among the RS starts (a start on the branch the engine
    # selected; the fixed starts are not adapted to the point). At λ' = 0.5 with a pre-trained
    # backbone (α' = 0.75) the RS on 600 draws still ends at overlap 0.17, where the engine
    # (3 × 4000) gives 0.63: the same map, too noisy at N = 600 there (per-draw sd of the overlap
    # 0.028 at N = 4000; two fixed points on those 600 draws): such points need n_outer ≳ 4000
    # (scarce_data.md §3.18)
    from ..predict import predict_finetuning
    fin = predict_finetuning(cfg, pre)
    rs_starts = ((fin.q, fin.q, fin.m, fin.v),) + RS_STARTS[cfg.model.attention]
    reps = []
    for r in range(settings.repeats):
        key = seed_key(cfg.theory.seed + 1000 + r)
        prob, solve_rs, solve_rsb = channel(cfg, pre, key, settings)
        rep = search(prob, solve_rs, solve_rsb, mus, settings.starts,
                     None if log is None else (lambda s, r=r: log(f"[repeat {r}] {s}")),
                     rs_starts=rs_starts)
        reps.append(rep)
    grounds = [(R["rs"], R["ground"]) for R in reps if R["ground"] is not None]
    rs_block = {k: _entry([R["rs"][src] for R in reps]) for k, src in _OUT}
    rsb_block = {k: _entry([g[src] for _, g in grounds]) for k, src in _OUT}
    diag = {"mu_star": _entry([g["mu"] for _, g in grounds]),
            "q0": _entry([g["q0"] for _, g in grounds]),
            "overlap_inter": _entry([g["overlap_inter"] for _, g in grounds]),
            "phi_minus_rs": _entry([g["phi"] - rs["phi"] for rs, g in grounds]),
            "repeats_with_ground_state": len(grounds), "repeats": len(reps),
            "rs_converged": [R["rs_converged"] for R in reps], "mus": list(mus)}
    return {"finetune_rs": rs_block, "finetune_1rsb": rsb_block, "one_rsb": diag,
            "records": reps, "settings": dataclasses.asdict(settings)}
