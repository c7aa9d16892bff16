"""Shared test setup: float64 on (via ``import theory``), deterministic hypothesis profile."""

import os

# One BLAS thread per process: the 2-core CI machine is otherwise oversubscribed (a 400x400 eigh
# measured 2.3 s multithreaded under load vs 0.02 s single-threaded). Must precede numpy's import.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import theory  # noqa: F401  (turns on jax_enable_x64)
from hypothesis import HealthCheck, settings

settings.register_profile(
    "hdlora", deadline=None, derandomize=True, max_examples=25,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "hdlora"))
