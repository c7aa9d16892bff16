"""The one typed, validated configuration shared by theory and simulation (MODEL.md §5, §6).

A :class:`Config` has five frozen sections whose field names are exactly those of MODEL.md §5:
``model``, ``pretrain``, ``finetune``, ``sim`` and ``theory``. It is loaded from TOML
(:func:`load_config`), overridden by ``section.field=value`` strings (:meth:`Config.with_overrides`,
the CLI's ``--set``), printed back as TOML (:meth:`Config.to_toml`) and hashed
(:meth:`Config.digest`). Every field is checked when the object is built; bad input raises
:class:`ConfigError` naming the field, the value and the allowed range. Nothing is clipped.

Derived quantities that both halves need (``n_pretrain``, ``n_finetune``, the kept fraction ``rho``,
the fine-tuning noise ``delta_prime``, ...) are properties, so that there is one definition of each.
"""

from __future__ import annotations

import hashlib
import json
import math
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping, Sequence

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


class ConfigError(ValueError):
    """Invalid configuration value. The message names ``section.field``, the value and the range."""


# Rules known to the config; theory/finetuning/selection.py implements them (used by the simulator
# and the theory alike). A new rule is added there and its name here (README "Adding a selection rule").
SELECTION_RULES = ("random", "smallest_score", "largest_score", "largest_sensitivity")


# --------------------------------------------------------------------------------------------
# field specifications
# --------------------------------------------------------------------------------------------
def _spec(default, kind, *, low=None, high=None, low_open=False, high_open=False,
          choices=None, optional=False, doc=""):
    """A dataclass field carrying its validation rule in ``metadata``."""
    meta = dict(kind=kind, low=low, high=high, low_open=low_open, high_open=high_open,
                choices=choices, optional=optional, doc=doc)
    return field(default=default, metadata=meta)


def _range_text(meta) -> str:
    if meta["choices"] is not None:
        return "one of " + ", ".join(repr(c) for c in meta["choices"])
    lo, hi = meta["low"], meta["high"]
    left = "(" if meta["low_open"] else "["
    right = ")" if meta["high_open"] else "]"
    lo_s = "-inf" if lo is None else repr(lo)
    hi_s = "inf" if hi is None else repr(hi)
    if lo is None:
        left = "("
    if hi is None:
        right = ")"
    return f"{meta['kind']} in {left}{lo_s}, {hi_s}{right}"


def _check_value(section: str, name: str, value: Any, meta: Mapping[str, Any]) -> Any:
    """Type-check and range-check one value; return it normalised (int -> float for floats)."""
    where = f"{section}.{name}"
    kind = meta["kind"]
    if value is None:
        if meta["optional"]:
            return None
        raise ConfigError(f"{where} = None: a value is required ({_range_text(meta)})")
    if kind == "bool":
        if not isinstance(value, bool):
            raise ConfigError(f"{where} = {value!r}: must be a boolean (true or false)")
        return value
    if kind == "str":
        if not isinstance(value, str):
            raise ConfigError(f"{where} = {value!r}: must be a string, {_range_text(meta)}")
        if meta["choices"] is not None and value not in meta["choices"]:
            raise ConfigError(f"{where} = {value!r}: must be {_range_text(meta)}")
        return value
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            else:
                raise ConfigError(f"{where} = {value!r}: must be an integer ({_range_text(meta)})")
    elif kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where} = {value!r}: must be a number ({_range_text(meta)})")
        value = float(value)
        if not math.isfinite(value):
            raise ConfigError(f"{where} = {value!r}: must be finite ({_range_text(meta)})")
    else:  # pragma: no cover - programming error
        raise TypeError(kind)
    lo, hi = meta["low"], meta["high"]
    if lo is not None and (value < lo or (meta["low_open"] and value == lo)):
        raise ConfigError(f"{where} = {value!r}: out of range, must be {_range_text(meta)}")
    if hi is not None and (value > hi or (meta["high_open"] and value == hi)):
        raise ConfigError(f"{where} = {value!r}: out of range, must be {_range_text(meta)}")
    return value


class _Section:
    """Mixin: validate every field on construction (frozen dataclasses)."""

    SECTION = ""

    def __post_init__(self):
        for f in fields(self):
            if "kind" not in f.metadata:
                continue
            checked = _check_value(self.SECTION, f.name, getattr(self, f.name), f.metadata)
            object.__setattr__(self, f.name, checked)
        self._check_section()

    def _check_section(self) -> None:
        """Cross-field checks inside one section (overridden where needed)."""

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]):
        if not isinstance(data, Mapping):
            raise ConfigError(f"[{cls.SECTION}] must be a table, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"{cls.SECTION}.{unknown[0]}: unknown field; allowed fields of [{cls.SECTION}] are "
                + ", ".join(sorted(known)))
        return cls(**dict(data))

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


# --------------------------------------------------------------------------------------------
# sections
# --------------------------------------------------------------------------------------------
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


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _split_key(dotted: str) -> tuple[str, str]:
    parts = dotted.split(".")
    if len(parts) != 2 or parts[0] not in _SECTIONS:
        raise ConfigError(f"{dotted!r}: expected section.field with section in "
                          + ", ".join(_SECTIONS))
    section, name = parts
    allowed = {f.name for f in fields(_SECTIONS[section])}
    if name not in allowed:
        raise ConfigError(f"{dotted}: unknown field; allowed fields of [{section}] are "
                          + ", ".join(sorted(allowed)))
    return section, name


def parse_assignment(text: str) -> tuple[tuple[str, str], Any]:
    """Parse ``section.field=value``: the value is read as a TOML value; a bare word that is not
    valid TOML (``optimal``) is taken as a string; ``none``/``null`` unsets an optional field."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected section.field=value")
    key, raw = text.split("=", 1)
    key = _split_key(key.strip())
    raw = raw.strip()
    if raw.lower() in ("none", "null"):
        return key, None
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key, value


def read_toml(path: str | Path, what: str, error: type[Exception]) -> dict:
    """Parse the TOML file at ``path``; any failure raises ``error`` naming ``what`` and path."""
    path = Path(path)
    where = f"{what} {str(path)!r}"
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise error(f"{where} does not exist") from None
    except IsADirectoryError:
        raise error(f"{where} is a directory, not a file") from None
    except PermissionError:
        raise error(f"{where} cannot be read (permission denied)") from None
    except OSError as err:
        raise error(f"{where} cannot be read: {err.strerror or err}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise error(f"{where} is not UTF-8 text (byte {err.start}: {err.reason}); "
                    "TOML files must be UTF-8") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise error(f"{where} is not valid TOML: {err}") from None


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

