"""The sampling error of one MC repeat's fixed point by linear response (THEORY.md §9, "MC
errors"): what the spread over a few repeats estimates badly.

A repeat solves x* = Φ(x*, m̄(x*)) on N frozen draws, Φ = prior ∘ hats, m̄ the sample means
of the channel's per-sample hat ingredients p_i(x) (f², f·ξ, f·η, the divergences, ∂_qℓ',
the train loss). The draws fluctuate m̄ by δm̄ = (1/n)Σ_u (p_u − p̄) over n independent units
(the antithetic pairs), and to first order the fixed point and a metric row R(x, m̄) move by

    δx* = (I − J)⁻¹ ∂Φ/∂m̄ · δm̄,        δR = (dR/dx)·δx* + ∂R/∂m̄ · δm̄,

J = dΦ(x, m̄(x))/dx and dR/dx the total derivatives along the map (m̄ re-evaluated at x + h on
the same draws, each sample's prox warm-started at its minimiser at x*: the minima followed
continuously, the map's smooth part; forward differences, step ``STEP``·(|x_j| + ``FLOOR``)),
∂/∂m̄ partial ones at fixed x (forward differences in each mean). Where J has a spectral radius
≥ ``RHO_MAX`` the first-order answer is not used (None). So every unit has
an influence I_u = G (p_u − p̄) on the row, G = (dR/dx)(I − J)⁻¹ ∂Φ/∂m̄ + ∂R/∂m̄, and

    Var R = Var_u(I_u) / n                                  (one repeat's sampling variance)

uses all N samples, where the spread of R repeats has R − 1 degrees of freedom: with the default
three repeats it is below half the true error in 22 % of the points (χ²₂), and at the
scarce-data point of docs/validation/scarce_data.md §3.18 it printed 0.004 for an overlap whose
spread over 33 independent draws is 0.028/√3 = 0.016 per three-repeat mean (this estimate: 0.012).
It is first order: a repeat whose samples jump between minima near x*, or a J with an eigenvalue
near 1 (a slow direction), is where it is least accurate, and where the spread over repeats is
kept as the other estimate (:func:`.repeats.aggregate` reports the larger of the two).

A channel opts in with ``units(means) -> (keys, P)``: the names of the means Φ and R read, and
their per-unit values P (n × K) from the per-sample arrays of the reported evaluation
(``BranchResult.means``); None where the units are not independent (e.g. QMC draws).
"""

from __future__ import annotations

import dataclasses

import numpy as np

__all__ = ["sample_row", "sampling_variances", "STEP", "FLOOR", "RHO_MAX"]

#: relative forward-difference step in x (above the O(1/N) jumps of samples that change minimum,
#: and small against the map's curvature; measured at N = 4000, scarce_data.md §3.18: the rms
#: predicted per-draw sd of the §3.14b overlap 0.024 against 0.022 over 20 draws)
STEP = 1e-2
#: absolute floor of the step (an m at 0 on the uninformative branch)
FLOOR = 1e-3
#: the largest spectral radius of J at which the first-order answer is used: (I − J)⁻¹ amplifies
#: by up to 1/(1 − ρ) = 10, and near ρ = 1 (a slow direction, a fold) the fluctuation of x* is
#: not linear in δm̄ (softmax default, α' = 1, 16 draws: without this cut the predictions
#: reached 150× the per-draw sd of the overlap; with it they are 2–5× below it, the draws hopping
#: between branches, §3.18); where no repeat has an answer the spread stands alone
RHO_MAX = 0.9


def sample_row(channel, branch, data) -> dict:
    """The channel's metric row of a solved branch (``channel.outputs``) with ``"_var"``: each
    metric's whole sampling variance on these draws by linear response
    (:func:`sampling_variances`), when the channel supports it. A row's ``"_samples"`` (the values
    of a sampled metric, e.g. the T32 test error, per unit of ``units``) is the direct term of
    that metric and is dropped from the row; a metric with only a within-draw ``"_se"`` gets
    se² added (taken independent of the fixed point's fluctuation)."""
    row = dict(channel.outputs(branch, data))
    direct = row.pop("_samples", {})
    var = sampling_variances(channel, branch, data, direct)
    if var is not None:
        for k, se in row.get("_se", {}).items():
            if k not in direct and k in var:
                var[k] += se ** 2
        row["_var"] = var
    return row


def _metrics(row) -> dict:
    return {k: float(v) for k, v in row.items() if not k.startswith("_")}


def sampling_variances(channel, branch, data, direct=None) -> dict | None:
    """{metric: Var} of one repeat's row (module docstring); None when the channel has no
    ``units`` hook, the branch no reported means, or the linearisation fails (I − J singular,
    a non-finite difference). ``direct``: {metric: values per unit} whose mean is the metric at
    fixed x (added to that metric's influence)."""
    units = getattr(channel, "units", None)
    means = getattr(branch, "means", None)
    if units is None or means is None:
        return None
    got = units(means)
    if got is None:
        return None
    keys, P = got
    P = np.asarray(P, float)
    n = P.shape[0]
    if n < 2:
        return None
    x = np.asarray(branch.x, float)
    force = channel.hats(x, means, branch.stein_retry)[1]       # the reported hat form

    def phi_row(xx, mm):
        hats, stein = channel.hats(xx, mm, force)
        new = np.asarray(channel.prior(hats), float)
        rec = {**branch.record, **channel.record(xx, hats, mm, stein)}
        b = dataclasses.replace(branch, x=np.asarray(xx, float), record=rec, hats=tuple(hats))
        return new, _metrics(channel.outputs(b, data))

    try:
        phi0, row0 = phi_row(x, means)
        names = list(row0)
        r0 = np.array([row0[k] for k in names])
        J = np.empty((x.size, x.size))
        Rx = np.empty((len(names), x.size))
        for j in range(x.size):
            h = STEP * (abs(x[j]) + FLOOR)
            xh = x.copy()
            xh[j] += h
            xh = np.asarray(channel.sanitize(xh), float)
            h = xh[j] - x[j]
            mh, _ = channel.means(xh, branch.warm, data, False)
            ph, rh = phi_row(xh, mh)
            J[:, j] = (ph - phi0) / h
            Rx[:, j] = (np.array([rh[k] for k in names]) - r0) / h
        D = np.empty((x.size, len(keys)))
        Rm = np.empty((len(names), len(keys)))
        for c, k in enumerate(keys):
            base = float(means[k])
            e = 1e-6 * (abs(base) + 1e-6)
            ph, rh = phi_row(x, {**means, k: base + e})
            D[:, c] = (ph - phi0) / e
            Rm[:, c] = (np.array([rh[k2] for k2 in names]) - r0) / e
        if not np.all(np.isfinite(J)) or np.max(np.abs(np.linalg.eigvals(J))) >= RHO_MAX:
            return None
        G = Rx @ np.linalg.solve(np.eye(x.size) - J, D) + Rm
    except (FloatingPointError, ZeroDivisionError, ValueError, np.linalg.LinAlgError):
        return None
    infl = (P - P.mean(0)) @ G.T                                    # (n units, metrics)
    for k, vals in (direct or {}).items():
        v = np.asarray(vals, float)
        if k in names and v.size == n:
            infl[:, names.index(k)] += v - v.mean()
    var = infl.var(0, ddof=1) / n
    if not np.all(np.isfinite(var)):
        return None
    return {k: float(v) for k, v in zip(names, var)}
