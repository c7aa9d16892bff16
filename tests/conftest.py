"""Shared test setup: float64 on (via ``import theory``), deterministic hypothesis profile."""

import os

import theory  # noqa: F401  (turns on jax_enable_x64)
from hypothesis import HealthCheck, settings

settings.register_profile(
    "hdlora", deadline=None, derandomize=True, max_examples=25,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "hdlora"))
