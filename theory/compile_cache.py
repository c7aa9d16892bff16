"""Persistent XLA compilation cache for the command-line entry points and sweep workers.

The jitted solvers take 5–25 s to compile (pre-training channel, LoRA prox), longer than a
quick theory point takes to run; every Dask worker process and every ``hdlora`` call would pay
it again. JAX's persistent cache stores compiled executables on disk, keyed by the program and
the backend, so a second process loads them instead. Directory: ``$HDLORA_JAX_CACHE``, default
``~/.cache/hdlora/jax``; ``HDLORA_JAX_CACHE=off`` disables it. Library imports never turn it on
(no global side effects on import); entry points call :func:`enable_compilation_cache`, which
also keeps the exported channel programs (:mod:`theory.aot`: no tracing in a later process).
"""

from __future__ import annotations

import os
from pathlib import Path

import jax

from .aot import set_export_dir

__all__ = ["enable_compilation_cache", "CACHE_ENV"]

CACHE_ENV = "HDLORA_JAX_CACHE"
MIN_COMPILE_SECONDS = 0.0     # cache every program: many small ones add up to seconds (a hit costs less than compiling: 5.3 s against 6.5-7.1 s per `hdlora theory` with 0.1)


def enable_compilation_cache(directory: str | os.PathLike | None = None) -> str | None:
    """Turn on the persistent compilation cache; returns its directory (None when disabled).
    Idempotent; an unwritable directory disables the cache rather than failing the run."""
    setting = str(directory) if directory is not None else os.environ.get(CACHE_ENV, "")
    if setting.lower() in ("off", "0", "none", "false"):
        return None
    path = Path(setting) if setting else Path.home() / ".cache" / "hdlora" / "jax"
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECONDS)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    set_export_dir(path)          # exported channel programs beside it (theory.aot)
    return str(path)
