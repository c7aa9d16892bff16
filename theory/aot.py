"""Ahead-of-time exported channel programs: a process skips tracing and lowering (issue 13).

The persistent compilation cache (:mod:`theory.compile_cache`) stores compiled executables, but
a new process must still trace each jitted channel program and lower it to find the cache entry:
≈ 0.3–0.6 s per program, ≈ 2–3 s of a ≈ 6 s ``hdlora theory`` process. :func:`cached_jit` wraps
a function like ``jax.jit`` and, while an export directory is set (the entry points set it with
the compilation cache; library imports never do), keeps a serialized :mod:`jax.export` of each
specialisation on disk: a later process deserializes it (≈ 1 ms), and its compilation is a
persistent-cache hit.

A specialisation is keyed by the function's qualified name, the static arguments, the pytree
structure and the (shape, dtype, weak type) of every argument leaf, the jax and jaxlib versions,
the x64 flag, the backend, and a digest of the source of the whole ``theory`` package, so any
change of the code or of the environment makes a new export (never a stale program). Files are
written atomically; an unreadable file is exported again. Without a directory the wrapper is
``jax.jit`` itself (same numbers: an exported program is the same StableHLO).
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import os
import threading
from pathlib import Path

import jax

__all__ = ["cached_jit", "set_export_dir", "source_digest"]

_DIR: list[Path | None] = [None]


def set_export_dir(directory: str | os.PathLike | None) -> None:
    """Where exported programs are kept (None: off, plain ``jax.jit``)."""
    _DIR[0] = None if directory is None else Path(directory)


@functools.lru_cache(maxsize=None)
def source_digest() -> str:
    """sha256 of every ``.py`` file of the theory package (sorted by path)."""
    root = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for p in sorted(root.rglob("*.py")):
        h.update(str(p.relative_to(root)).encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def _leaf_signature(x) -> tuple:
    a = jax.api_util.shaped_abstractify(x)
    return (tuple(a.shape), str(a.dtype), bool(getattr(a, "weak_type", False)))


def _environment() -> str:
    import jaxlib

    return "|".join([jax.__version__, jaxlib.__version__, str(jax.config.jax_enable_x64),
                     jax.default_backend(), source_digest()])


def _committed(tree):
    """Every jax array of ``tree`` committed to the default device. ``jax.jit`` keys its cache
    on whether an argument is committed: a program first called with ``jnp.zeros`` (uncommitted)
    and then with its own output (committed) compiled — or fetched from the persistent cache —
    twice (≈ 0.2 s per channel program in a new process; seconds without the cache)."""
    device = jax.devices()[0]
    return jax.tree_util.tree_map(
        lambda x: jax.device_put(x, device) if isinstance(x, jax.Array) else x, tree)


def cached_jit(fun=None, *, static_argnames: tuple[str, ...] = (), tag: str = ""):
    """``jax.jit(fun, static_argnames=...)`` whose specialisations are exported to disk while an
    export directory is set (:func:`set_export_dir`; module docstring). ``tag`` names what a
    closure captures (e.g. ``repr((kind, beta, T))``), part of the key like the static
    arguments."""
    if fun is None:
        return functools.partial(cached_jit, static_argnames=static_argnames, tag=tag)
    jitted = jax.jit(fun, static_argnames=static_argnames)
    name = f"{fun.__module__}.{fun.__qualname__}{tag}"
    signature = inspect.signature(fun)
    loaded: dict = {}
    lock = threading.Lock()

    @functools.wraps(fun)
    def call(*args, **kwargs):
        args, kwargs = _committed((args, kwargs))
        directory = _DIR[0]
        if directory is None:
            return jitted(*args, **kwargs)
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        named = dict(bound.arguments)           # every argument by name, defaults included
        statics = {k: named.pop(k) for k in static_argnames}
        leaves, tree = jax.tree_util.tree_flatten(named)
        key = (tuple(sorted((k, repr(v)) for k, v in statics.items())), str(tree),
               tuple(_leaf_signature(x) for x in leaves))
        program = loaded.get((directory, key))
        if program is None:
            with lock:                          # threads (the MC repeats, a map's chains)
                program = loaded.get((directory, key))
                if program is None:
                    program = _load_or_export(directory, name, fun, statics, key, named)
                    loaded[(directory, key)] = program
        return program(**named)

    # compiled specialisations, as jax.jit's (tests check that new numbers compile nothing)
    call._cache_size = lambda: jitted._cache_size() + len(loaded)
    return call


def _load_or_export(directory: Path, name: str, fun, statics: dict, key, named: dict):
    from jax import export

    digest = hashlib.sha256(repr((name, key, _environment())).encode()).hexdigest()[:32]
    short = name.split("(")[0].rsplit(".", 1)[-1]
    stem = "".join(c if c.isalnum() or c in "_-" else "_" for c in short)
    path = directory / "export" / f"{stem}-{digest}.bin"
    exp = None
    if path.exists():
        try:
            exp = export.deserialize(bytearray(path.read_bytes()))
        except Exception:          # noqa: BLE001 - unreadable or truncated: export again
            exp = None
    if exp is None:
        exp = export.export(jax.jit(functools.partial(fun, **statics)))(**named)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}-{threading.get_ident()}.tmp")
            tmp.write_bytes(exp.serialize())
            os.replace(tmp, path)
        except OSError:            # an unwritable directory costs speed, never the run
            pass
    return jax.jit(exp.call)
