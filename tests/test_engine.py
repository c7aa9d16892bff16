"""The RS engine (theory/engine, THEORY.md §9) on a toy channel with a known answer.

Toy: the mean-field Ising (Curie–Weiss) saddle point with random fields, x = tanh(βx + h + sξ)
averaged over frozen draws ξ ~ N(0, 1); free energy f(x) = βx²/2 − E log 2cosh(βx + h + sξ)
(stationary exactly at the fixed points). For β > 1 and small h > 0 there are two stable fixed
points, x₊ > 0 (global: lower f) and x₋ < 0. Checked: the phases (full calls first and last,
warm-only in between; warm starts skip the first full call), the branch choice by free energy
and its flag, MC aggregation (mean, spread/√R ⊕ within-draw error; unknown at R = 1), the Stein
retry of a stalled iteration, the result codes (max_iter, nonfinite, repeat_unconverged) and the
dropped branch search. Fast (numpy maps; no jit).
"""

from __future__ import annotations

import dataclasses
import math

import jax
import numpy as np
import pytest
from scipy.optimize import brentq

from theory import engine
from theory.config import Config

BETA, H, SIG, N = 2.0, 0.05, 0.1, 4000


class Toy:
    stage = "toy"

    def __init__(self, beta=BETA, h=H, s=SIG, n=N):
        self.beta, self.h, self.s, self.n = beta, h, s, n
        self.calls = []          # test spy: the `full` flag of every evaluation

    def draws(self, key):
        return np.asarray(jax.random.normal(key, (self.n,)))

    def cold_warm(self, data):
        return np.zeros(1)

    def sanitize(self, x):
        return np.clip(np.asarray(x, float), -1.0, 1.0)

    def means(self, x, warm, data, full):
        self.calls.append(full)
        u = self.beta * x[0] + self.h + self.s * data
        return dict(t=float(np.mean(np.tanh(u))),
                    logz=float(np.mean(np.logaddexp(u, -u)))), warm + 1

    def hats(self, x, means, force_stein):
        return (means["t"],), bool(force_stein)

    def prior(self, hats):
        return np.array([hats[0]])

    def record(self, x, hats, means, stein):
        return dict(x=float(x[0]), objective=0.5 * self.beta * x[0] ** 2 - means["logz"],
                    overlap=abs(float(x[0])), rs_doubtful=False, stein_hats=stein)

    def outputs(self, branch, data):
        return dict(x=branch.record["x"], objective=branch.record["objective"],
                    _se=dict(x=0.01))

    def label(self, r):
        return "plus" if r["x"] > 0 else "minus"

    def distinct(self, a, b):
        return abs(a["x"] - b["x"]) > 1e-3

    def doubt(self, r):
        return None


def _exact(beta=BETA, h=H, sign=1.0):
    """Deterministic root of x = tanh(βx + h) (s → 0) on the side ``sign``."""
    return brentq(lambda x: x - math.tanh(beta * x + h), 0.3 * sign, 1.0 * sign)


KEY = jax.random.PRNGKey(0)
STARTS = [engine.Start("plus", np.array([0.9])), engine.Start("minus", np.array([-0.9]))]
SET = engine.Settings(tol=1e-10, damping=0.3, max_iter=500, repeats=1)


def test_branch_choice_by_free_energy_and_flag():
    # start from the metastable side first: the driver still reports the global (plus) branch
    sol = engine.solve(Toy(), SET, KEY, STARTS[::-1])
    assert sol.converged and sol.result == "converged"
    assert [b["label"] for b in sol.branches] == ["plus", "minus"]
    assert sol.branches[0]["objective"] < sol.branches[1]["objective"]
    assert sol.value[0] == pytest.approx(_exact(), abs=5e-3)      # s = 0.1 shifts it slightly
    assert sol.branches[1]["x"] == pytest.approx(_exact(sign=-1.0), abs=5e-3)
    assert any("2 fixed points found" in f for f in sol.flags)
    assert sol.stats["n_branches"] == 2 and sol.mc_err["x"] is None   # R = 1: unknown


def test_exact_fixed_point_without_noise():
    sol = engine.solve(Toy(s=0.0), SET, KEY, STARTS[:1])
    assert sol.value[0] == pytest.approx(_exact(), abs=1e-9)
    assert sol.best.record["residual"] <= 1e-10


def test_phases_full_first_and_last_warm_between():
    toy = Toy()
    full_first = dataclasses.replace(SET, cold_full_first=True)
    b = engine.solve_branch(toy, toy.draws(KEY), STARTS[0], full_first)
    assert b.converged and toy.calls[0] is True and toy.calls[-1] is True
    assert not any(toy.calls[1:-1]) and len(toy.calls) == b.iterations
    # default: a cold start begins warm-only (from cold_warm); the last evaluation is full
    toy1 = Toy()
    b1 = engine.solve_branch(toy1, toy1.draws(KEY), STARTS[0], SET)
    assert toy1.calls[0] is False and toy1.calls[-1] is True and sum(toy1.calls) == 1
    assert b1.x[0] == pytest.approx(b.x[0], abs=1e-9)
    # the reported point is the last full evaluation (no second full call), within tol
    toy2 = Toy()
    b2 = engine.solve_branch(toy2, toy2.draws(KEY), engine.Start("w", b.x, warm=b.warm), SET)
    assert toy2.calls[0] is False and b2.iterations <= 3                # warm start: warm first
    assert b2.x[0] == pytest.approx(b.x[0], abs=1e-9)


def test_mc_repeats_aggregate_with_errors():
    R = 4
    sol = engine.solve(Toy(), engine.Settings(tol=1e-10, repeats=R), KEY, STARTS)
    xs = np.array([r["x"] for r in sol.repeats])
    assert len(xs) == R and np.ptp(xs) > 0                           # independent draws
    assert sol.metrics["x"] == pytest.approx(xs.mean(), rel=1e-12)
    spread = xs.std(ddof=1) / math.sqrt(R)
    assert sol.mc_err["x"] == pytest.approx(math.sqrt(spread ** 2 + 0.01 ** 2 / R), rel=1e-12)
    assert sol.mc_err["objective"] == pytest.approx(
        np.std([r["objective"] for r in sol.repeats], ddof=1) / math.sqrt(R), rel=1e-12)
    assert abs(sol.metrics["x"] - _exact()) < 5 * sol.mc_err["x"] + 5e-3
    assert len(sol.stats["repeat_iterations"]) == R


class Folded(Toy):
    """Derivative-form hats with a jump at x = 0.5 (no fixed point: the iteration cycles and
    stalls); the Stein forms are continuous (fixed point 0.5)."""

    def hats(self, x, means, force_stein):
        if force_stein:
            return (0.5,), True
        return (0.5 - 0.2 * math.copysign(1.0, x[0] - 0.5),), False


def test_stalled_iteration_is_retried_with_stein_hats():
    sol = engine.solve(Folded(), SET, KEY, STARTS[:1])
    assert sol.converged and sol.best.stein_retry
    assert sol.value[0] == pytest.approx(0.5, abs=1e-9)
    assert any("Stein hats after a stalled" in f for f in sol.flags)
    off = engine.solve(Folded(), engine.Settings(tol=1e-10, stein_retry=False), KEY, STARTS[:1])
    assert off.result == "stalled" and not off.converged
    assert any("toy fixed point not converged" in f for f in off.flags)


def test_result_codes_max_iter_and_nonfinite():
    capped = engine.solve(Toy(), engine.Settings(tol=1e-14, max_iter=3), KEY, STARTS[:1])
    assert capped.result == "max_iter" and capped.best.iterations <= 3
    assert not capped.converged and capped.flags[0] == "toy fixed point not converged"

    class Broken(Toy):
        def prior(self, hats):
            return np.array([np.nan])

    bad = engine.solve(Broken(), SET, KEY, STARTS[:1])
    assert bad.result == "nonfinite" and bad.result in engine.RESULT_CODES


def test_unconverged_repeat_is_reported():
    class LateFold(Toy):
        # the first draws converge; the repeats' draws fold (no fixed point): repeat_unconverged
        def draws(self, key):
            d = super().draws(key)
            return d if int(np.asarray(key)[-1]) == 0 else d + 100.0

        def hats(self, x, means, force_stein):
            if means["t"] > 0.999 and not force_stein:
                return (0.5 - 0.2 * math.copysign(1.0, x[0] - 0.5),), False
            return (means["t"],), force_stein

    sol = engine.solve(LateFold(), engine.Settings(tol=1e-10, repeats=2, stein_retry=False),
                       KEY, STARTS[:1])
    assert sol.best.converged and sol.result == "repeat_unconverged" and not sol.converged


def test_slow_branch_search_is_dropped():
    # β = 1, h = 0: x = tanh x; from 0.9 the iteration crawls (rate → 1) and is dropped
    toy = Toy(beta=1.0, h=0.0, s=0.0)
    sol = engine.solve(toy, engine.Settings(tol=1e-12, damping=0.0, anderson=0), KEY,
                       [engine.Start("a", np.array([0.0])), engine.Start("b", np.array([0.9]))])
    assert len(sol.branches) == 1 and sol.branches[0]["start"] == "a"


def test_settings_are_frozen_and_read_the_config():
    cfg = Config().replace(theory={"tol": 1e-6, "max_iter": 77, "mc_repeats": 2})
    s = engine.Settings.from_config(cfg)
    assert (s.tol, s.max_iter, s.repeats) == (1e-6, 77, 2)
    assert engine.Settings.from_config(cfg, repeats=5).repeats == 5
    assert s.repeat_cap(10) == 77 and engine.Settings(max_iter=1000).repeat_cap(50) == 200
    with pytest.raises(Exception):
        s.tol = 1.0
    sol = engine.solve(Toy(), SET, KEY, STARTS[:1])
    with pytest.raises(Exception):
        sol.result = "x"
    assert isinstance(Toy(), engine.Channel)


def test_continuation_start_replaces_the_cold_start_of_its_branch_only():
    """A converged continuation start stands in for the cold start of its branch's label (one
    solve fewer), while the other label's start still runs, so both fixed points are still found
    and flagged; a continuation start that does not converge is dropped and the cold protocol
    runs in full."""
    sol_cold = engine.solve(Toy(), SET, KEY, STARTS)
    near_plus = engine.Start("init", np.array([0.95]), continuation=True)
    sol = engine.solve(Toy(), SET, KEY, [near_plus, *STARTS])
    starts = sorted(b["start"] for b in sol.branches)
    assert starts == ["init", "minus"]                          # cold "plus" skipped
    assert sol.value[0] == pytest.approx(sol_cold.value[0], abs=1e-8)
    assert any("2 fixed points found" in f for f in sol.flags)
    # landing on the metastable branch: the cold "plus" start still runs and wins by free energy
    near_minus = engine.Start("init", np.array([-0.95]), continuation=True)
    sol = engine.solve(Toy(), SET, KEY, [near_minus, *STARTS])
    assert sorted(b["start"] for b in sol.branches) == ["init", "plus"]
    assert sol.value[0] == pytest.approx(sol_cold.value[0], abs=1e-8)
    # a continuation start that cannot converge (1 iteration) is dropped: cold protocol
    tight = dataclasses.replace(SET, max_iter=1)
    toy = Toy()
    out = engine.find_branches(toy, toy.draws(KEY), [near_plus, *STARTS], tight)
    assert [b.record["start"] for b in out] == ["plus"]         # plus gets the full cap (1 here)


class Positive(Toy):
    """x ↦ √(c x) on x > 0 (fixed point c; NaN outside x > 0), with the iteration-coordinate hook
    y = log x: a damped step in y is x^(1−β/2)·c^(β/2), not the damped step in x."""

    c = 0.25

    def __init__(self, hook=True):
        super().__init__()
        self.seen = []
        if hook:
            self.to_iter = lambda x: np.log(np.asarray(x, float))
            self.from_iter = lambda y: np.exp(np.asarray(y, float))

    def sanitize(self, x):
        return np.asarray(x, float)

    def means(self, x, warm, data, full):
        self.seen.append(float(x[0]))
        return dict(t=math.sqrt(self.c * x[0]) if x[0] > 0 else math.nan, logz=0.0), warm

    def record(self, x, hats, means, stein):
        return dict(x=float(x[0]), objective=0.0, overlap=1.0, rs_doubtful=False,
                    stein_hats=stein)


def test_iteration_coordinates_hook():
    # the driver iterates y = to_iter(x) and hands the channel x = from_iter(y): the second
    # evaluation is the damped step in log x; the fixed point and its report are in x
    settings = engine.Settings(tol=1e-12, damping=0.5, max_iter=200)   # Anderson from step 2
    x0 = 4.0
    hooked = Positive()
    b = engine.solve_branch(hooked, None, engine.Start("s", np.array([x0])), settings)
    y1 = 0.5 * math.log(x0) + 0.5 * math.log(math.sqrt(Positive.c * x0))
    assert hooked.seen[1] == pytest.approx(math.exp(y1), rel=1e-12)
    assert b.converged and b.x[0] == pytest.approx(Positive.c, rel=1e-10)
    plain = Positive(hook=False)
    bp = engine.solve_branch(plain, None, engine.Start("s", np.array([x0])), settings)
    assert plain.seen[1] == pytest.approx(0.5 * x0 + 0.5 * math.sqrt(Positive.c * x0), rel=1e-12)
    assert bp.x[0] == pytest.approx(b.x[0], rel=1e-9)


def test_out_of_domain_step_backtracks_in_iteration_coordinates():
    # a prior step outside the domain (NaN, e.g. hats the prior rejects) is not an error: the
    # driver moves halfway back towards the last in-domain iterate (in y) and continues
    class Rejecting(Positive):
        def prior(self, hats):
            return np.array([hats[0]]) if len(self.seen) != 2 else np.array([math.nan])

    ch = Rejecting()
    b = engine.solve_branch(ch, None, engine.Start("s", np.array([4.0])),
                            engine.Settings(tol=1e-12, max_iter=200))
    assert b.converged and b.x[0] == pytest.approx(Positive.c, rel=1e-10)
    assert all(x > 0 for x in ch.seen)
    # the third evaluation is halfway (in log x) between the first two iterates
    assert ch.seen[2] == pytest.approx(math.sqrt(ch.seen[0] * ch.seen[1]), rel=1e-12)


class LatchToy(Toy):
    """Its hats choose the Stein forms on full evaluations only (as a multistart prox that sees
    several minima), and record which form every evaluation used."""

    def __init__(self, release_after: int | None = None, **kw):
        super().__init__(**kw)
        self.forms, self.release_after = [], release_after

    def hats(self, x, means, force_stein):
        n_full = sum(self.calls)
        says = self.calls[-1] and (self.release_after is None or n_full <= self.release_after)
        stein = bool(force_stein or says)
        self.forms.append((self.calls[-1], stein))
        return (means["t"],), stein


def test_stein_latch_after_a_full_evaluation():
    """Once a full evaluation chose the Stein forms, every later evaluation of the branch uses
    them (a warm call cannot see multiple minima, THEORY.md §9); the latch is reported and is
    not carried by a warm start (each point decides at its own first full evaluation)."""
    toy = LatchToy()
    b = engine.solve_branch(toy, toy.draws(KEY), STARTS[0], SET)
    first_full = [i for i, (full, _) in enumerate(toy.forms) if full][0]
    assert not any(s for _, s in toy.forms[:first_full])          # derivative forms before it
    assert all(s for _, s in toy.forms[first_full:])               # latched after it
    assert b.record["stein_hats"]
    toy2 = LatchToy()
    b2 = engine.solve_branch(toy2, toy2.draws(KEY), engine.Start("w", b.x, warm=b.warm), SET)
    assert not toy2.forms[0][1] and b2.record["stein_hats"]
    # a later full evaluation that chooses the derivative forms releases the latch: here the
    # first full evaluation moves the map (a sample switching minima), so phase 2 runs twice
    class Switch(LatchToy):
        def means(self, x, warm, data, full):
            out, w = super().means(x, warm, data, full)
            if full and sum(self.calls) == 1:
                out = dict(out, t=out["t"] + 1e-3)
            return out, w

    toy3 = Switch(release_after=1)
    b3 = engine.solve_branch(toy3, toy3.draws(KEY), STARTS[0], SET)
    fulls = [i for i, (full, _) in enumerate(toy3.forms) if full]
    assert b3.converged and len(fulls) >= 2 and not b3.stein_retry
    assert toy3.forms[fulls[0]][1] and all(s for _, s in toy3.forms[fulls[0]:fulls[1]])
    assert not any(s for _, s in toy3.forms[fulls[1]:]) and not b3.record["stein_hats"]


def test_a_cycle_of_the_minima_choices_stops_the_rounds_early():
    """A full evaluation that alternates between two choices of minima (a sample near a tie,
    THEORY.md §9) makes the rounds cycle between two phase-1 fixed points: the driver stops
    when a round's phase-1 point repeats an earlier round's ("stalled", then the Stein retry),
    after 3 full steps instead of PHASE2_ROUNDS; a map whose rounds approach a fixed point
    without repeating one is not stopped."""
    class Cycle(Toy):             # each full evaluation flips the choice; warm ones keep it
        choice = 1.0

        def means(self, x, warm, data, full):
            out, w = super().means(x, warm, data, full)
            if full:
                self.choice = -self.choice
            return dict(out, t=out["t"] + 1e-3 * self.choice), w

    settings = dataclasses.replace(SET, stein_retry=False)
    toy = Cycle()
    b = engine.solve_branch(toy, toy.draws(KEY), STARTS[0], settings)
    # round 3's phase-1 point is round 1's: stopped after 2 full steps (+ the reported
    # evaluation, + the cold start's first call), not after phase2_rounds of them
    assert b.result == "stalled" and sum(toy.calls) <= 4 < settings.phase2_rounds

    class Settling(Toy):          # switches that die out: 3 rounds move x, then it converges
        kicks = [1e-3, 5e-4, 2.5e-4, 0.0]

        def means(self, x, warm, data, full):
            out, w = super().means(x, warm, data, full)
            kick = self.kicks[min(sum(self.calls), 3)]     # each full call switches "minima"
            return dict(out, t=out["t"] + kick), w

    toy = Settling()
    b = engine.solve_branch(toy, toy.draws(KEY), STARTS[0], settings)
    assert b.converged and sum(toy.calls) >= 4


def test_repeats_on_threads_give_the_same_solution():
    """MC repeats i > 0 on several threads (``Settings.workers``): the same numbers, in order."""
    base = engine.Settings(tol=1e-10, damping=0.3, max_iter=500, repeats=4, workers=1)
    one = engine.solve(Toy(), base, KEY, STARTS)
    four = engine.solve(Toy(), dataclasses.replace(base, workers=4), KEY, STARTS)
    assert [r["x"] for r in four.repeats] == [r["x"] for r in one.repeats]
    assert four.metrics == one.metrics and four.mc_err == one.mc_err
    assert engine.Settings().workers >= 1


def test_continuation_from_a_previous_solution():
    """``previous``: the neighbour's branch and every MC repeat continue from its solution on the
    same draws; the branch search, the choice and the numbers are a cold solve's (to tol)."""
    R, near = 3, Toy(h=0.06)
    settings = engine.Settings(tol=1e-10, damping=0.3, max_iter=500, repeats=R)
    prev = engine.solve(Toy(), settings, KEY, STARTS)
    assert len(prev.repeat_branches) == R and prev.repeat_branches[0] is prev.best
    cold = engine.solve(Toy(h=0.06), settings, KEY, STARTS)
    cont = engine.solve(near, settings, KEY, STARTS, previous=prev)
    assert cont.stats["continued"] and not cold.stats["continued"]
    assert cont.best.record["start"] == "continued"
    assert [b["label"] for b in cont.branches] == [b["label"] for b in cold.branches]
    for k in ("x", "objective"):
        assert cont.metrics[k] == pytest.approx(cold.metrics[k], abs=1e-8)
    assert sum(cont.stats["repeat_iterations"]) < sum(cold.stats["repeat_iterations"])
    # another sample count: no per-sample continuation (the cold protocol runs)
    class PerSample(Toy):
        def cold_warm(self, data):
            return np.zeros(len(data))

    prev = engine.solve(PerSample(), settings, KEY, STARTS)
    other = engine.solve(PerSample(h=0.06, n=N // 2), settings, KEY, STARTS, previous=prev)
    assert not other.stats["continued"]
    assert engine.solve(PerSample(h=0.06), settings, KEY, STARTS, previous=prev).stats["continued"]


# ------------------------------------------------------------------------------------------------
# stability hook (THEORY.md §9 "Bayes SE iteration"): x = tanh(βx) on [0, 1], β = 2, has the
# unstable fixed point 0 (slope β = 2) and the stable one x* = tanh(βx*) ≈ 0.9575 (slope
# β(1 − x*²) ≈ 0.17). Anderson mixing from a start near 0 extrapolates onto 0.
# ------------------------------------------------------------------------------------------------
class Bistable(Toy):
    """x ↦ tanh(βx) on [0, 1] (no noise); objective −f (f = βx²/2 − log 2cosh βx), so that the
    unstable point 0 has the *lower* objective and only the stability rule prefers x*."""

    def __init__(self, hook=True, kick=0.05):
        super().__init__(beta=2.0, h=0.0, s=0.0, n=4)
        self.kick, self.seen = kick, []
        if hook:
            self.stability = self._stability

    def sanitize(self, x):
        return np.clip(np.asarray(x, float), 0.0, 1.0)

    def means(self, x, warm, data, full):
        self.seen.append(float(x[0]))
        return super().means(x, warm, data, full)

    def _stability(self, x, data):
        return self.beta * (1.0 - math.tanh(self.beta * x[0]) ** 2), np.array([self.kick])

    def record(self, x, hats, means, stein):
        r = super().record(x, hats, means, stein)
        return dict(r, objective=-r["objective"])


X_STAR = _exact(beta=2.0, h=0.0)
D0 = np.zeros(4)              # the draws (unused: no noise)
ONE_PHASE = engine.Settings(tol=1e-10, damping=0.5, max_iter=500, stall=None, phase2_rounds=0)


def test_anderson_lands_on_the_unstable_point_and_the_driver_escapes():
    start = engine.Start("low", np.array([1e-3]))
    plain = Bistable(hook=False)
    b0 = engine.solve_branch(plain, D0, start, ONE_PHASE)
    assert b0.converged and abs(b0.x[0]) < 1e-8 and b0.slope is None       # the trap
    assert "slope" not in b0.record and b0.stable
    ch = Bistable()
    b = engine.solve_branch(ch, D0, start, ONE_PHASE)
    assert b.converged and b.x[0] == pytest.approx(X_STAR, abs=1e-9)
    assert b.slope == pytest.approx(2.0 * (1 - X_STAR ** 2), rel=1e-6) and b.stable
    assert b.record["stable"] and b.record["slope"] == b.slope
    assert b.iterations > b0.iterations          # the escape's iterations are counted
    # escape protocol: after the trap (b0's evaluations), plain damped steps from 0 + kick (the
    # first one with the settings' damping; they climb monotonically: no extrapolation)
    n0, k = b0.iterations, ONE_PHASE.plain_escape
    assert ch.seen[:n0] == pytest.approx(plain.seen[:n0], abs=1e-15)
    assert ch.seen[n0] == pytest.approx(abs(b0.x[0]) + 0.05, abs=1e-8)
    assert ch.seen[n0 + 1] == pytest.approx(0.05 + 0.5 * (math.tanh(0.1) - 0.05), rel=1e-6)
    assert np.all(np.diff(ch.seen[n0:n0 + k]) > 0) and ch.seen[n0 + k - 1] < 0.5 * X_STAR
    # one phase (phase2_rounds = 0): every iteration is warm, only the report is full
    assert sum(ch.calls) == 1 and ch.calls[-1] is True


def test_escape_rounds_and_cap():
    start = engine.Start("low", np.array([1e-3]))
    # a small kick: PLAIN_ESCAPE plain steps climb too little (the plain iteration damps more as
    # the residual grows), Anderson falls back onto 0, and the second round (plain to the end)
    # reaches x* — within the cap ...
    long = dataclasses.replace(ONE_PHASE, max_iter=2000)
    b = engine.solve_branch(Bistable(kick=0.01), D0, start, long)
    assert b.converged and b.stable and b.x[0] == pytest.approx(X_STAR, abs=1e-9)
    assert 500 < b.iterations <= 2000
    # ... or not: the branch then stays on the unstable point, converged, with its slope
    b = engine.solve_branch(Bistable(kick=0.01), D0, start, ONE_PHASE)
    assert b.converged and b.x[0] == 0.0 and not b.stable and b.slope == pytest.approx(2.0)
    assert b.iterations == ONE_PHASE.max_iter
    # no kick: the plain iteration from 0 stays at 0; both rounds end on the unstable point
    b = engine.solve_branch(Bistable(kick=0.0), D0, engine.Start("zero", np.array([0.0])),
                            ONE_PHASE)
    assert b.converged and b.x[0] == 0.0 and b.slope == pytest.approx(2.0) and not b.stable


def test_choice_prefers_stable_branches_and_flags_when_none_is():
    starts = [engine.Start("zero", np.array([0.0])), engine.Start("high", np.array([0.9]))]
    # no hook: 0 has the lower objective and is reported
    sol = engine.solve(Bistable(hook=False), ONE_PHASE, KEY, starts)
    assert sol.value[0] == 0.0 and len(sol.branches) == 2
    # hook, unescapable 0: still found, but the stable x* is chosen despite its objective
    sol = engine.solve(Bistable(kick=0.0), ONE_PHASE, KEY, starts)
    assert sol.value[0] == pytest.approx(X_STAR, abs=1e-9) and sol.best.stable
    assert [b["stable"] for b in sol.branches] == [False, True]       # lowest objective first
    assert not any("no stable" in f for f in sol.flags)
    # only unstable branches: reported, and flagged
    sol = engine.solve(Bistable(kick=0.0), ONE_PHASE, KEY, starts[:1])
    assert sol.value[0] == 0.0 and not sol.best.stable and sol.converged
    assert "no stable toy fixed point found (slope of the toy map >= 1 at every branch)" \
        in sol.flags
    # and with the escape, the start at 0 reaches x* itself
    sol = engine.solve(Bistable(), ONE_PHASE, KEY, starts[:1])
    assert sol.value[0] == pytest.approx(X_STAR, abs=1e-9) and not sol.flags


def test_every_start_on_every_repeat():
    """``repeats_per_branch``: each start solved on each repeat's draws (drawn once: common random
    numbers), repeat i > 0 from the branch's repeat-0 solution; branches compared by their
    repeat-mean objective; summaries per start; a duplicate branch is dropped from the choice."""
    R = 3

    class Counting(Toy):
        keys = []

        def draws(self, key):
            self.keys.append(np.asarray(key).tolist())
            return super().draws(key)

    toy = Counting()
    starts = [STARTS[1], STARTS[0], engine.Start("plus2", np.array([0.8]))]
    settings = engine.Settings(tol=1e-10, repeats=R, repeats_per_branch=True)
    sol = engine.solve(toy, settings, KEY, starts)
    assert len(toy.keys) == R and toy.keys[0] == np.asarray(KEY).tolist()
    assert [s["start"] for s in sol.starts] == ["minus", "plus", "plus2"]
    assert [s["distinct"] for s in sol.starts] == [True, True, False]
    assert [s["selected"] for s in sol.starts] == [False, True, False]
    assert sol.stats["n_branches"] == 2 and sol.stats["n_starts"] == 3
    for s in sol.starts:
        assert len(s["results"]) == len(s["rows"]) == R and s["converged"] and s["stable"]
        xs = [r["x"] for r in s["rows"]]
        assert s["x"] == pytest.approx(np.mean(xs), rel=1e-12)
        assert s["mc_err"]["x"] == pytest.approx(
            math.sqrt(np.var(xs, ddof=1) / R + 0.01 ** 2 / R), rel=1e-12)
    plus = sol.starts[1]
    assert sol.metrics == plus["metrics"] and sol.repeats == plus["rows"]
    assert sol.value[0] == plus["results"][0].x[0] and sol.best is plus["results"][0]
    assert [b["start"] for b in sol.branches] == ["plus", "minus"]       # by mean objective
    # the repeats of a start begin at its repeat-0 solution, on the draws of the first solve
    ref = engine.solve(Toy(), engine.Settings(tol=1e-10, repeats=R), KEY, STARTS[:1])
    assert [r["x"] for r in plus["rows"]] == pytest.approx([r["x"] for r in ref.repeats],
                                                           abs=1e-9)
    assert sol.converged and sol.result == "converged" and sol.mc_err["x"] is not None
    assert any("2 fixed points found" in f for f in sol.flags)


def test_every_start_on_every_repeat_reports_an_unconverged_branch():
    # the selected branch converges, another compared one does not: "branch_unconverged"
    class Jumping(Toy):
        # x < 0: a jump at −0.5 and no fixed point (the iteration stalls); x > 0: the toy
        def hats(self, x, means, force_stein):
            if x[0] < 0:
                return (-0.5 - 0.2 * math.copysign(1.0, x[0] + 0.5),), False
            return super().hats(x, means, force_stein)

    settings = engine.Settings(tol=1e-10, repeats=2, repeats_per_branch=True, max_iter=200,
                               stein_retry=False)
    sol = engine.solve(Jumping(), settings, KEY, STARTS)
    assert [s["converged"] for s in sol.starts] == [True, False]
    assert sol.result == "branch_unconverged" and not sol.converged
    assert sol.flags[0] == "toy fixed point not converged"


def test_a_stein_retry_that_reaches_a_state_of_the_stalled_pass_stops():
    """A stalled pass latched to the Stein forms (a full evaluation saw several minima) is
    retried with the Stein forms from its start; when a round of the retry reaches a phase-1
    fixed point of the stalled pass, it would retrace that pass to its stall, so the retry stops
    there ("stalled"; the reported point is the stalled pass's, as without the rule)."""
    class LatchedCycle(Toy):      # each full evaluation flips the choice and sees two minima
        choice = 1.0

        def means(self, x, warm, data, full):
            out, w = super().means(x, warm, data, full)
            if full:
                self.choice = -self.choice
            return dict(out, t=out["t"] + 1e-3 * self.choice, multimin=float(full)), w

        def hats(self, x, means, force_stein):
            return (means["t"],), bool(force_stein or means["multimin"])

    toy = LatchedCycle()
    b = engine.solve_branch(toy, toy.draws(KEY), STARTS[0], SET)
    assert b.result == "stalled" and not b.stein_retry
    # first pass: the cold start's warm call, 2 full steps, then its cycle; the retry: its first
    # (full) call lands on one of the two states of the cycle, then the reported evaluation —
    # without the rule the retry would take its own 2 full steps to see its cycle
    assert sum(toy.calls) <= 4


def test_repeats_without_a_neighbour_start_with_the_full_multistart():
    """An MC repeat started at the solved point (no neighbour to continue) where samples had
    several minima evaluates the full multistart map first: the minima of the solved point, not
    the cold warm-only iteration (without multiple minima: warm-only first, one full call
    saved)."""
    class Spy(Toy):
        def __init__(self):
            super().__init__()
            self.seen = []

        def means(self, x, warm, data, full):
            self.seen.append((float(data[0]), full))
            return Toy.means(self, x, warm, data, full)

        def record(self, x, hats, means, stein):     # samples with several minima
            return dict(Toy.record(self, x, hats, means, stein), frac_multimin=0.01)

    toy = Spy()
    settings = engine.Settings(tol=1e-10, damping=0.3, max_iter=500, repeats=3, workers=1)
    engine.solve(toy, settings, KEY, STARTS)
    first_of = {}
    for d0, full in toy.seen:
        first_of.setdefault(d0, full)
    assert len(first_of) == 3
    first_draws = float(toy.draws(KEY)[0])
    assert first_of.pop(first_draws) is False          # the cold branch: warm-only first
    assert all(first_of.values())                      # the two repeats: full first
    # no samples with several minima (no frac_multimin): the repeats start warm-only
    assert engine.driver.repeat_start(engine.solve(Toy(), settings, KEY, STARTS).best).full_first \
        is False


@pytest.mark.parametrize("h_prev", [0.04, -0.05])
def test_speculative_repeats_give_the_numbers_of_the_sequential_protocol(monkeypatch, h_prev):
    """Along a curve the continued MC repeats run beside the branch search (``SPECULATE``); they
    are kept only when the selected branch keeps the neighbour's label and within the repeat
    cap, so the numbers are those of the repeats run after the search, to the last bit. h_prev
    = −0.05: the neighbour selected the "minus" branch, the point selects "plus" (the label
    changes, so the speculative repeats are discarded and solved again from the point)."""
    from theory.engine import driver

    settings = engine.Settings(tol=1e-10, damping=0.3, max_iter=500, repeats=3, workers=2)
    prev = engine.solve(Toy(h=h_prev), settings, KEY, STARTS)
    runs = {}
    for spec in (False, True):
        monkeypatch.setattr(driver, "SPECULATE", spec)
        runs[spec] = engine.solve(Toy(h=0.05), settings, KEY, STARTS, previous=prev)
    a, b = runs[False], runs[True]
    assert [r["x"] for r in a.repeats] == [r["x"] for r in b.repeats]
    assert a.metrics == b.metrics and a.mc_err == b.mc_err
    assert a.stats["repeat_iterations"] == b.stats["repeat_iterations"]
    assert a.best.record["label"] == "plus"
    assert (prev.best.record["label"] == "plus") == (h_prev > 0)
    # the speculative runs were used where the label is kept, discarded where it changes
    assert a.stats["speculative_repeats_kept"] == 0
    assert b.stats["speculative_repeats_kept"] == (2 if h_prev > 0 else 0)
