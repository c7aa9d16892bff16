"""Provenance recorded beside every number: package version, git commit, library versions."""

from __future__ import annotations

import functools
import platform
import subprocess
from importlib import metadata
from pathlib import Path

__all__ = ["provenance"]


@functools.lru_cache(maxsize=1)
def _git_commit() -> str:
    """The checkout's commit when first asked (once per process: the code a process runs is the
    code it imported, so a later commit or edit of the checkout does not describe its numbers)."""
    root = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                             text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return out + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def provenance() -> dict:
    """``{"version", "git_commit", "jax_backend", "versions": {...}, "python", "machine"}``."""
    import jax

    return {
        "version": _version("hdlora"),
        "git_commit": _git_commit(),
        "jax_backend": jax.default_backend(),
        "versions": {name: _version(name) for name in ("jax", "jaxlib", "numpy", "scipy", "optax")},
        "python": platform.python_version(),
        "machine": platform.machine(),
    }
