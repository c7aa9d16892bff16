"""Exported channel programs (theory.aot): the same numbers as jax.jit, one file per
specialisation, reloaded by a later process, re-exported when unreadable."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import theory  # noqa: F401  (x64)
from theory import aot


def _f(x, scale, *, power: int = 2, twice: bool = False):
    y = scale * jnp.sum(x ** power, axis=-1)
    return {"y": 2 * y if twice else y, "n": x.shape[0]}


@pytest.fixture
def export_dir(tmp_path):
    aot.set_export_dir(tmp_path)
    yield tmp_path
    aot.set_export_dir(None)


def test_same_numbers_as_jit_and_reloaded(export_dir):
    x = jnp.asarray(np.random.default_rng(0).normal(size=(5, 3)))
    plain = jax.jit(_f, static_argnames=("power", "twice"))(x, 1.5, power=3)
    f = aot.cached_jit(_f, static_argnames=("power", "twice"))
    out = f(x, 1.5, power=3)
    files = list((export_dir / "export").glob("*.bin"))
    assert len(files) == 1
    np.testing.assert_array_equal(out["y"], plain["y"])
    # a new wrapper (as in a new process) loads the file: same numbers, no new file
    g = aot.cached_jit(_f, static_argnames=("power", "twice"))
    np.testing.assert_array_equal(g(x, 1.5, power=3)["y"], plain["y"])
    assert len(list((export_dir / "export").glob("*.bin"))) == 1
    # another static value, shape or weak type is another specialisation
    f(x, 1.5, power=3, twice=True)
    f(x[:4], 1.5, power=3)
    f(x, np.float64(1.5), power=3)
    assert len(list((export_dir / "export").glob("*.bin"))) == 4
    # the same call with the default passed explicitly or positionally is the same program
    assert f(x, 1.5, power=2)["y"].shape == (5,) and f(x, 1.5)["y"].shape == (5,)
    assert len(list((export_dir / "export").glob("*.bin"))) == 5


def test_unreadable_export_is_redone(export_dir):
    x = jnp.ones((4, 2))
    aot.cached_jit(_f, static_argnames=("power", "twice"))(x, 2.0)
    (path,) = (export_dir / "export").glob("*.bin")
    path.write_bytes(b"truncated")
    out = aot.cached_jit(_f, static_argnames=("power", "twice"))(x, 2.0)
    assert float(out["y"][0]) == 4.0 and path.read_bytes() != b"truncated"


def test_tag_and_source_are_part_of_the_key(export_dir):
    x = jnp.ones((3, 2))
    aot.cached_jit(_f, static_argnames=("power", "twice"), tag="a")(x, 1.0)
    aot.cached_jit(_f, static_argnames=("power", "twice"), tag="b")(x, 1.0)
    assert len(list((export_dir / "export").glob("*.bin"))) == 2
    assert len(aot.source_digest()) == 64


def test_off_is_plain_jit():
    aot.set_export_dir(None)
    f = aot.cached_jit(_f, static_argnames=("power", "twice"))
    assert float(f(jnp.ones((2, 2)), 1.0)["y"][0]) == 2.0


def test_uncommitted_and_committed_arguments_share_one_program(export_dir):
    """``jnp.zeros_like`` is uncommitted, a program's output committed: ``jax.jit`` keys its
    cache on that, so an exported channel program fed its own output compiled a second time
    (≈ 0.2 s per program in a new process; aot._committed). No compilation after the first call."""
    import logging

    step = aot.cached_jit(lambda x, a: x * a + 1.0)
    messages = []

    class Record(logging.Handler):
        def emit(self, record):
            messages.append(record.getMessage())

    logger = logging.getLogger("jax")
    handler, level = Record(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        out = step(jnp.zeros_like(jax.random.normal(jax.random.PRNGKey(0), (5,))), 2.0)
        messages.clear()
        with jax.log_compiles(True):
            step(step(out, 2.0), 3.0)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert not [m for m in messages if m.startswith("Compiling")]
