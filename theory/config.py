"""The one typed, validated configuration shared by theory and simulation (MODEL.md §5, §6).

A :class:`Config` has five frozen sections whose field names are exactly those of MODEL.md §5:
``model``, ``pretrain``, ``finetune``, ``sim`` and ``theory``. It is loaded from TOML
(:func:`load_config`), overridden by ``section.field=value`` strings (:meth:`Config.with_overrides`,
the CLI's ``--set``), printed back as TOML (:meth:`Config.to_toml`) and hashed
(:meth:`Config.digest`). Every field is checked when the object is built; bad input raises
:class:`ConfigError` naming the field, the value and the allowed range. Nothing is clipped.

Derived quantities that both halves need (``n_pretrain``, ``n_finetune``, the kept fraction ``rho``,
the fine-tuning noise ``delta_prime``, ...) are properties, so that there is one definition of each.

This module's one job is the whole :class:`Config` (cross-section checks, derived quantities,
overrides, TOML output, digest), :func:`load_config` and :func:`field_docs`. The pieces live in
theory/config_fields.py (field rules, :class:`ConfigError`), theory/config_sections.py (the five
sections, :data:`SELECTION_RULES`) and theory/config_text.py (TOML reading, ``--set`` parsing);
their public names are re-exported here, so ``from theory.config import ...`` is the import path.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping, Sequence

from theory.config_fields import ConfigError, _range_text
from theory.config_sections import SELECTION_RULES, FinetuneConfig, ModelConfig, PretrainConfig, \
    SimConfig, TheoryConfig, _SECTIONS
from theory.config_text import _split_key, _toml_value, parse_assignment, read_toml

__all__ = [
    "ConfigError",
    "ModelConfig",
    "PretrainConfig",
    "FinetuneConfig",
    "SimConfig",
    "TheoryConfig",
    "Config",
    "load_config",
    "SELECTION_RULES",
]


# --------------------------------------------------------------------------------------------
# the whole config
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Config:
    """The full, validated configuration. Build with ``Config()``, :func:`load_config` or
    :meth:`Config.from_dict`; derive variants with :meth:`with_overrides` / :meth:`replace`."""

    model: ModelConfig = field(default_factory=ModelConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    sim: SimConfig = field(default_factory=SimConfig)
    theory: TheoryConfig = field(default_factory=TheoryConfig)

    def __post_init__(self):
        for name, cls in _SECTIONS.items():
            if not isinstance(getattr(self, name), cls):
                raise ConfigError(f"[{name}] must be a {cls.__name__}")
        ft, pt = self.finetune, self.pretrain
        if self.sim.backbone == "equivalent" and ft.reuse:
            raise ConfigError(
                "sim.backbone = 'equivalent' with finetune.reuse = true: the Gaussian-equivalent "
                "backbone lacks the correlation of a trained backbone with its own training "
                "sequences, which is what reuse measures (T34, T35); use sim.backbone = 'trained'")
        if self.sim.backbone == "trained" and (self.sim.backbone_Q is not None
                                               or self.sim.backbone_M is not None):
            raise ConfigError(
                "sim.backbone_Q / sim.backbone_M set with sim.backbone = 'trained': they define "
                "the equivalent backbone only; set sim.backbone = 'equivalent' or unset them")
        if (self.sim.backbone_Q is None) != (self.sim.backbone_M is None):
            raise ConfigError("sim.backbone_Q and sim.backbone_M: give both or neither")
        if ft.reuse and ft.reuse_noise == "same" and ft.delta is not None and ft.delta != pt.delta:
            raise ConfigError(
                f"finetune.reuse_noise = 'same' reuses the pre-training noise realisation, so "
                f"finetune.delta = {ft.delta!r} must equal pretrain.delta = {pt.delta!r} "
                f"(or set reuse_noise = 'fresh')")
        if ft.reuse and self.n_reused > self.n_pretrain:
            raise ConfigError(
                f"finetune.reuse = true needs e n' <= n: {self.n_reused} reused sequences "
                f"(finetune.reuse_fraction * finetune.alpha * d) exceed pretrain.alpha * d^2 = "
                f"{self.n_pretrain} at sim.d = {self.sim.d}; finetune.alpha must be <= "
                f"{pt.alpha * self.sim.d / max(ft.reuse_fraction, 1e-300)!r}")
        if self.n_pretrain < 1:
            raise ConfigError(
                f"pretrain.alpha = {pt.alpha!r}: n = alpha d^2 = {pt.alpha * self.sim.d ** 2:.3g} "
                f"< 1 at sim.d = {self.sim.d}; must be >= {1 / self.sim.d ** 2:.3g}")
        if self.n_finetune < 1:
            raise ConfigError(
                f"finetune.alpha = {ft.alpha!r}: n' = alpha d = {ft.alpha * self.sim.d:.3g} < 1 at "
                f"sim.d = {self.sim.d}; must be >= {1 / self.sim.d:.3g}")

    # ---- derived quantities (one definition each) ----------------------------------------
    @property
    def n_pretrain(self) -> int:
        """n = round(alpha d^2) pre-training sequences (M7)."""
        return int(round(self.pretrain.alpha * self.sim.d ** 2))

    @property
    def n_finetune(self) -> int:
        """n' = round(alpha' d) labelled fine-tuning sequences (M9)."""
        return int(round(self.finetune.alpha * self.sim.d))

    @property
    def reuse_e(self) -> float:
        """Fraction e of reused fine-tuning sequences (M10): finetune.reuse_fraction under reuse, else 0."""
        return self.finetune.reuse_fraction if self.finetune.reuse else 0.0

    @property
    def n_reused(self) -> int:
        """round(e n') reused sequences: the first ones of the fine-tuning set (M10)."""
        return int(round(self.reuse_e * self.n_finetune))

    @property
    def n_pool(self) -> int:
        """Pool size for active selection, round(pool_alpha d) (M13); n' when there is no pool."""
        if self.finetune.pool_alpha is None:
            return self.n_finetune
        return max(int(round(self.finetune.pool_alpha * self.sim.d)), self.n_finetune)

    @property
    def rho(self) -> float:
        """Kept fraction alpha'/pool_alpha of the selection pool (M13); 1 without a pool."""
        if self.finetune.pool_alpha is None:
            return 1.0
        return self.finetune.alpha / self.finetune.pool_alpha

    @property
    def delta_prime(self) -> float:
        """Fine-tuning score-noise level Delta' (finetune.delta, default pretrain.delta)."""
        return self.pretrain.delta if self.finetune.delta is None else self.finetune.delta

    @property
    def teacher_rank(self) -> int:
        """P0 = round(kappa0 d) (M5)."""
        return max(1, int(round(self.pretrain.kappa0 * self.sim.d)))

    @property
    def student_width(self) -> int:
        """P = round(kappa d) (M7, factorized)."""
        return max(1, int(round(self.pretrain.kappa * self.sim.d)))

    # ---- construction -------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Config":
        if not isinstance(data, Mapping):
            raise ConfigError("config must be a table of sections")
        unknown = sorted(set(data) - set(_SECTIONS))
        if unknown:
            raise ConfigError(f"[{unknown[0]}]: unknown section; allowed sections are "
                              + ", ".join(_SECTIONS))
        return cls(**{name: sec.from_dict(data.get(name, {})) for name, sec in _SECTIONS.items()})

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return {name: getattr(self, name).to_dict() for name in _SECTIONS}

    def replace(self, **sections: Mapping[str, Any]) -> "Config":
        """New config with some fields changed: ``cfg.replace(sim={"d": 200})``."""
        data = self.to_dict()
        for name, changes in sections.items():
            if name not in _SECTIONS:
                raise ConfigError(f"[{name}]: unknown section; allowed sections are "
                                  + ", ".join(_SECTIONS))
            data[name] = {**data[name], **changes}
        return Config.from_dict(data)

    def with_overrides(self, assignments: Sequence[str]) -> "Config":
        """Apply ``section.field=value`` strings (values parsed as TOML, bare words as strings)."""
        data = self.to_dict()
        for text in assignments:
            key, value = parse_assignment(text)
            section, name = key
            data[section][name] = value
        return Config.from_dict(data)

    def get(self, dotted: str) -> Any:
        """Value of ``section.field``."""
        section, name = _split_key(dotted)
        return getattr(getattr(self, section), name)

    # ---- output -------------------------------------------------------------------------
    def to_toml(self) -> str:
        lines = []
        for name, values in self.to_dict().items():
            lines.append(f"[{name}]")
            for key, value in values.items():
                if value is None:
                    lines.append(f"# {key} = (unset)")
                else:
                    lines.append(f"{key} = {_toml_value(value)}")
            lines.append("")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.to_toml()

    def digest(self, *, sections: Sequence[str] | None = None) -> str:
        """Stable sha256 (hex, 16 chars) of the config, or of some of its sections."""
        data = self.to_dict()
        for (section, name), neutral in DIGEST_NEUTRAL_DEFAULTS.items():
            if data.get(section, {}).get(name) == neutral:
                del data[section][name]
        if sections is not None:
            data = {name: data[name] for name in sections}
        blob = json.dumps(data, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


# Fields added after results stores existed, omitted from :meth:`Config.digest` while they hold
# the value that reproduces the older behaviour, so that every record keyed by an older digest
# stays valid (a store's records are keyed by the digest). Any other value enters the digest.
DIGEST_NEUTRAL_DEFAULTS: dict[tuple[str, str], Any] = {
    ("theory", "draws"): "mc",
}


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> Config:
    """Read a TOML file (missing sections/fields take MODEL.md §6 defaults) and apply overrides."""
    if path is None:
        cfg = Config()
    else:
        cfg = Config.from_dict(read_toml(path, "config file", ConfigError))
    return cfg.with_overrides(overrides) if overrides else cfg


def field_docs() -> dict[str, str]:
    """``section.field`` -> allowed range text, for ``--help`` and the README."""
    out = {}
    for name, cls in _SECTIONS.items():
        for f in fields(cls):
            if "kind" in f.metadata:
                out[f"{name}.{f.name}"] = _range_text(f.metadata)
            else:
                out[f"{name}.{f.name}"] = "number > 0, 'optimal' or 'learned'"
    return out

