"""The tasks of a sweep (run on Dask workers or in process) and the keys that group them.

Each task reads plain dicts (configs as :meth:`theory.config.Config.to_dict`) and writes its
records itself, atomically (:mod:`.store`); :mod:`.runner` plans, claims and submits them.
"""

from __future__ import annotations

import dataclasses
import time

from theory.compile_cache import enable_compilation_cache
from theory.config import Config
from theory.predict import pretrain_key
from theory.provenance import provenance

from .store import ResultStore

__all__ = ["backbone_key", "theory_key", "pretrain_state_task", "bayes_bound_task",
           "theory_curve_task", "backbone_task", "finetune_task", "THEORY_SECTIONS"]

_BACKBONE_SIM_FIELDS = ("d", "pretrain_gtol", "max_steps", "backbone", "backbone_Q", "backbone_M")


def backbone_key(cfg: Config, seed: int) -> str:
    """Identifier of the backbone a simulation task needs: the trained one, or the Gaussian
    equivalent (whose (Q, M) come from the pre-training theory unless sim.backbone_Q/M give them,
    so the theory section then belongs to the key)."""
    sim = {k: getattr(cfg.sim, k) for k in _BACKBONE_SIM_FIELDS}
    digest = Config.from_dict({"model": cfg.model.to_dict(), "pretrain": cfg.pretrain.to_dict(),
                               "sim": sim}).digest(sections=["model", "pretrain", "sim"])
    if cfg.sim.backbone == "equivalent" and cfg.sim.backbone_Q is None:
        from theory.predict import pretrain_key

        digest = f"{digest}_t{pretrain_key(cfg)}"
    return f"{digest}_s{seed}"


def _record(kind: str, point: dict, cfg_dict: dict, point_id: str, seed, metrics: dict,
            errors: dict, diagnostics: dict, seconds: float) -> dict:
    return {"kind": kind, "point": point, "point_id": point_id, "seed": seed,
            "config": cfg_dict, "config_digest": point_id, "metrics": metrics, "errors": errors,
            "diagnostics": diagnostics, "meta": {**provenance(), "seconds": seconds}}


def _flatten_theory(result: dict) -> tuple[dict, dict]:
    metrics, errors = {}, {}
    for block in ("pretrain", "finetune", "bayes_finetune"):
        for key, entry in (result.get(block) or {}).items():
            metrics[f"{block}.{key}"] = entry["value"]
            errors[f"{block}.{key}"] = entry["mc_err"]
    for key in ("delta_eff", "delta_eff_train"):
        if result.get(key):
            metrics[key] = result[key]["value"]
            errors[key] = result[key]["mc_err"]
    return metrics, errors


THEORY_SECTIONS = ("model", "pretrain", "finetune", "theory")


def theory_key(cfg: Config) -> str:
    """Digest of the sections the theory reads: points differing only in ``sim.*`` share it."""
    return cfg.digest(sections=THEORY_SECTIONS)


def pretrain_state_task(cfg_dict: dict):
    """The pre-training theory state of one :func:`theory.predict.pretrain_key`, shared by every curve
    and Bayes-bound task of a sweep that needs it; ``{"failed": message}`` if the solver left its
    domain (recorded by the points that use it)."""
    from theory.predict import predict_pretraining

    enable_compilation_cache()
    try:
        # the engine solution (per-sample arrays) stays in this worker: curves receive numbers
        return dataclasses.replace(predict_pretraining(Config.from_dict(cfg_dict)), solution=None)
    except (ValueError, ArithmeticError) as err:
        return {"failed": f"{type(err).__name__}: {err}"}


def bayes_bound_task(cfg_dict: dict, pre) -> dict:
    """The Bayes-optimal fine-tuning bound of one :func:`theory.predict.bayes_bound_key`, on the
    :func:`pretrain_state_task` result ``pre``; a solver that leaves its domain gives
    ``{"failed": message}`` (recorded by the curves that use it)."""
    from theory.predict import predict_bayes_bound

    enable_compilation_cache()
    if isinstance(pre, dict):          # the shared pre-training solve failed
        return {"failed": pre["failed"]}
    try:
        return predict_bayes_bound(Config.from_dict(cfg_dict), pre)
    except (ValueError, ArithmeticError) as err:
        return {"failed": f"{type(err).__name__}: {err}"}


def theory_curve_task(curve: list[list[tuple[dict, dict, str]]], store_root: str,
                      stages: tuple[str, ...] = ("pretrain", "finetune"),
                      bayes_bounds: dict[str, dict] | None = None,
                      pretrain_states: dict | None = None,
                      previous: list[list[str]] | None = None) -> list[str]:
    """Solve the theory along one curve, writing each point as soon as it is done.

    ``curve`` is a list of alias groups: the points of a group differ only in ``sim.*`` fields,
    which the theory does not read, so it is solved once and its record written for each alias.
    ``bayes_bounds`` maps :func:`theory.predict.bayes_bound_key` to a :func:`bayes_bound_task`
    result; each point with its key in the map gets the bound merged into its record.
    ``pretrain_states`` maps :func:`theory.predict.pretrain_key` to a :func:`pretrain_state_task` result
    (solved once per sweep); keys not in it are solved here, once per curve.
    ``previous`` (continuation, aligned with ``curve``): the alias ids of each group's neighbour
    along the curve. One solved by this task a moment ago continues with its whole engine
    solution (every MC repeat and every sample's prox, :func:`theory.predict.predict_states`);
    otherwise the first of them with a record of an earlier run gives the fine-tuning start
    (q, m, v) (:func:`theory.predict.continuation_start`); none, or a stored one whose solve
    failed or did not converge, gives a cold solve.
    """
    from theory.predict import bayes_bound_key, merge_bayes_bound, predict_pretraining, predict_states

    enable_compilation_cache()
    store = ResultStore(store_root)
    done = []
    pretrain_states = dict(pretrain_states or {})   # one solve per (model, pretrain, theory)
    previous = list(previous or [[] for _ in curve])
    solved: dict = {}      # point id -> FinetuneState solved by this task (continued in memory)
    for aliases, before in zip(curve, previous):
        todo = [a for a in aliases if not store.has("theory", a[2])]
        if not todo:
            continue
        start = time.perf_counter()
        # the neighbour solved by this task a moment ago continues with its whole solution (every
        # MC repeat and sample); one from an earlier run with its stored (q, m, v)
        in_memory = [p for p in before if p in solved]
        if in_memory:
            neighbour, warm = in_memory[0], solved[in_memory[0]]
        elif "finetune" in stages:
            neighbour, warm = _neighbour_start(store, before)
        else:
            neighbour, warm = None, None
        try:
            cfg = Config.from_dict(todo[0][1])
            key = pretrain_key(cfg)
            if key not in pretrain_states:
                pretrain_states[key] = predict_pretraining(cfg)
            pre = pretrain_states[key]
            if isinstance(pre, dict):   # the shared pre-training solve failed: same record
                raise ValueError(pre["failed"])
            result, _, fin = predict_states(cfg, pre=pre, stages=stages, start=warm)
            solved = {} if fin is None else {a[2]: fin for a in todo}
            if warm is not None:
                result["solver"]["continued_from"] = neighbour
            bound = (bayes_bounds or {}).get(bayes_bound_key(cfg)) if "finetune" in stages else None
            if bound is not None and "failed" in bound:
                result["flags"].append(f"bayes_finetune: failed: {bound['failed']}")
            elif bound is not None:
                merge_bayes_bound(result, bound)
        except NotImplementedError as err:  # recorded, so a figure shows the gap, not a crash
            metrics, errors, diagnostics = {}, {}, {"not_available": str(err)}
        except (ValueError, ArithmeticError) as err:
            # a solver that left its domain at this point (e.g. a negative hat in an iterate):
            # recorded with the message, the other points of the curve still run
            metrics, errors, diagnostics = {}, {}, {"failed": f"{type(err).__name__}: {err}"}
        else:
            metrics, errors = _flatten_theory(result)
            diagnostics = {"solver": result["solver"], "flags": result["flags"]}
        seconds = time.perf_counter() - start
        for point, cfg_dict, point_id in todo:
            store.write("theory", point_id, _record("theory", point, cfg_dict, point_id, None,
                                                    metrics, errors, diagnostics, seconds))
            done.append(point_id)
    return done


def _neighbour_start(store: ResultStore, ids: list[str]):
    """(point id, (q, m, v)) of the first of ``ids`` with a theory record that gives a
    continuation start; (None, None) when none does."""
    from theory.predict import continuation_start

    from .store import check_record

    for point_id in ids:
        path = store.path("theory", point_id)
        if not path.exists():
            continue
        record, _ = check_record(path)
        start = continuation_start((record or {}).get("diagnostics"))
        if start is not None:
            return point_id, start
    return None, None


def backbone_task(cfg_dict: dict, seed: int, keep_data: bool = False):
    """Pre-train once for a (pre-training config, d, seed) key; ``keep_data`` keeps the
    pre-training sequences (needed when any fine-tuning task on it reuses them, M10)."""
    from simulations.experiment import SimulationNotImplemented, pretrain_backbone

    enable_compilation_cache()
    try:
        return pretrain_backbone(Config.from_dict(cfg_dict), seed, keep_data=keep_data)
    except SimulationNotImplemented as err:  # recorded by every task that needs it
        return {"not_available": str(err)}


def finetune_task(point: dict, cfg_dict: dict, point_id: str, seed: int, backbone,
                  store_root: str) -> str:
    """Fine-tune on a shared backbone and write the (point, seed) record."""
    from simulations.experiment import SimulationNotImplemented, finetune_on

    enable_compilation_cache()
    store = ResultStore(store_root)
    start = time.perf_counter()
    if "not_available" in backbone:
        metrics, diagnostics = {}, {"not_available": backbone["not_available"]}
    else:
        try:
            seed_result = finetune_on(Config.from_dict(cfg_dict), backbone, seed)
        except SimulationNotImplemented as err:
            metrics, diagnostics = {}, {"not_available": str(err)}
        else:
            metrics = {k: v for k, v in seed_result.items() if k != "diagnostics"}
            diagnostics = seed_result["diagnostics"]
    store.write("simulate", point_id,
                _record("simulate", point, cfg_dict, point_id, seed, metrics, {}, diagnostics,
                        time.perf_counter() - start), seed=seed)
    return f"{point_id}_s{seed}"
