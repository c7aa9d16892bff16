"""Do the theory's trust flags catch its disagreements with simulation? (issue 15, item 3)

A validation table (``docs/validation/*.md``, written by ``python -m figures.table`` or
``hdlora validate``) has one row per (setting, metric): the theory value ± MC error, the simulation
(at one d, or per d with the finite-size extrapolations of :mod:`simulations.validate`) and z. This
module reads those tables back, decides for every row whether theory and simulation disagree
(|z| > 3, using the 1/d-extrapolated z where the table has one, else the single-d z), and whether
the theory point carries a trust flag. It reports

    recall       = P(flagged | disagree)      (a disagreement the flags miss is the worst case),
    false alarm  = P(flagged | agree),

per table and in total, with the list of missed disagreements. Rows are also grouped into
*points* (the setting, all metrics): a point disagrees when any of its metrics does. The total is
also split into rows compared with an extrapolation in d (issue 15's criterion: |theory −
extrapolated simulation| > 3σ) and rows compared at one d (there a |z| > 3 may be the known
O(1/d) offset of the simulation, which no solver flag can see).

The flags are either those printed in the table (``theory flags`` column: the solver's flags when
the table was made) or recomputed with the current solvers (``--recompute``: the setting's config
is the table's spec — figures/specs/<section>.toml or the spec named in the table's preamble —
with the row's axis values, solved by :func:`theory.predict.predict`). ``--recompute`` also
replaces the row's theory value and MC error by the current solver's, and its z by
:func:`theory.schema.z_score` against the simulation printed beside that z (the extrapolation, or
the one-d mean ± sem): the audit of the current theory against the stored simulations.

    python -m simulations.flag_audit docs/validation/*.md [--recompute] [--json]
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Row", "parse_tables", "audit", "main"]

Z_DISAGREE = 3.0

_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"


@dataclass(frozen=True)
class Row:
    """One (setting, metric) row of a validation table."""

    source: str                   # file#section
    spec: str | None              # spec TOML the setting comes from (None: unknown)
    setting: tuple                # ((axis, value), ...)
    metric: str
    theory: float
    z: float | None
    flags: tuple[str, ...] | None  # None: the table carries no per-row flags
    d_values: tuple = field(default=())
    extrapolated: bool = False    # z against the 1/d extrapolation over several d (else one d)
    sim: tuple | None = None      # (value, error) printed beside z (None: not parsed)
    recomputed: bool = False      # flags, theory and z from the current solvers (--recompute)

    @property
    def flagged(self) -> bool:
        """A pre-training metric is vouched for by the pre-training solver's flags (and the
        point's) only; every other metric by all flags (fine-tuning reads the pre-training
        state): :func:`simulations.sweeps.store.trusted_for`, the rule the figures use."""
        from .sweeps.store import stage_of_flag, trusted_for

        return not trusted_for([(stage_of_flag(f), f) for f in self.flags or ()], self.metric)

    @property
    def disagrees(self) -> bool | None:
        if self.z is None or not math.isfinite(self.z):
            return None
        return abs(self.z) > Z_DISAGREE


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _value(text: str):
    """Axis cell -> Python value (numbers, booleans, strings)."""
    if text in ("True", "False"):
        return text == "True"
    try:
        return int(text) if re.fullmatch(r"[-+]?\d+", text) else float(text)
    except ValueError:
        return text


def _spec_of(section: str, preamble: str, path: Path) -> str | None:
    found = re.findall(r"(tests/validation/[\w.-]+\.toml|figures/specs/[\w.-]+\.toml)", preamble)
    if found:
        return found[0]
    name = section.split(":")[0].strip()
    candidate = Path("figures/specs") / f"{name}.toml"
    return str(candidate) if candidate.exists() or path.name == "figures.md" else None


def parse_tables(path: str | Path) -> list[Row]:
    """Every validation row of a markdown file (tables with a ``metric`` and a ``theory`` column
    and a ``z`` column; other tables are skipped)."""
    path = Path(path)
    lines = path.read_text().splitlines()
    rows: list[Row] = []
    section, preamble = path.stem, ""
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("#"):
            section, preamble = line.lstrip("#").strip(), ""
        elif line.startswith("|") and i + 1 < len(lines) and set(lines[i + 1].replace("|", "")
                                                                   .strip()) <= set("-: "):
            header = _cells(line)
            i += 2
            body = []
            while i < len(lines) and lines[i].startswith("|"):
                body.append(_cells(lines[i]))
                i += 1
            rows += _rows_of(path, section, preamble, header, body)
            continue
        elif line.strip():
            preamble += line + "\n"
        i += 1
    return rows


def _rows_of(path, section, preamble, header, body) -> list[Row]:
    if "metric" not in header or "theory" not in header:
        return []
    zs = [k for k, h in enumerate(header) if h == "z"]
    if not zs:
        return []
    # the 1/d-extrapolated z is the last z column of the validate tables (after "extrap 1/d")
    z_col = zs[-1]
    m_col, t_col = header.index("metric"), header.index("theory")
    axes = header[:m_col]
    flag_col = header.index("theory flags") if "theory flags" in header else None
    spec = _spec_of(section, preamble, path)
    out = []
    for cells in body:
        if len(cells) != len(header):
            continue
        theory = re.match(_NUM, cells[t_col].replace("−", "-"))
        z = re.match(_NUM, cells[z_col].replace("−", "-"))
        pm = re.match(rf"\s*({_NUM})\s*±\s*({_NUM})", cells[z_col - 1].replace("−", "-"))
        flags = None
        if flag_col is not None:
            text = cells[flag_col]
            flags = () if text in ("—", "-", "") else tuple(f.strip() for f in text.split(";"))
        out.append(Row(source=f"{path}#{section}", spec=spec,
                       setting=tuple((a, _value(c)) for a, c in zip(axes, cells[:m_col])),
                       metric=cells[m_col], theory=float(theory.group()) if theory else math.nan,
                       z=float(z.group()) if z else None, flags=flags,
                       extrapolated=len(zs) > 1,
                       sim=(float(pm.group(1)), float(pm.group(2))) if pm else None))
    return out


def _full_setting(row: Row, read_toml, error) -> tuple | None:
    """The theory config's overrides of a row: its axes plus every non-``sim.`` axis of its
    spec's grid that has one value; None when that is not determined (no spec, an axis that is
    not a config field, a grid axis with several values that the row does not name)."""
    if row.spec is None or any("." not in a for a, _ in row.setting):
        return None
    grid = read_toml(row.spec, "spec", error).get("sweep", {}).get("grid", {})
    named = dict(row.setting)
    extra = []
    for axis, values in grid.items():
        if axis in named or axis.startswith("sim."):
            continue
        values = values if isinstance(values, list) else [values]
        if len(values) != 1:
            return None
        extra.append((axis, values[0]))
    return tuple(row.setting) + tuple(extra)


def recompute_flags(rows: list[Row]) -> list[Row]:
    """Flags, theory value and MC error of the current solvers at every row's setting (one
    :func:`predict` per setting), z against the row's printed simulation (module docstring)."""
    from dataclasses import replace

    from theory.config import Config, ConfigError, read_toml
    from theory.predict import predict
    from theory.schema import z_score
    from .sweeps.spec import _literal

    cache: dict = {}
    out = []
    for row in rows:
        setting = _full_setting(row, read_toml, ConfigError)
        if setting is None:
            out.append(row)    # the row's theory config is not known: as printed
            continue
        key = (row.spec, setting)
        if key not in cache:
            base = Config.from_dict(read_toml(row.spec, "spec", ConfigError).get("base", {}))
            cfg = base.with_overrides([f"{a}={_literal(v)}" for a, v in setting])
            try:
                cache[key] = predict(cfg)
            except Exception as err:  # a failed solve is itself a flag
                cache[key] = {"flags": [f"failed: {type(err).__name__}: {err}"]}
        res = cache[key]
        stage, _, name = row.metric.partition(".")
        entry = res.get(stage, {}).get(name) if isinstance(res.get(stage), dict) else None
        theory, z = row.theory, row.z
        if isinstance(entry, dict) and "value" in entry:
            theory = entry["value"]
            z = (z_score(theory, entry.get("mc_err"), *row.sim) if row.sim is not None else None)
        out.append(replace(row, flags=tuple(res["flags"]), theory=theory, z=z, recomputed=True))
    return out


def _rates(items: list[tuple[bool, bool]]) -> dict:
    bad = [f for d, f in items if d]
    good = [f for d, f in items if not d]
    return {"n": len(items), "disagree": len(bad), "flagged": sum(f for _, f in items),
            "recall": (sum(bad) / len(bad)) if bad else None,
            "false_alarm": (sum(good) / len(good)) if good else None}


def audit(rows: list[Row]) -> dict:
    """Recall and false-alarm rate of the flags, per row and per point, with the misses."""
    usable = [r for r in rows if r.disagrees is not None and r.flags is not None]
    per_row = [(r.disagrees, r.flagged) for r in usable]
    points: dict = {}
    for r in usable:
        key = (r.source, r.setting)
        dis, flg = points.get(key, (False, False))
        points[key] = (dis or r.disagrees, flg or r.flagged)
    misses = [dict(source=r.source, setting=dict(r.setting), metric=r.metric, z=r.z)
              for r in usable if r.disagrees and not r.flagged]
    return {"rows": _rates(per_row), "points": _rates(list(points.values())),
            "skipped_rows": len(rows) - len(usable), "misses": misses}


def _fmt(x):
    return "n/a" if x is None else f"{x:.2f}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m simulations.flag_audit",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("tables", nargs="+", help="markdown validation tables")
    parser.add_argument("--recompute", action="store_true",
                        help="flags, theory values and errors of the current solvers (z against "
                             "the printed simulation) instead of those printed in the tables")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    rows = []
    for path in args.tables:
        if not Path(path).is_file():
            print(f"flag_audit: {path!r} is not a file", file=sys.stderr)
            return 2
        rows += parse_tables(path)
    if args.recompute:
        rows = recompute_flags(rows)
    result = {"total": audit(rows),
              "total, extrapolated in d": audit([r for r in rows if r.extrapolated]),
              "total, one d": audit([r for r in rows if not r.extrapolated])}
    for src in sorted({r.source for r in rows}):
        result[src] = audit([r for r in rows if r.source == src])
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    print(f"{'table':60s} {'rows':>5s} {'disagree':>8s} {'recall':>7s} {'false alarm':>11s}"
          f" | points: {'n':>4s} {'disagree':>8s} {'recall':>7s} {'false alarm':>11s}")
    for src, res in result.items():
        r, p = res["rows"], res["points"]
        print(f"{src[-60:]:60s} {r['n']:5d} {r['disagree']:8d} {_fmt(r['recall']):>7s} "
              f"{_fmt(r['false_alarm']):>11s} | {p['n']:10d} {p['disagree']:8d} "
              f"{_fmt(p['recall']):>7s} {_fmt(p['false_alarm']):>11s}")
    if args.recompute:
        print(f"recomputed {sum(r.recomputed for r in rows)} of {len(rows)} rows (the others as "
              "printed: no spec, an axis that is not a config field, or a spec grid axis with "
              "several values the row does not name)")
    for miss in result["total"]["misses"]:
        print(f"missed: {miss['source']} {miss['setting']} {miss['metric']} z = {miss['z']:+.2f}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
