"""Memory and time of a simulation, estimated before it starts (issue 15, issue 16 item 5).

:func:`estimate` gives the peak working set of each stage from the sizes of MODEL.md (n = αd²,
n′ = α′d, n_pool, P0 = κ0 d, P = κd, T) and a rough pre-training time; :func:`check` refuses a
setting whose peak exceeds :func:`memory_limit` with :class:`SimulationTooLarge` (a
:class:`SimulationNotImplemented`, so the CLI exits 2 with the message and a sweep records it),
naming ``sim.d``, the stage and the alternatives, and warns (:class:`SimulationCostWarning`) when
the pre-training is estimated to take more than :data:`SLOW_SECONDS`.

The estimates are deliberately simple counts of the float64 arrays alive at once (each stage's
data, its optimiser state and autodiff residuals, with a safety factor), not a profile:

* trained pre-training (factorized): X (n·T·d), X W and its gradient and line-search copies
  (3·n·T·P), the teacher scores X W0 (n·T·P0), O(n·T²) per-sample arrays, L-BFGS memory 20·d·P;
  direct: X S in place of X W and d² parameters;
* fine-tuning: the sequences it scores (the pool under selection) with X Ŝ and X W0 (3·n·T·d),
  the d×d backbone, the spectral-start Hessian and the equivalent draw (4·d²), W0 (d·P0), plus
  the kept pre-training data under reuse;
* equivalent backbone: S0*, the GOE draw and Ŝ (3·d²);
* test: one batch (:func:`simulations.metrics.test_batch_size`, bounded to a few hundred MB).

Time: pre-training costs O(n·T·d·P) = O(αd⁴) per objective evaluation; :data:`SECONDS_PER_FLOP`
is calibrated on the 2-core development machine (d = 400, α = 0.1, factorized: 20–40 s per seed,
issue 15), so the number is an order of magnitude, not a promise.
"""

from __future__ import annotations

import os
import warnings

from theory.config import Config

from . import metrics

__all__ = ["SimulationNotImplemented", "SimulationTooLarge", "SimulationCostWarning",
           "estimate", "check", "memory_limit", "SLOW_SECONDS"]

SECONDS_PER_FLOP = 4e-9      # wall seconds per n·T·d·P unit of pre-training (2 CPU cores)
SLOW_SECONDS = 600.0         # warn above this estimated pre-training time
_SAFETY = 1.5                # multiplier on the counted arrays (temporaries, XLA buffers)
_GB = 1e9


class SimulationNotImplemented(NotImplementedError):
    """A config the finite-d simulator does not implement (the message says which field)."""


class SimulationTooLarge(SimulationNotImplemented):
    """A config whose estimated memory exceeds what this machine allows (message: sim.d, the
    estimate, the limit and the alternatives)."""


class SimulationCostWarning(UserWarning):
    """A config that fits in memory but is estimated to run for a long time."""


def memory_limit() -> float:
    """Bytes a simulation may use: ``$HDLORA_SIM_MEMORY_GB`` if set, else 80% of physical memory."""
    env = os.environ.get("HDLORA_SIM_MEMORY_GB")
    if env:
        try:
            return float(env) * _GB
        except ValueError:
            raise ValueError(f"HDLORA_SIM_MEMORY_GB = {env!r}: must be a number of GB") from None
    try:
        return 0.8 * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return 8 * _GB


def estimate(cfg: Config) -> dict:
    """Estimated peak bytes of each stage and the pre-training seconds (floats; any d)."""
    d, T = float(cfg.sim.d), float(cfg.model.T)
    n, n1, n_pool = float(cfg.n_pretrain), float(cfg.n_finetune), float(cfg.n_pool)
    P0, P = float(cfg.teacher_rank), float(cfg.student_width)
    trained = cfg.sim.backbone == "trained"
    if cfg.pretrain.estimator == "factorized":
        pre = n * T * (d + 3 * P + P0 + 12 * T) + 20 * d * P + d * P0 + d * d
        flops = n * T * d * P
    else:
        pre = n * T * (4 * d + P0 + 12 * T) + 22 * d * d + d * P0
        flops = n * T * d * d
    seqs = max(n1, n_pool)
    fine = seqs * T * (3 * d + P0 + 12 * T) + 4 * d * d + d * P0 + cfg.sim.restarts * 3 * d
    if trained and cfg.n_reused > 0:
        fine += n * T * (d + 2 * T)
    batch = metrics.test_batch_size(cfg.sim.d, cfg.model.T, cfg.teacher_rank)
    test = batch * T * (3 * d + P0 + 40 * T) * 4 + 2 * d * d + d * P0
    if not trained:                       # the equivalent draw: S0*, the GOE matrix and Ŝ
        pre = 3 * d * d + d * P0
    out = {"pretrain_bytes": 8 * _SAFETY * pre,
           "finetune_bytes": 8 * _SAFETY * fine, "test_bytes": 8 * _SAFETY * test,
           "pretrain_seconds": SECONDS_PER_FLOP * flops if trained else 0.0}
    out["peak_bytes"] = max(out["pretrain_bytes"], out["finetune_bytes"], out["test_bytes"])
    return out


def _fmt_bytes(b: float) -> str:
    return f"{b / _GB:.3g} GB"


def _fmt_seconds(s: float) -> str:
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.0f} min"
    if s < 2 * 86400:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.3g} days"


def check(cfg: Config, stages=("pretrain", "finetune")) -> dict:
    """Refuse (``SimulationTooLarge``) or warn (``SimulationCostWarning``) before any allocation;
    returns the :func:`estimate`. ``stages``: which of "pretrain" / "finetune" will run."""
    est = estimate(cfg)
    limit = memory_limit()
    d = cfg.sim.d
    trained = cfg.sim.backbone == "trained"
    if "pretrain" in stages and not trained and est["pretrain_bytes"] > limit:
        raise SimulationTooLarge(
            f"sim.d = {d}: drawing the equivalent backbone (three d x d matrices) needs about "
            f"{_fmt_bytes(est['pretrain_bytes'])} but this machine allows {_fmt_bytes(limit)} "
            "($HDLORA_SIM_MEMORY_GB); use a smaller sim.d (memory grows as d^2)")
    if "pretrain" in stages and est["pretrain_bytes"] > limit:
        alt = estimate(cfg.replace(sim={"backbone": "equivalent"}) if not cfg.finetune.reuse
                       else cfg)["finetune_bytes"]
        raise SimulationTooLarge(
            f"sim.d = {d}: pre-training the trained backbone on n = pretrain.alpha d^2 = "
            f"{cfg.n_pretrain} sequences needs about {_fmt_bytes(est['pretrain_bytes'])} "
            f"(and roughly {_fmt_seconds(est['pretrain_seconds'])} on 2 CPU cores); this machine "
            f"allows {_fmt_bytes(limit)} ($HDLORA_SIM_MEMORY_GB). Alternatives: "
            + ("sim.backbone = 'equivalent' (no pre-training: fine-tuning then needs about "
               f"{_fmt_bytes(alt)}), " if not cfg.finetune.reuse else "")
            + "a smaller sim.d or pretrain.alpha")
    need = max(est["finetune_bytes"], est["test_bytes"])
    if "finetune" in stages and need > limit:
        raise SimulationTooLarge(
            f"sim.d = {d}: fine-tuning needs about {_fmt_bytes(need)} (the d x d backbone, "
            f"{max(cfg.n_finetune, cfg.n_pool)} sequences of length T x d; test sets are "
            f"already evaluated in memory-bounded batches) but this machine allows "
            f"{_fmt_bytes(limit)} ($HDLORA_SIM_MEMORY_GB); use a smaller sim.d "
            f"(fine-tuning memory grows as d^2)")
    if "pretrain" in stages and trained and est["pretrain_seconds"] > SLOW_SECONDS:
        warnings.warn(
            f"sim.d = {d}: pre-training the trained backbone (O(alpha d^4)) is estimated at "
            f"roughly {_fmt_seconds(est['pretrain_seconds'])} per seed on 2 CPU cores "
            f"(memory about {_fmt_bytes(est['pretrain_bytes'])}); sim.backbone = 'equivalent' "
            "skips it", SimulationCostWarning, stacklevel=3)
    return est
