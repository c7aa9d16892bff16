"""One damped fixed-point driver for every order-parameter iteration (THEORY.md §9).

A solver supplies ``step(x) -> x_new`` on a flat float64 vector of order parameters. The driver
damps (``x <- damping·x + (1 − damping)·step(x)``), increases the damping when the residual grows,
stops when ``max|x_new − x| <= tol·(1 + max|x|)``, caps the iterations, backtracks when the map
leaves its domain (a non-finite ``step(x)``: the iterate is moved halfway back to the last point
where the map was finite, at most ``MAX_BACKTRACKS`` times in a row, then it stops), and returns
a :class:`FixedPointSolution` with a result code: it never returns a silent non-converged answer.
``throw=True`` raises :class:`FixedPointError` instead of returning a non-converged solution.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .solver_constants import ANDERSON_MAX_STEP

__all__ = ["FixedPointSolution", "FixedPointError", "damped_fixed_point", "MAX_BACKTRACKS"]

#: consecutive halvings toward the last in-domain iterate before giving up with "nonfinite"
MAX_BACKTRACKS = 8


class FixedPointError(RuntimeError):
    """A fixed-point iteration did not converge (raised only with ``throw=True``)."""


@dataclass(frozen=True)
class FixedPointSolution:
    """Result of :func:`damped_fixed_point`.

    ``result`` is ``"converged"``, ``"max_iter"``, ``"stalled"``, ``"slow"`` or ``"nonfinite"`` (then ``value``
    is the last iterate where the map was finite, if any); ``residual`` is the last relative step
    size; ``history`` holds the residual of every iteration.
    """

    value: np.ndarray
    result: str
    iterations: int
    residual: float
    seconds: float
    history: tuple = field(default=(), repr=False)

    @property
    def converged(self) -> bool:
        return self.result == "converged"

    def stats(self) -> dict:
        return {"converged": self.converged, "result": self.result, "iterations": self.iterations,
                "residual": float(self.residual), "seconds": float(self.seconds)}


def damped_fixed_point(step: Callable[[np.ndarray], np.ndarray], x0, *, damping: float = 0.5,
                       tol: float = 1e-7, max_iter: int = 1000, max_damping: float = 0.95,
                       anderson: int = 0, stall: int | None = None, slow: int | None = None,
                       anderson_max_step: float = ANDERSON_MAX_STEP,
                       throw: bool = False) -> FixedPointSolution:
    """Iterate ``x <- damping·x + (1−damping)·step(x)`` to a fixed point (see module docstring).

    ``anderson = m > 0`` accelerates the damped map by Anderson mixing over the last m residual
    differences (type II; x⁺ = x + βg − (ΔX + βΔG)γ, γ = argmin‖g − ΔGγ‖, β = 1 − damping,
    g = step(x) − x). Safeguards: an extrapolation longer than ``anderson_max_step`` damped steps
    (default :data:`theory.solver_constants.ANDERSON_MAX_STEP`) is not taken; when
    the residual exceeds 10x the best one seen, the iteration returns to the best point, clears
    the history, increases the damping and takes a plain damped step. The fixed point and the
    stopping rule are those of the plain map.

    ``stall = k`` stops with result ``"stalled"`` when the best residual seen has not halved in k
    consecutive iterations (a Monte-Carlo map that is discontinuous at the resolution of its
    draws, e.g. per-sample minimisers jumping between minima, cycles there instead of
    converging); the answer is reported as not converged, never as converged.

    ``slow = k`` stops with result ``"slow"`` when, after at least k iterations, the geometric
    rate of the best residual over the last k iterations predicts that ``tol`` will not be
    reached within ``max_iter`` (a branch search from a second start that drifts slowly towards
    another fixed point: it would end as ``"max_iter"`` anyway, k·(cost) sooner).
    """
    start = time.perf_counter()
    x = np.asarray(x0, dtype=np.float64).copy()
    history = []
    previous = np.inf
    result = "max_iter"
    residual = np.inf
    it = 0
    past_x: list[np.ndarray] = []
    past_g: list[np.ndarray] = []
    best, best_x, best_fx = np.inf, x, x
    stall_ref, stall_since = np.inf, 0
    last_good, backtracks = None, 0
    best_hist: list[float] = []
    for it in range(1, max_iter + 1):
        fx = np.asarray(step(x), dtype=np.float64)
        if not np.all(np.isfinite(fx)):
            # the map left its domain at x (e.g. a hat of the wrong sign in an extrapolated
            # iterate): halve the way back to the last in-domain point, damp more, forget the
            # Anderson history; a map non-finite at its start or after MAX_BACKTRACKS halvings stops
            if last_good is None or backtracks >= MAX_BACKTRACKS:
                result = "nonfinite"
                if last_good is not None:
                    x = last_good  # report the last point where the map was defined
                break
            backtracks += 1
            x = last_good + 0.5 * (x - last_good)
            damping = min(max_damping, 0.5 * (1.0 + damping))
            past_x.clear()
            past_g.clear()
            history.append(np.nan)
            continue
        last_good, backtracks = x.copy(), 0
        residual = float(np.max(np.abs(fx - x)) / (1.0 + np.max(np.abs(x))))
        history.append(residual)
        if residual <= tol:
            x = fx
            result = "converged"
            break
        best_hist.append(min(residual, best_hist[-1]) if best_hist else residual)
        if slow is not None and it >= slow:
            r_now, r_then = best_hist[-1], best_hist[-slow]
            rate = (r_now / r_then) ** (1.0 / (slow - 1)) if r_then > 0 else 0.0
            if rate >= 1.0 or it + math.log(tol / r_now) / math.log(rate) > max_iter:
                result = "slow"
                break
        if stall is not None:
            if residual < 0.5 * stall_ref:
                stall_ref, stall_since = residual, it
            elif it - stall_since >= stall:
                result = "stalled"
                break
        if anderson > 0:
            if residual < best:
                best, best_x, best_fx = residual, x.copy(), fx.copy()
            elif residual > 10.0 * best:
                # Anderson residuals are not monotone; a blow-up (10x the best residual seen)
                # returns to the best point with a plain, more damped step
                damping = min(max_damping, 0.5 * (1.0 + damping))
                past_x.clear()
                past_g.clear()
                x, fx = best_x.copy(), best_fx.copy()
        elif residual > previous:  # oscillation or overshoot: damp more
            damping = min(max_damping, 0.5 * (1.0 + damping))
        previous = residual
        beta = 1.0 - damping
        g = fx - x
        x_next = x + beta * g
        if anderson > 0:
            if past_x:
                dX = np.stack([x - px for px in past_x], axis=1)
                dG = np.stack([g - pg for pg in past_g], axis=1)
                scale = np.max(np.abs(dG)) + 1e-300
                gamma = np.linalg.lstsq(dG / scale, g / scale, rcond=1e-10)[0]
                candidate = x_next - (dX + beta * dG) @ gamma
                # keep the extrapolation within anderson_max_step damped steps of x
                if np.all(np.isfinite(candidate)) and np.max(np.abs(candidate - x)) <= \
                        anderson_max_step * np.max(np.abs(beta * g)):
                    x_next = candidate
            past_x.insert(0, x.copy())
            past_g.insert(0, g.copy())
            del past_x[anderson:], past_g[anderson:]
        x = x_next
    sol = FixedPointSolution(value=x, result=result, iterations=it, residual=residual,
                             seconds=time.perf_counter() - start, history=tuple(history))
    if throw and not sol.converged:
        raise FixedPointError(f"fixed point not converged: {result} after {it} iterations, "
                              f"residual {residual:.3g} > tol {tol:.3g}")
    return sol
