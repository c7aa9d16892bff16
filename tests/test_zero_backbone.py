"""A zero backbone (Q = M = 0: a pre-training so strongly regularised that Ŝ = 0) is a legitimate
point of the scarce-data study (issue 15): fine-tuning then learns the whole target from scratch.
The fine-tuning theory divided by Q there (ZeroDivisionError in ``lora_channel``, NaN in the
softmax baseline); :func:`theory.finetuning.noise.backbone_projection` takes the limit
a = M/Q → 0, s_R² = Q0 − M²/Q → Q0 once for every channel."""

from __future__ import annotations

import dataclasses
import math

import jax.numpy as jnp
import pytest

from theory.config import Config
from theory.finetuning import lora, noise
from theory.states import PretrainState


def test_projection_limit_of_a_vanishing_backbone():
    assert noise.backbone_projection(0.0, 0.0, 1.3) == (0.0, 1.3)
    a, s2 = noise.backbone_projection(2.0, 1.0, 1.3)
    assert a == 0.5 and s2 == pytest.approx(0.8)
    # traced (jitted code): same values, no NaN from 0/0
    at, st = noise.backbone_projection(jnp.asarray(0.0), jnp.asarray(0.0), jnp.asarray(1.3))
    assert float(at) == 0.0 and float(st) == pytest.approx(1.3)
    # continuity: Q → 0 with M = r√(Q Q0) (|r| ≤ 1) gives a → 0 only if M/Q → 0, i.e. for M = 0;
    # the closed forms are continuous along M = 0
    for Q in (1e-6, 1e-9):
        assert noise.backbone_projection(Q, 0.0, 1.3) == (0.0, 1.3)


def test_linear_finetuning_on_a_zero_backbone_equals_the_vanishing_backbone_limit():
    """At Q = M = 0 the fine-tuning solve runs and equals the solve at a backbone of Q = 1e-10
    (M = 0): the two channels differ by √Q·B = O(1e-5) per entry."""
    cfg = Config.from_dict({"model": {"attention": "linear"}, "pretrain": {"lam": 1000.0},
                            "finetune": {"lam": 0.05, "alpha": 1.5},
                            "theory": {"mc_samples": 200, "mc_repeats": 1, "tol": 1e-6}})
    zero = PretrainState(Q=0.0, M=0.0, Q0=1.0, V=0.0)
    tiny = dataclasses.replace(zero, Q=1e-10)
    a = lora.solve(cfg, zero)
    b = lora.solve(cfg, tiny)
    for key in ("q", "m", "overlap", "test_error"):
        assert math.isfinite(a.metrics[key])
        assert a.metrics[key] == pytest.approx(b.metrics[key], rel=1e-3, abs=1e-4), key
    assert a.delta_eff == pytest.approx(cfg.delta_prime / 2 + 1.0)   # Δ'/2 + Q0 (T25, c = 1)
