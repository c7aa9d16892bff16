"""Text tables of the command line and the theory-vs-simulation rows of ``hdlora compare``.

Unknown numbers are shown as such, never as 0: an MC error that cannot be estimated (a single MC
repeat, a single seed) prints ``?``; a z that cannot be formed prints ``n/a``; a value that is
not defined (NaN) prints ``nan``. z follows :func:`theory.schema.z_score`:
z = (theory − simulation)/√(sem² + mc_err²).
"""

from __future__ import annotations

import math

from theory.schema import FINETUNE_METRICS, PRETRAIN_METRICS, TOP_METRICS, known, z_score

__all__ = ["rows", "fmt", "fmt_err", "table_simulation", "table_theory", "compare_rows",
           "table_compare"]


def rows(result: dict):
    """(full metric name, entry) for every metric in a result object."""
    for block, keys in (("pretrain", PRETRAIN_METRICS), ("finetune", FINETUNE_METRICS)):
        entries = result.get(block) or {}
        for key in keys:
            if key in entries:
                yield f"{block}.{key}", entries[key]
    for key in TOP_METRICS:
        if result.get(key):
            yield key, result[key]


def fmt(x) -> str:
    """A value: 5 significant digits, ``nan`` when undefined."""
    if not known(x):
        return "nan"
    return f"{x:.5g}"


def fmt_err(x) -> str:
    """An error bar: ``?`` when it is unknown (None/NaN)."""
    return f"{x:.5g}" if known(x) else "?"


def table_simulation(result: dict) -> str:
    lines = [f"{'metric':28s} {'mean':>11s} {'sem':>10s}"]
    for name, e in rows(result):
        lines.append(f"{name:28s} {fmt(e['mean']):>11s} {fmt_err(e['sem']):>10s}")
    return "\n".join(lines)


def table_theory(result: dict) -> str:
    lines = [f"{'metric':28s} {'theory':>11s} {'mc_err':>10s}"]
    for name, e in rows(result):
        lines.append(f"{name:28s} {fmt(e['value']):>11s} {fmt_err(e['mc_err']):>10s}")
    if result.get("bayes_finetune"):
        for key, e in result["bayes_finetune"].items():
            lines.append(f"{'bayes_finetune.' + key:28s} {fmt(e['value']):>11s} "
                         f"{fmt_err(e['mc_err']):>10s}")
    for flag in result.get("flags", []):
        lines.append(f"! {flag}")
    return "\n".join(lines)


def compare_rows(theory_result: dict, sim_result: dict) -> list[dict]:
    """Per metric: theory value, its MC error, simulation mean and sem, the relative difference
    and z = (theory − sim)/√(sem² + mc_err²) (:func:`theory.schema.z_score`; None when an error
    is unknown)."""
    sim_entries = dict(rows(sim_result))
    out = []
    for name, th in rows(theory_result):
        if name not in sim_entries:
            continue
        sm = sim_entries[name]
        value, err, mean, sem = th["value"], th["mc_err"], sm["mean"], sm["sem"]
        rel = ((value - mean) / abs(mean) if known(value) and known(mean) and mean != 0
               else math.nan)
        out.append({"metric": name, "theory": value, "mc_err": err, "sim_mean": mean,
                    "sim_sem": sem, "z": z_score(value, err, mean, sem), "rel_diff": rel})
    return out


def table_compare(compared: list[dict], flags) -> str:
    lines = [f"{'metric':28s} {'theory':>10s} {'±mc':>8s} {'sim':>10s} {'±sem':>8s} "
             f"{'rel':>8s} {'z':>7s}"]
    for r in compared:
        z = f"{r['z']:+.2f}" if known(r["z"]) else "n/a"
        lines.append(f"{r['metric']:28s} {fmt(r['theory']):>10s} {fmt_err(r['mc_err']):>8s} "
                     f"{fmt(r['sim_mean']):>10s} {fmt_err(r['sim_sem']):>8s} "
                     f"{fmt(r['rel_diff']):>8s} {z:>7s}")
    if any(not known(r["z"]) for r in compared):
        lines.append("z = (theory - sim)/sqrt(sem^2 + mc_err^2); n/a: an error is unknown "
                     "(one seed or one MC repeat: raise sim.seeds / theory.mc_repeats)")
    lines += [f"! {flag}" for flag in flags]
    return "\n".join(lines)
