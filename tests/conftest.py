"""Shared test setup: float64 on (via ``import theory``), deterministic hypothesis profile."""

import os

# One BLAS thread per process: the 2-core CI machine is otherwise oversubscribed (a 400x400 eigh
# measured 2.3 s multithreaded under load vs 0.02 s single-threaded). Must precede numpy's import.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import theory  # noqa: F401  (turns on jax_enable_x64)
import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "hdlora", deadline=None, derandomize=True, max_examples=25,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "hdlora"))


@pytest.fixture(scope="module")
def release_compiled_programs():
    """Drop jax's in-memory compiled programs after a module (``pytestmark =
    pytest.mark.usefixtures("release_compiled_programs")``). In one long pytest process the default
    run crashed (SIGSEGV/SIGABRT inside XLA's executable (de)serialisation, in
    tests/test_theory_prox.py) once the 1RSB modules' extra programs were added; with them released
    after those modules it does not (2026-12-07; the cause inside jaxlib is not isolated)."""
    yield
    import jax
    jax.clear_caches()
