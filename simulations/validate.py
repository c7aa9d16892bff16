"""Theory vs simulation across dimensions, with a finite-size extrapolation.

``hdlora validate SPEC.toml`` runs a sweep whose grid includes ``sim.d`` (theory and simulation),
then, for every setting (the other axes) and metric, fits the seed-averaged simulation means

    mean(d) = a + b · d^(−p),   weighted by 1/sem²,

for p = 1/2 (the leading finite-size correction allowed by the Gaussian-equivalence skewness and
the backbone–spike coupling, THEORY.md T2, T4) and p = 1 (estimator fluctuations, T5), and reports
the extrapolated a ± its standard error next to the theory value, with
z = (theory − a)/sqrt(err_a² + mc_err²) (:func:`theory.schema.z_score`, the sign of every hdlora
output; None, printed n/a, when an error is unknown). With two dimensions the fit is exact
(no χ²).
"""

from __future__ import annotations

import math

import numpy as np

from theory.schema import known, z_score

__all__ = ["extrapolate", "validation_rows", "format_rows"]


def extrapolate(ds, means, sems, power: float) -> dict:
    """Weighted least squares of ``means ≈ a + b d^(−power)``; returns a, its s.e., b, χ²/dof."""
    ds, means, sems = (np.asarray(v, dtype=float) for v in (ds, means, sems))
    ok = np.isfinite(means) & np.isfinite(sems)
    ds, means, sems = ds[ok], means[ok], sems[ok]
    if len(np.unique(ds)) < 2:
        return {"a": math.nan, "a_err": math.nan, "b": math.nan, "chi2_dof": math.nan}
    floor = 1e-12 + 1e-6 * np.abs(means).max()
    weights = 1.0 / np.maximum(sems, floor) ** 2
    design = np.stack([np.ones_like(ds), ds ** (-power)], axis=1)
    normal = design.T @ (design * weights[:, None])
    cov = np.linalg.inv(normal)
    coef = cov @ (design.T @ (weights * means))
    resid = means - design @ coef
    dof = len(ds) - 2
    chi2 = float(np.sum(weights * resid ** 2) / dof) if dof > 0 else math.nan
    return {"a": float(coef[0]), "a_err": float(math.sqrt(cov[0, 0])), "b": float(coef[1]),
            "chi2_dof": chi2}


def validation_rows(table, metrics, axes) -> list[dict]:
    """One row per (setting, metric): theory, sim mean ± sem per d, both extrapolations."""
    settings_axes = [a for a in axes if a != "sim.d"]
    rows = []
    sim = table[table.source == "simulation"]
    theory = table[table.source == "theory"]
    keys = sim[settings_axes].drop_duplicates().to_dict("records") if settings_axes else [{}]
    for setting in keys:
        sel_sim, sel_th = sim, theory
        for k, v in setting.items():
            sel_sim = sel_sim[sel_sim[k] == v]
            sel_th = sel_th[sel_th[k] == v]
        for metric in metrics:
            s = sel_sim[sel_sim.metric == metric]
            t = sel_th[sel_th.metric == metric]
            if s.empty or t.empty:
                continue
            grouped = s.groupby("sim.d")["value"]
            ds = np.array(sorted(grouped.groups), dtype=float)
            means = grouped.mean().reindex(ds).to_numpy()
            sems = (grouped.std(ddof=1) / np.sqrt(grouped.count())).reindex(ds).to_numpy()
            th_value = float(t["value"].iloc[0])
            th_err = float(t["error"].iloc[0])   # NaN: unknown (never taken as 0)
            row = {**setting, "metric": metric, "theory": th_value, "theory_err": th_err,
                   "d": ds.tolist(), "sim_mean": means.tolist(), "sim_sem": sems.tolist(),
                   "seeds": int(grouped.count().min())}
            for label, power in (("sqrt", 0.5), ("inv", 1.0)):
                fit = extrapolate(ds, means, sems, power)
                row[f"extrap_{label}"] = fit["a"]
                row[f"extrap_{label}_err"] = fit["a_err"]
                row[f"z_{label}"] = z_score(th_value, th_err, fit["a"], fit["a_err"])
            rows.append(row)
    return rows


def format_rows(rows, axes) -> str:
    """A markdown table of :func:`validation_rows`."""
    settings_axes = [a for a in axes if a != "sim.d"]
    head = settings_axes + ["metric", "theory", "sim by d (mean ± sem)", "extrap 1/√d",
                            "z", "extrap 1/d", "z"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        per_d = "; ".join(f"{int(d)}: {m:.4g}±{s:.2g}"
                          for d, m, s in zip(r["d"], r["sim_mean"], r["sim_sem"]))
        cells = [str(r[a]) for a in settings_axes] + [
            r["metric"], f"{r['theory']:.4g}±{_err(r['theory_err'], '.1g')}", per_d,
            f"{r['extrap_sqrt']:.4g}±{_err(r['extrap_sqrt_err'], '.2g')}", _z(r["z_sqrt"]),
            f"{r['extrap_inv']:.4g}±{_err(r['extrap_inv_err'], '.2g')}", _z(r["z_inv"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _err(x, digits: str) -> str:
    return format(x, digits) if known(x) else "?"


def _z(z) -> str:
    return f"{z:.2f}" if known(z) else "n/a"
