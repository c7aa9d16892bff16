"""The five config sections of MODEL.md §5 as frozen, validated dataclasses (theory.config).

``model``, ``pretrain``, ``finetune``, ``sim`` and ``theory``: each field with its default and
allowed range (:func:`theory.config_fields._spec`), plus the cross-field checks inside one
section. :data:`_SECTIONS` maps section names to classes. The public names are re-exported by
:mod:`theory.config`, the import path to use.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from theory.config_fields import ConfigError, _Section, _spec

__all__ = [
    "ModelConfig",
    "PretrainConfig",
    "FinetuneConfig",
    "SimConfig",
    "TheoryConfig",
    "SELECTION_RULES",
]


# Rules known to the config; theory/finetuning/selection.py implements them (used by the simulator
# and the theory alike). A new rule is added there and its name here (README "Adding a selection rule").
SELECTION_RULES = ("random", "smallest_score", "largest_score", "largest_sensitivity")


@dataclass(frozen=True)
class ModelConfig(_Section):
    """Attention layer (M1–M4)."""

    SECTION = "model"
    T: int = _spec(3, "int", low=2, doc="tokens per sequence")
    attention: str = _spec("softmax", "str", choices=("softmax", "linear"))
    beta: float = _spec(1.0, "float", low=0.0, low_open=True, doc="softmax inverse temperature")
    output: str = _spec("values", "str", choices=("values", "attention"))


@dataclass(frozen=True)
class PretrainConfig(_Section):
    """Pre-training (M5–M8): n = alpha d^2 sequences, teacher rank kappa0 d, student width kappa d."""

    SECTION = "pretrain"
    kappa0: float = _spec(1.0, "float", low=0.0, low_open=True)
    kappa: float = _spec(1.0, "float", low=0.0, low_open=True)
    alpha: float = _spec(0.1, "float", low=0.0, low_open=True)
    delta: float = _spec(0.5, "float", low=0.0)
    lam: float = _spec(0.01, "float", low=0.0)
    estimator: str = _spec("factorized", "str", choices=("factorized", "direct", "bayes"))


@dataclass(frozen=True)
class FinetuneConfig(_Section):
    """Rank-one LoRA fine-tuning (M9–M13): n' = alpha d labelled sequences.

    ``delta = None`` means "same as pretrain.delta"; ``pool_alpha = None`` means no pool
    (kept fraction rho = 1). ``recalibrate`` is a number c > 0, or "optimal" (c = M/Q) or "learned".
    """

    SECTION = "finetune"
    alpha: float = _spec(3.0, "float", low=0.0, low_open=True)
    delta: float | None = _spec(None, "float", low=0.0, optional=True)
    lam: float = _spec(0.05, "float", low=0.0)
    q0star: float = _spec(1.0, "float", low=0.0, low_open=True)
    lora: str = _spec("symmetric", "str", choices=("symmetric", "general"))
    recalibrate: float | str = 1.0
    reuse: bool = _spec(False, "bool")
    reuse_fraction: float = _spec(1.0, "float", low=0.0, high=1.0,
                                  doc="with reuse = true: fraction e of the n' sequences taken from "
                                      "the pre-training set (the first round(e n') ones), the rest "
                                      "fresh (M10)")
    reuse_noise: str = _spec("same", "str", choices=("same", "fresh"))
    selection: str = _spec("random", "str", choices=SELECTION_RULES)
    pool_alpha: float | None = _spec(None, "float", low=0.0, low_open=True, optional=True)

    def _check_section(self) -> None:
        rc = self.recalibrate
        if isinstance(rc, str):
            if rc not in ("optimal", "learned"):
                raise ConfigError(
                    f"finetune.recalibrate = {rc!r}: must be a number > 0, 'optimal' or 'learned'")
        elif isinstance(rc, bool) or not isinstance(rc, (int, float)) or not math.isfinite(rc) \
                or rc <= 0:
            raise ConfigError(
                f"finetune.recalibrate = {rc!r}: must be a number in (0, inf), 'optimal' or 'learned'")
        else:
            object.__setattr__(self, "recalibrate", float(rc))
        if self.pool_alpha is not None and self.alpha > self.pool_alpha:
            raise ConfigError(
                f"finetune.pool_alpha = {self.pool_alpha!r}: the kept fraction "
                f"rho = alpha/pool_alpha = {self.alpha / self.pool_alpha:.4g} must lie in (0, 1], "
                f"so pool_alpha must be >= finetune.alpha = {self.alpha!r}")
        if self.selection != "random" and self.pool_alpha is None:
            raise ConfigError(
                f"finetune.selection = {self.selection!r} needs finetune.pool_alpha "
                f"(a number >= finetune.alpha = {self.alpha!r})")
        if not self.reuse and self.reuse_fraction != 1.0:
            raise ConfigError(
                f"finetune.reuse_fraction = {self.reuse_fraction!r} needs finetune.reuse = true "
                f"(it is the fraction of reused sequences; with reuse = false none is reused)")
        if self.reuse and (self.pool_alpha is not None or self.selection != "random"):
            raise ConfigError(
                "finetune.reuse = true: reused sequences cannot be actively selected; "
                "set finetune.selection = 'random' and leave finetune.pool_alpha unset")


@dataclass(frozen=True)
class SimConfig(_Section):
    """Finite-size simulation: dimension, seeds, optimiser restarts and tolerances."""

    SECTION = "sim"
    d: int = _spec(150, "int", low=4, doc="dimension")
    seeds: int = _spec(4, "int", low=1, doc="number of seeds (seed, seed+1, ...)")
    seed: int = _spec(0, "int", low=0, doc="first seed")
    restarts: int = _spec(8, "int", low=1, doc="LoRA restarts (1 spectral + random)")
    n_test: int = _spec(0, "int", low=0, doc="test sequences; 0 = automatic (sem < 1%)")
    pretrain_gtol: float = _spec(1e-6, "float", low=0.0, low_open=True,
                                 doc="pre-training stationarity: |grad|/(1+|L|) per d^2")
    finetune_gtol: float = _spec(1e-8, "float", low=0.0, low_open=True,
                                 doc="fine-tuning stationarity: |grad L'/d|")
    max_steps: int = _spec(20000, "int", low=1, doc="optimiser iteration cap")
    backbone: str = _spec("trained", "str", choices=("trained", "equivalent"),
                          doc="fine-tuning backbone: pre-trained at d ('trained') or its Gaussian "
                              "equivalent a S0* + R with the theory's (Q, M) ('equivalent', "
                              "fresh/selected sequences only)")
    backbone_Q: float | None = _spec(None, "float", low=0.0, low_open=True, optional=True,
                                     doc="Q of the equivalent backbone (unset: pre-training theory)")
    backbone_M: float | None = _spec(None, "float", optional=True,
                                     doc="M of the equivalent backbone (unset: pre-training theory)")
    surrogate: str = _spec("none", "str", choices=("none", "residual"),
                           doc="fine-tuning labels: real ('none') or with the residual h(S0*) + xi' - cB "
                               "replaced by an independent GOE_T(Delta_eff(c)) ('residual', THEORY §10.8)")


@dataclass(frozen=True)
class TheoryConfig(_Section):
    """Asymptotic solvers: Monte-Carlo size, tolerances, damping, iteration caps."""

    SECTION = "theory"
    mc_samples: int = _spec(4000, "int", low=100, doc="frozen channel samples per repeat")
    mc_repeats: int = _spec(3, "int", low=1, doc="independent frozen samples for the MC error")
    seed: int = _spec(0, "int", low=0)
    tol: float = _spec(1e-7, "float", low=0.0, low_open=True, doc="fixed-point tolerance")
    damping: float = _spec(0.5, "float", low=0.0, high=1.0, high_open=True,
                           doc="weight of the old iterate")
    max_iter: int = _spec(2000, "int", low=1,
                          doc="cap on the map evaluations of each RS fixed-point solve: "
                              "pre-training (both phases together), each fine-tuning branch or "
                              "MC repeat (both phases and the Stein retry together; a second "
                              "start's branch search stops at min(30, max_iter), a repeat at "
                              "min(max_iter, max(100, 4x the first solve))), the Bayes "
                              "fine-tuning SE and the factorized prior; the scalar Bayes "
                              "pre-training SE (T22-T23) runs at least 5000")
    spectral_nodes: int = _spec(600, "int", low=20, doc="quadrature nodes per bulk (T15-T17)")
    draws: str = _spec("mc", "str", choices=("mc", "qmc"),
                       doc="frozen Gaussian draws of the LoRA fine-tuning channel (T28, symmetric "
                           "and general LoRA; not the pre-training nor the T34 reuse channel): "
                           "'mc' i.i.d. normal, 'qmc' scrambled Sobol points mapped to normals "
                           "(an independent Owen scrambling per MC repeat, so the error bar is "
                           "the spread of randomised replicates, as for 'mc'); measured: linear "
                           "sigma at N = 4096 6-9x smaller spread, softmax no gain "
                           "(benchmarks/README.md); keep N/2 a power of 2")


_SECTIONS: dict[str, type[_Section]] = {
    "model": ModelConfig,
    "pretrain": PretrainConfig,
    "finetune": FinetuneConfig,
    "sim": SimConfig,
    "theory": TheoryConfig,
}
