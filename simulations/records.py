"""Host side of the simulator: test sizes and the per-seed records (MODEL.md §4 names).

* :func:`n_batches` — test batches for ``sim.n_test`` or the automatic size (pilot moments).
* :func:`backbone_host` — a backbone's pre-training metrics and diagnostics (measured once per
  backbone; ``None`` for what an equivalent backbone does not measure).
* :func:`per_seed_record` — the flat per-seed dict (metric → float or None, "diagnostics").
* :func:`summary` — mean, sem and values over seeds (``None`` entries stay ``None``).
"""

from __future__ import annotations

import math

import numpy as np

from theory.config import Config
from theory.schema import PRETRAIN_METRICS

from . import backbone as bbm
from . import metrics

__all__ = ["n_batches", "backbone_host", "per_seed_record", "summary"]


def n_batches(pilot, cfg: Config) -> tuple[int, int]:
    """(test batches, batch size): sim.n_test rounded up to whole batches, or automatic."""
    batch = metrics.test_batch_size(cfg.sim.d, cfg.model.T, cfg.teacher_rank)
    if cfg.sim.n_test > 0:
        return max(1, -(-cfg.sim.n_test // batch)), batch
    n = metrics.choose_n_test(pilot[0], pilot[1], bbm.PILOT_BATCHES * batch, batch=batch)
    return n // batch, batch


def _moments(t_sum, t_sumsq, n_test):
    mean = np.asarray(t_sum) / n_test
    var = np.maximum(np.asarray(t_sumsq) / n_test - mean**2, 0.0) * n_test / (n_test - 1)
    return mean, np.sqrt(var / n_test)


def _test_warnings(seed, names, mean, sem, n_test) -> list[str]:
    return [f"seed {seed}: {name} = {m_:.4g} has sem {s_:.2g} > {metrics.TARGET_REL_SEM:.0%} of "
            f"its value (n_test = {n_test})"
            for name, m_, s_ in zip(names, mean, sem) if s_ > metrics.TARGET_REL_SEM * abs(m_)]


def _to_f(x):
    v = float(np.asarray(x))
    return None if math.isnan(v) else v


def backbone_host(cfg: Config, seed: int, arrays: dict, source: str, test) -> dict:
    """Host-side pre-training metrics and diagnostics of one backbone."""
    rep = arrays["report"]
    rec = {k: _to_f(v) for k, v in arrays["metrics"].items()}
    if cfg.sim.backbone == "equivalent":
        rec.update(test_error=None, test_error_clean=None)
        diag = {"backbone": "equivalent", "source": source, "measured": False,
                "a": _to_f(rep["a"]), "sigma2": _to_f(rep["sigma2"]),
                "projection": _to_f(rep["projection"]), "rescale": _to_f(rep["rescale"]),
                "converged": True, "stalled": False, "steps": 0, "method": "equivalent",
                "n_test": 0, "test_sem": {}, "warnings": [],
                "note": "Q, M, Q0, mse are those of the drawn a S0* + R, (a, sigma2) from "
                        + ("the pre-training theory's (Q, M, Q0)" if source == "theory" else
                           "sim.backbone_Q/M (reproduced exactly)")
                        + "; train/test errors and objective not measured"}
        return {"metrics": rec, "diagnostics": diag}
    (t_sum, t_sumsq), n_test = test
    mean, sem = _moments(t_sum, t_sumsq, n_test)
    for name, value in zip(metrics.PRETRAIN_TEST_METRICS, mean):
        rec[name.split(".")[1]] = float(value)
    diag = {"backbone": "trained", "measured": True, "objective": _to_f(rep["value"]),
            "stationarity": _to_f(rep["grad_norm"]), "steps": int(rep["steps"]),
            "converged": bool(rep["converged"]), "stalled": bool(rep["stalled"]),
            "method": ("cg" if cfg.pretrain.estimator == "direct"
                       and cfg.model.attention == "linear" else "lbfgs"),
            "n_test": n_test,
            "test_sem": {n: float(s) for n, s in zip(metrics.PRETRAIN_TEST_METRICS, sem)},
            "warnings": _test_warnings(seed, metrics.PRETRAIN_TEST_METRICS, mean, sem, n_test)}
    if not diag["converged"]:
        diag["warnings"].insert(0, f"seed {seed}: pre-training did not reach its tolerance "
                                   f"(stationarity {diag['stationarity']:.3g} after {diag['steps']}"
                                   f" steps{', stalled' if diag['stalled'] else ''})")
    return {"metrics": rec, "diagnostics": diag}


def per_seed_record(seed, pre_host: dict, tuned, test, cfg) -> dict:
    """Flat per-seed dict: metric name → float (None: not measured), plus "diagnostics"."""
    (t_sum, t_sumsq), n_test = test
    mean, sem = _moments(t_sum, t_sumsq, n_test)
    rec = {f"pretrain.{k}": pre_host["metrics"][k] for k in PRETRAIN_METRICS}
    rec.update({f"finetune.{k}": _to_f(v) for k, v in tuned["metrics"].items()})
    for name, value in zip(metrics.FINETUNE_TEST_METRICS, mean):
        rec[name] = float(value)
    rec["delta_eff"] = _to_f(tuned["delta_eff"])
    rec["delta_eff_train"] = _to_f(tuned["delta_eff_train"])
    info = tuned["info"]
    ft_diag = {"objective": _to_f(info["objective"]), "grad_norm": _to_f(info["grad_norm"]),
               "steps": int(info["steps"]), "converged": bool(info["converged"]),
               "stalled": bool(info["stalled"]),
               "restart_success_fraction": _to_f(info["restart_success_fraction"]),
               "restart_objectives": [float(x) for x in np.asarray(info["restart_objectives"])],
               "restart_converged": [bool(x) for x in np.asarray(info["restart_converged"])],
               "best_restart": int(info["best_restart"]), "q_init": _to_f(info["q_init"]),
               "c": _to_f(tuned["c"])}
    pre_diag = pre_host["diagnostics"]
    warnings = list(pre_diag["warnings"])
    if not ft_diag["converged"]:
        warnings.append(f"seed {seed}: fine-tuning (best restart) did not reach its tolerance "
                        f"(|grad| {ft_diag['grad_norm']:.3g} after {ft_diag['steps']} steps"
                        f"{', stalled' if ft_diag['stalled'] else ''})")
    warnings += _test_warnings(seed, metrics.FINETUNE_TEST_METRICS, mean, sem, n_test)
    test_sem = dict(pre_diag["test_sem"])
    test_sem.update({n: float(s) for n, s in zip(metrics.FINETUNE_TEST_METRICS, sem)})
    rec["diagnostics"] = {
        "seed": seed, "pretrain": {k: v for k, v in pre_diag.items() if k != "warnings"},
        "finetune": ft_diag, "n_test": n_test, "n_test_pretrain": pre_diag["n_test"],
        "test_sem": test_sem, "warnings": warnings}
    return rec


def summary(values: list) -> dict:
    if any(v is None for v in values):
        return {"mean": None, "sem": None, "values": list(values)}
    arr = np.asarray(values, dtype=float)
    sem = float(arr.std(ddof=1) / math.sqrt(arr.size)) if arr.size > 1 else None
    return {"mean": float(arr.mean()), "sem": sem, "values": [float(v) for v in arr]}
