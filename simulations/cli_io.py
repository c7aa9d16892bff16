"""Input and output checks of the command line, done before anything is computed.

* :func:`read_toml_file`: a TOML file that is missing, a directory, unreadable, not UTF-8 or not
  valid TOML raises the caller's error class naming the path (config files and sweep specs; the
  CLI turns it into exit status 2, never a traceback).
* :func:`load_cli_config`: a config file plus ``--set`` overrides through that reader.
* :func:`check_output_file` / :func:`check_output_dir`: ``--out``, ``--figure``, ``--store`` and
  ``--results`` are checked before a run starts (a directory where a file is expected, a file
  where a directory is expected, a parent that is a file, no write permission), so a result is
  never computed and then lost.
* :func:`parse_numbers`, :func:`nonnegative_int`: flag values, with errors that name the flag.
* :func:`config_fields_epilog`: the config fields and their ranges for ``--help``.
* :func:`plain_warnings`: hdlora's own warnings (a corrupt record skipped or redone) printed as
  one line naming the file, without Python's source-line decoration.
"""

from __future__ import annotations

import argparse
import math
import os
import warnings
from pathlib import Path
from typing import Sequence

from theory.config import Config, ConfigError, read_toml

__all__ = ["OutputPathError", "read_toml_file", "load_cli_config", "check_output_file",
           "check_output_dir", "parse_numbers", "nonnegative_int", "config_fields_epilog",
           "plain_warnings"]


class OutputPathError(ValueError):
    """An output path that cannot be written (names the flag and the path)."""


read_toml_file = read_toml   # the one TOML reader (theory.config.read_toml): named path on any failure


def load_cli_config(path: str | Path | None, overrides: Sequence[str] = ()) -> Config:
    """The config of a command: the file at ``path`` (defaults where absent) plus overrides."""
    cfg = Config() if path is None else Config.from_dict(
        read_toml_file(path, "config file", ConfigError))
    return cfg.with_overrides(list(overrides)) if overrides else cfg


def _nearest_existing(path: Path) -> Path:
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return probe


def _check_parent(path: Path, flag: str) -> None:
    ancestor = _nearest_existing(path.parent if str(path.parent) else Path("."))
    if not ancestor.is_dir():
        raise OutputPathError(f"{flag} {str(path)!r}: {str(ancestor)!r} is a file, not a "
                              "directory")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise OutputPathError(f"{flag} {str(path)!r}: cannot write in {str(ancestor)!r} "
                              "(permission denied)")


def check_output_file(path: str | Path | None, flag: str, *,
                      suffixes: Sequence[str] | None = None) -> None:
    """Raise :class:`OutputPathError` unless a file can be written at ``path`` (None: no-op).
    ``suffixes``: the allowed file extensions (e.g. the image formats of ``--figure``)."""
    if path is None:
        return
    target = Path(path)
    if str(path).endswith(os.sep) or target.is_dir():
        raise OutputPathError(f"{flag} {str(path)!r} is a directory; give a file name")
    if target.exists() and not os.access(target, os.W_OK):
        raise OutputPathError(f"{flag} {str(path)!r} exists and is not writable")
    _check_parent(target, flag)
    if suffixes is not None:
        ext = target.suffix.lower().lstrip(".")
        if ext not in suffixes:
            raise OutputPathError(f"{flag} {str(path)!r}: unknown file type {ext or '(none)'!r};"
                                  f" one of {', '.join(sorted(suffixes))}")


def check_output_dir(path: str | Path, flag: str) -> None:
    """Raise :class:`OutputPathError` unless ``path`` is (or can be created as) a writable
    directory."""
    target = Path(path)
    if target.exists() and not target.is_dir():
        raise OutputPathError(f"{flag} {str(path)!r} is a file, not a directory")
    if target.is_dir():
        if not os.access(target, os.W_OK | os.X_OK):
            raise OutputPathError(f"{flag} {str(path)!r}: directory is not writable")
        return
    _check_parent(target, flag)


def parse_numbers(text: str, flag: str) -> list[float]:
    """``"0.5,1,2"`` -> ``[0.5, 1.0, 2.0]``; an empty item, a non-number, a non-finite number or a
    repeated value raises ``ValueError`` naming ``flag``."""
    values = []
    for item in text.split(","):
        try:
            value = float(item)
        except ValueError:
            raise ValueError(f"{flag}: {item.strip()!r} is not a number (give comma-separated "
                             "numbers, e.g. 0.5,1,2)") from None
        if not math.isfinite(value):
            raise ValueError(f"{flag}: {item.strip()!r} is not a finite number")
        if value in values:
            raise ValueError(f"{flag}: {item.strip()!r} is listed twice; list each value once")
        values.append(value)
    return values


def nonnegative_int(text: str) -> int:
    """argparse type: an integer >= 0 (argparse names the flag and exits with status 2)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} must be >= 0")
    return value


def config_fields_epilog() -> str:
    """The ``--help`` epilog: every config field (``--set section.field=value``) and its range."""
    from theory.config import field_docs

    docs = field_docs()
    width = max(len(k) for k in docs)
    lines = ["config fields (TOML sections, or --set section.field=value; MODEL.md §5):"]
    lines += [f"  {name:{width}s}  {text}" for name, text in docs.items()]
    return "\n".join(lines)


def plain_warnings(prog: str = "hdlora") -> None:
    """Print warnings of hdlora's own categories as ``prog: warning: message`` (stderr)."""
    from simulations.sweeps.store import CorruptRecordWarning

    default = getattr(warnings.formatwarning, "hdlora_default", warnings.formatwarning)

    def formatwarning(message, category, filename, lineno, line=None):
        if issubclass(category, CorruptRecordWarning):
            return f"{prog}: warning: {message}\n"
        return default(message, category, filename, lineno, line)

    formatwarning.hdlora_default = default      # calling again replaces, never nests
    warnings.formatwarning = formatwarning
