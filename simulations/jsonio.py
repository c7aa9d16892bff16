"""The one JSON writer of hdlora: strict JSON (no NaN/Infinity) written atomically with the umask.

Every command's ``--json`` output, every ``--out`` file, every sweep record and ``spec.json`` go
through :func:`dumps`: numpy scalars and arrays become plain numbers and lists, and a non-finite
float (NaN, ±inf: e.g. ``pretrain.objective`` of the Bayes estimator, an unknown error) becomes
``null``, so the output is valid JSON for every parser (``allow_nan=False`` proves it: a
non-finite number that slipped through raises instead of being written).

:func:`write_atomic` writes to a temporary file in the target's directory, fsyncs and renames
(``os.replace`` is atomic on POSIX): a reader sees the whole file or none, a killed writer leaves
no partial target. The file gets the mode ``0o666 & ~umask`` like any file a normal tool creates
(``tempfile.mkstemp`` alone would leave it 0600, unreadable to the rest of a shared cluster).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["jsonable", "dumps", "write_atomic", "file_mode"]

_UMASK_LOCK = threading.Lock()


def jsonable(x: Any):
    """``x`` with numpy values made plain and every non-finite float replaced by ``None``."""
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return jsonable(x.tolist())
    if isinstance(x, (np.floating, np.integer, np.bool_)):
        x = x.item()
    elif hasattr(x, "item") and getattr(x, "shape", None) == ():   # 0-d jax array
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def dumps(obj: Any, **kwargs) -> str:
    """Strict JSON text of ``obj`` (see the module docstring); ``kwargs`` go to ``json.dumps``."""
    return json.dumps(jsonable(obj), allow_nan=False, default=_fallback, **kwargs)


def _fallback(x):
    try:
        value = float(x)
    except (TypeError, ValueError):
        return str(x)
    return value if math.isfinite(value) else None


def file_mode() -> int:
    """The mode a new file gets under the process umask (``0o666 & ~umask``)."""
    with _UMASK_LOCK:   # os.umask can only be read by setting it
        umask = os.umask(0o022)
        os.umask(umask)
    return 0o666 & ~umask


def write_atomic(path: str | Path, text: str, *, fsync: bool = True) -> Path:
    """Write ``text`` to ``path`` atomically (temp file + fsync + rename), mode from the umask.
    The parent directory is created if missing; the temp file is removed on any failure."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.stem}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            if fsync:
                os.fsync(fh.fileno())
        os.chmod(tmp, file_mode())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target
