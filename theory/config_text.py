"""The config as text: reading TOML files, printing TOML values, parsing ``section.field=value``.

:func:`read_toml` names the path in every failure (missing, a directory, unreadable, not UTF-8,
not TOML); :func:`parse_assignment` reads one ``--set`` string; :func:`_split_key` checks a
``section.field`` name; :func:`_toml_value` writes one value as TOML. The public names are
re-exported by :mod:`theory.config`, the import path to use.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import fields
from pathlib import Path
from typing import Any

from theory.config_fields import ConfigError
from theory.config_sections import _SECTIONS

__all__ = ["parse_assignment", "read_toml"]


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _split_key(dotted: str) -> tuple[str, str]:
    parts = dotted.split(".")
    if len(parts) != 2 or parts[0] not in _SECTIONS:
        raise ConfigError(f"{dotted!r}: expected section.field with section in "
                          + ", ".join(_SECTIONS))
    section, name = parts
    allowed = {f.name for f in fields(_SECTIONS[section])}
    if name not in allowed:
        raise ConfigError(f"{dotted}: unknown field; allowed fields of [{section}] are "
                          + ", ".join(sorted(allowed)))
    return section, name


def parse_assignment(text: str) -> tuple[tuple[str, str], Any]:
    """Parse ``section.field=value``: the value is read as a TOML value; a bare word that is not
    valid TOML (``optimal``) is taken as a string; ``none``/``null`` unsets an optional field."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected section.field=value")
    key, raw = text.split("=", 1)
    key = _split_key(key.strip())
    raw = raw.strip()
    if raw.lower() in ("none", "null"):
        return key, None
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key, value


def read_toml(path: str | Path, what: str, error: type[Exception]) -> dict:
    """Parse the TOML file at ``path``; any failure raises ``error`` naming ``what`` and path."""
    path = Path(path)
    where = f"{what} {str(path)!r}"
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise error(f"{where} does not exist") from None
    except IsADirectoryError:
        raise error(f"{where} is a directory, not a file") from None
    except PermissionError:
        raise error(f"{where} cannot be read (permission denied)") from None
    except OSError as err:
        raise error(f"{where} cannot be read: {err.strerror or err}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise error(f"{where} is not UTF-8 text (byte {err.start}: {err.reason}); "
                    "TOML files must be UTF-8") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise error(f"{where} is not valid TOML: {err}") from None
