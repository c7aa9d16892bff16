"""Sweep specifications (TOML): a base config, axes, what to run, seeds.

Format (keys with dots are config fields ``section.field`` and must be quoted)::

    [sweep]
    name = "finetune_vs_alpha"
    run = ["theory", "simulate"]        # any non-empty subset
    seeds = 4                           # simulation seeds sim.seed .. sim.seed + seeds - 1
                                        # (default: base sim.seeds)
    continuation = "finetune.alpha"     # optional: theory runs one task per curve along it,
                                        # each point also started from its neighbour's solution
    stages = ["pretrain", "finetune"]   # theory stages to solve (default both)
    bayes_bound = false                 # also the Bayes-optimal fine-tuning bound (slow)

    [sweep.grid]                        # Cartesian product
    "finetune.lam" = [0.05, 0.5, 1.0]
    "finetune.alpha" = [0.5, 1, 2, 3]

    [sweep.zip]                         # lists of equal length varied together, crossed with the grid
    "pretrain.lam" = [0.01, 0.1]
    "pretrain.alpha" = [0.1, 0.2]

    [base.model]                        # any config section of MODEL.md §5
    T = 3

    [figure]                            # optional: read by figures/ only, ignored by the sweep

Every point is validated as a :class:`theory.config.Config` when the spec is loaded: an error
names the spec field (or the point and the config field) and the allowed range. An axis that
lists one setting twice (``[2.0, 2, 2.0]``: the same config) is an error naming the axis, and so
is a simulation-only sweep with a theory-only point (``pretrain.estimator = "bayes"``; in a sweep
that also runs the theory such points are simulated by nobody and counted in the report).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from simulations.cli_io import read_toml_file
from theory.config import Config, ConfigError

__all__ = ["SweepSpec", "SweepPoint", "load_spec", "SpecError", "RUN_KINDS"]

RUN_KINDS = ("theory", "simulate")


class SpecError(ValueError):
    """Invalid sweep specification (names the offending key)."""


@dataclass(frozen=True)
class SweepPoint:
    """One point of a sweep: its axis values (``field -> value``) and its resolved config."""

    index: int
    values: tuple[tuple[str, Any], ...]
    config: Config

    @property
    def point_id(self) -> str:
        """Stable identifier: the digest of the resolved config."""
        return self.config.digest()

    def as_dict(self) -> dict[str, Any]:
        return dict(self.values)


@dataclass(frozen=True)
class SweepSpec:
    name: str
    base: Config
    grid: tuple[tuple[str, tuple], ...]
    zipped: tuple[tuple[str, tuple], ...]
    run: tuple[str, ...]
    seeds: tuple[int, ...]
    continuation: str | None = None
    stages: tuple[str, ...] = ("pretrain", "finetune")
    bayes_bound: bool = False

    @property
    def axes(self) -> tuple[str, ...]:
        """Config fields that vary, grid axes first."""
        return tuple(k for k, _ in self.grid) + tuple(k for k, _ in self.zipped)

    def points(self) -> list[SweepPoint]:
        grid_values = [vals for _, vals in self.grid]
        zip_len = len(self.zipped[0][1]) if self.zipped else 1
        out = []
        for combo in itertools.product(*grid_values) if grid_values else [()]:
            for j in range(zip_len):
                values = tuple(zip((k for k, _ in self.grid), combo)) + tuple(
                    (k, vals[j]) for k, vals in self.zipped)
                try:
                    cfg = self.base.with_overrides([f"{k}={_literal(v)}" for k, v in values])
                except ConfigError as err:
                    raise SpecError(f"sweep point {dict(values)}: {err}") from None
                out.append(SweepPoint(index=len(out), values=values, config=cfg))
        seen: dict[str, SweepPoint] = {}
        for p in out:
            if p.point_id in seen:
                raise SpecError(f"sweep points {seen[p.point_id].as_dict()} and {p.as_dict()} are "
                                "the same config: list each setting once")
            seen[p.point_id] = p
        return out

    def curves(self) -> list[list[SweepPoint]]:
        """Points grouped into theory curves along ``continuation`` (sorted by its value; the
        ``sim.*`` axes, which the theory does not read, are folded into the same curve);
        without continuation a curve holds one point and its ``sim.*`` variants."""
        points = self.points()
        groups: dict[tuple, list[SweepPoint]] = {}
        for p in points:
            key = tuple((k, v) for k, v in p.values
                        if k != self.continuation and not k.startswith("sim."))
            groups.setdefault(key, []).append(p)
        if self.continuation is None:
            return list(groups.values())
        return [sorted(g, key=lambda p: p.as_dict()[self.continuation]) for g in groups.values()]


def _literal(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    return repr(value)


def _axis_table(table: Any, where: str) -> tuple[tuple[str, tuple], ...]:
    if table is None:
        return ()
    if not isinstance(table, Mapping):
        raise SpecError(f"[{where}] must be a table of \"section.field\" = [values]")
    out = []
    for key, values in table.items():
        try:
            Config().get(key)
        except ConfigError as err:
            raise SpecError(f"[{where}] {err}") from None
        if not isinstance(values, list) or not values:
            raise SpecError(f"[{where}] \"{key}\" must be a non-empty list of values")
        if where == "sweep.grid":
            _no_repeats(key, values, where)
        out.append((key, tuple(values)))
    return tuple(out)


def _setting(key: str, value: Any):
    """The value a config field takes for ``value`` (2 and 2.0 are one setting)."""
    try:
        return Config().with_overrides([f"{key}={_literal(value)}"]).get(key)
    except (ConfigError, TypeError, ValueError):
        return ("invalid", repr(value))   # reported with its range when the points are built


def _no_repeats(key: str, values: list, where: str) -> None:
    seen: dict = {}
    for v in values:
        s = _setting(key, v)
        try:
            hash(s)
        except TypeError:
            s = repr(s)
        if s in seen:
            raise SpecError(f"[{where}] \"{key}\" = {values!r} lists the setting {seen[s]!r} more "
                            f"than once ({v!r}): each value once, or the same task runs twice")
        seen[s] = v


def spec_from_dict(data: Mapping[str, Any]) -> SweepSpec:
    unknown = sorted(set(data) - {"sweep", "base", "figure"})
    if unknown:
        raise SpecError(f"[{unknown[0]}]: unknown table; a spec has [sweep], [base] and "
                        "(for figures/, ignored here) [figure]")
    sweep = dict(data.get("sweep", {}))
    allowed = {"name", "run", "seeds", "continuation", "grid", "zip", "stages",
               "bayes_bound"}
    extra = sorted(set(sweep) - allowed)
    if extra:
        raise SpecError(f"sweep.{extra[0]}: unknown key; allowed: {', '.join(sorted(allowed))}")
    name = sweep.get("name")
    if not isinstance(name, str) or not name or "/" in name:
        raise SpecError(f"sweep.name = {name!r}: must be a non-empty string without '/'")
    run = sweep.get("run", ["theory", "simulate"])
    if isinstance(run, str):
        run = [run]
    if not run or any(r not in RUN_KINDS for r in run):
        raise SpecError(f"sweep.run = {run!r}: must be a non-empty list from {list(RUN_KINDS)}")
    try:
        base = Config.from_dict(data.get("base", {}))
    except ConfigError as err:
        raise SpecError(f"[base] {err}") from None
    seeds = sweep.get("seeds", base.sim.seeds)
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise SpecError(f"sweep.seeds = {seeds!r}: must be an integer >= 1")
    grid = _axis_table(sweep.get("grid"), "sweep.grid")
    zipped = _axis_table(sweep.get("zip"), "sweep.zip")
    if zipped and len({len(v) for _, v in zipped}) != 1:
        raise SpecError("[sweep.zip] lists must all have the same length: "
                        + ", ".join(f"{k}: {len(v)}" for k, v in zipped))
    both = {k for k, _ in grid} & {k for k, _ in zipped}
    if both:
        raise SpecError(f"{sorted(both)[0]} appears in both [sweep.grid] and [sweep.zip]")
    continuation = sweep.get("continuation")
    if continuation is not None and continuation not in {k for k, _ in grid}:
        raise SpecError(f"sweep.continuation = {continuation!r}: must be one of the grid axes "
                        f"{[k for k, _ in grid]}")
    stages = sweep.get("stages", ["pretrain", "finetune"])
    if stages not in (["pretrain"], ["pretrain", "finetune"]):
        raise SpecError(f"sweep.stages = {stages!r}: must be [\"pretrain\"] or "
                        f"[\"pretrain\", \"finetune\"]")
    spec = SweepSpec(name=name, base=base, grid=grid, zipped=zipped, run=tuple(run),
                     seeds=tuple(range(base.sim.seed, base.sim.seed + seeds)),
                     continuation=continuation, stages=tuple(stages),
                     bayes_bound=_flag(sweep.get("bayes_bound", False), "sweep.bayes_bound"))
    points = spec.points()  # validate every point now
    bayes = sum(p.config.pretrain.estimator == "bayes" for p in points)
    if spec.run == ("simulate",) and bayes:
        raise SpecError(f'sweep.run = ["simulate"] but pretrain.estimator = "bayes" at {bayes} of '
                        f"{len(points)} points: the Bayes-optimal estimator is theory-only "
                        '(MODEL.md M7); add "theory" to sweep.run or choose another '
                        "pretrain.estimator")
    return spec


def _flag(value, where: str) -> bool:
    if not isinstance(value, bool):
        raise SpecError(f"{where} = {value!r}: must be true or false")
    return value


def load_spec(path: str | Path) -> SweepSpec:
    """The spec in the TOML file ``path`` (any unreadable file: :class:`SpecError` naming it)."""
    return spec_from_dict(read_toml_file(path, "sweep spec", SpecError))
