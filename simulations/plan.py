"""What the jitted simulator sees of a :class:`~theory.config.Config` (issue 13).

A config is split in two:

* :class:`Plan` — the *static* part: every field that fixes an array shape or selects a code path
  (d, T, P0, P, n, n', n_pool, the number of reused sequences, restarts; attention, output,
  estimator, LoRA kind, recalibration kind, reuse / selection / surrogate / backbone kinds). It is
  hashable and is the only ``static_argnames`` argument of the jitted functions, so configs that
  share a plan share one compiled program.
* :func:`numbers` — the *numeric* part as a dict of float64 / int scalars passed as traced
  arguments: λ, λ′, Δ, Δ′, β, q0*, a numeric c, the optimiser tolerances and iteration cap, and the
  (Q, M) targets of the Gaussian-equivalent backbone. Changing any of them does not recompile.

``pretrain.alpha``, ``finetune.alpha``, ``pool_alpha``, κ0, κ and ``reuse_fraction`` enter only
through the integer sizes they fix (n, n', n_pool, P0, P, round(e n')), which are in the plan.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax.numpy as jnp

from theory.config import Config

__all__ = ["Plan", "plan_of", "numbers", "split"]


@dataclass(frozen=True)
class Plan:
    """Static (shape- and branch-fixing) part of a config; see the module docstring."""

    d: int
    T: int
    P0: int                 # teacher rank round(kappa0 d) (M5)
    P: int                  # student width round(kappa d) (M7, factorized)
    n: int                  # pre-training sequences round(alpha d^2)
    n1: int                 # fine-tuning sequences round(alpha' d)
    n_pool: int             # selection pool (M13); n1 without a pool
    n_reused: int           # round(e n') reused pre-training sequences (M10); 0 without reuse
    restarts: int
    attention: str
    output: str
    estimator: str
    lora: str
    recalibrate: str        # "number", "optimal" or "learned"
    reuse: bool
    reuse_noise: str
    pool: bool              # a selection pool is drawn (finetune.pool_alpha set)
    selection: str
    surrogate: str
    backbone: str           # "trained" or "equivalent"

    @property
    def linear(self) -> bool:
        return self.attention == "linear"


def plan_of(cfg: Config) -> Plan:
    """The static part of ``cfg``."""
    m, pt, ft, sim = cfg.model, cfg.pretrain, cfg.finetune, cfg.sim
    rc = ft.recalibrate
    return Plan(
        d=sim.d, T=m.T, P0=cfg.teacher_rank, P=cfg.student_width, n=cfg.n_pretrain,
        n1=cfg.n_finetune, n_pool=cfg.n_pool, n_reused=cfg.n_reused, restarts=sim.restarts,
        attention=m.attention, output=m.output, estimator=pt.estimator, lora=ft.lora,
        recalibrate=rc if isinstance(rc, str) else "number", reuse=ft.reuse,
        reuse_noise=ft.reuse_noise, pool=ft.pool_alpha is not None, selection=ft.selection,
        surrogate=sim.surrogate, backbone=sim.backbone)


def numbers(cfg: Config, *, backbone_Q: float = float("nan"), backbone_M: float = float("nan"),
            backbone_Q0: float = float("nan")) -> dict:
    """The traced numeric part of ``cfg`` (float64 scalars; ``max_steps`` int).
    ``backbone_Q``/``backbone_M``/``backbone_Q0`` define the equivalent backbone (NaN otherwise;
    see :func:`simulations.backbone.equivalent_impl`)."""
    pt, ft, sim = cfg.pretrain, cfg.finetune, cfg.sim
    f = lambda x: jnp.asarray(float(x), dtype=jnp.float64)  # noqa: E731
    rc = ft.recalibrate
    return {
        "beta": f(cfg.model.beta), "delta": f(pt.delta), "delta_prime": f(cfg.delta_prime),
        "lam_pre": f(pt.lam), "lam_ft": f(ft.lam), "q0star": f(ft.q0star),
        "c_fixed": f(rc if not isinstance(rc, str) else 1.0),
        "pretrain_gtol": f(sim.pretrain_gtol), "finetune_gtol": f(sim.finetune_gtol),
        "max_steps": jnp.asarray(int(sim.max_steps), dtype=jnp.int32),
        "backbone_Q": f(backbone_Q), "backbone_M": f(backbone_M), "backbone_Q0": f(backbone_Q0),
    }


def split(cfg: Config, **targets) -> tuple[Plan, dict]:
    """``(plan_of(cfg), numbers(cfg, **targets))``."""
    return plan_of(cfg), numbers(cfg, **targets)
