"""Field rules of the config and the validation of one value (part of :mod:`theory.config`).

:func:`_spec` makes a dataclass field that carries its rule (kind, range, choices) in its
metadata; :func:`_check_value` checks one value against that rule and raises :class:`ConfigError`
naming ``section.field``, the value and the allowed range (nothing is clipped); :class:`_Section`
is the mixin that checks every field of a section when it is built. The public names are
re-exported by :mod:`theory.config`, the import path to use.
"""

from __future__ import annotations

import math
from dataclasses import field, fields
from typing import Any, Mapping

__all__ = ["ConfigError"]


class ConfigError(ValueError):
    """Invalid configuration value. The message names ``section.field``, the value and the range."""


# --------------------------------------------------------------------------------------------
# field specifications
# --------------------------------------------------------------------------------------------
def _spec(default, kind, *, low=None, high=None, low_open=False, high_open=False,
          choices=None, optional=False, doc=""):
    """A dataclass field carrying its validation rule in ``metadata``."""
    meta = dict(kind=kind, low=low, high=high, low_open=low_open, high_open=high_open,
                choices=choices, optional=optional, doc=doc)
    return field(default=default, metadata=meta)


def _range_text(meta) -> str:
    if meta["choices"] is not None:
        return "one of " + ", ".join(repr(c) for c in meta["choices"])
    lo, hi = meta["low"], meta["high"]
    left = "(" if meta["low_open"] else "["
    right = ")" if meta["high_open"] else "]"
    lo_s = "-inf" if lo is None else repr(lo)
    hi_s = "inf" if hi is None else repr(hi)
    if lo is None:
        left = "("
    if hi is None:
        right = ")"
    return f"{meta['kind']} in {left}{lo_s}, {hi_s}{right}"


def _check_value(section: str, name: str, value: Any, meta: Mapping[str, Any]) -> Any:
    """Type-check and range-check one value; return it normalised (int -> float for floats)."""
    where = f"{section}.{name}"
    kind = meta["kind"]
    if value is None:
        if meta["optional"]:
            return None
        raise ConfigError(f"{where} = None: a value is required ({_range_text(meta)})")
    if kind == "bool":
        if not isinstance(value, bool):
            raise ConfigError(f"{where} = {value!r}: must be a boolean (true or false)")
        return value
    if kind == "str":
        if not isinstance(value, str):
            raise ConfigError(f"{where} = {value!r}: must be a string, {_range_text(meta)}")
        if meta["choices"] is not None and value not in meta["choices"]:
            raise ConfigError(f"{where} = {value!r}: must be {_range_text(meta)}")
        return value
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            else:
                raise ConfigError(f"{where} = {value!r}: must be an integer ({_range_text(meta)})")
    elif kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where} = {value!r}: must be a number ({_range_text(meta)})")
        value = float(value)
        if not math.isfinite(value):
            raise ConfigError(f"{where} = {value!r}: must be finite ({_range_text(meta)})")
    else:  # pragma: no cover - programming error
        raise TypeError(kind)
    lo, hi = meta["low"], meta["high"]
    if lo is not None and (value < lo or (meta["low_open"] and value == lo)):
        raise ConfigError(f"{where} = {value!r}: out of range, must be {_range_text(meta)}")
    if hi is not None and (value > hi or (meta["high_open"] and value == hi)):
        raise ConfigError(f"{where} = {value!r}: out of range, must be {_range_text(meta)}")
    return value


class _Section:
    """Mixin: validate every field on construction (frozen dataclasses)."""

    SECTION = ""

    def __post_init__(self):
        for f in fields(self):
            if "kind" not in f.metadata:
                continue
            checked = _check_value(self.SECTION, f.name, getattr(self, f.name), f.metadata)
            object.__setattr__(self, f.name, checked)
        self._check_section()

    def _check_section(self) -> None:
        """Cross-field checks inside one section (overridden where needed)."""

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]):
        if not isinstance(data, Mapping):
            raise ConfigError(f"[{cls.SECTION}] must be a table, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"{cls.SECTION}.{unknown[0]}: unknown field; allowed fields of [{cls.SECTION}] are "
                + ", ".join(sorted(known)))
        return cls(**dict(data))

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}
