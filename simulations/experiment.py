"""One config + seeds → results in the schema of theory/schema.py (MODEL.md §4).

Public API
----------
* :func:`simulate(cfg, seeds=None, progress=False)` → ``{"config", "pretrain", "finetune",
  "delta_eff", "delta_eff_train", "diagnostics", "meta"}``; every metric is
  ``{"mean", "sem", "values"}`` over seeds (``sem`` is None for a single seed).
* :func:`simulate_seed(cfg, seed)` → flat per-seed dict (``"pretrain.Q"``, …, ``"diagnostics"``).
* :func:`pretrain_backbone(cfg, seed)` → a frozen backbone (teacher, Ŝ, pre-training metrics and
  optimiser report) that :func:`finetune_on(cfg, backbone, seed)` fine-tunes; a sweep over
  fine-tuning settings reuses one backbone per seed.

Randomness: seed s → root key ``PRNGKey(s)``; each purpose (teacher, data, noise, inits, test, …)
has its own key ``data.purpose_key(root, purpose)``, so no key is used twice. Restarts are vmapped
inside each seed. Seeds run one at a time through one compiled program by default, or vmapped in
memory-sized chunks with ``simulate(..., vmap_seeds=True)`` (slower on CPU; see :func:`simulate`).
The automatic test size is chosen per seed from a pilot batch (a per-seed trip count, also inside
the vmapped loop), so a seed's numbers do not depend on which other seeds run beside it.
"""

from __future__ import annotations

import math
import sys
import time
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from theory.config import Config
from theory.provenance import provenance
from theory.schema import FINETUNE_METRICS, PRETRAIN_METRICS

from . import data, metrics, model, train

__all__ = ["simulate", "simulate_seed", "pretrain_backbone", "finetune_on", "finetune_dataset",
           "SimulationNotImplemented"]

_CG_RTOL = 1e-11                 # direct-linear CG: relative residual of the normal equations
_PILOT_BATCHES = 2               # pilot test batches (2 × TEST_BATCH sequences)
_MEMORY_BUDGET = 1.5e9           # bytes of per-chunk working set when vmapping seeds


class SimulationNotImplemented(NotImplementedError):
    """A config the finite-d simulator does not implement (the message says which field)."""


# --------------------------------------------------------------------------------------------
# checks
# --------------------------------------------------------------------------------------------
def _check_supported(cfg: Config) -> None:
    pt, ft, sim = cfg.pretrain, cfg.finetune, cfg.sim
    if pt.estimator == "bayes":
        raise SimulationNotImplemented(
            "pretrain.estimator = 'bayes' is not implemented in simulation (theory only); "
            "use 'factorized' or 'direct'")
    if ft.reuse and cfg.n_finetune > cfg.n_pretrain:
        raise ValueError(f"finetune.reuse = true needs n' = {cfg.n_finetune} <= n = {cfg.n_pretrain}")
    if ft.reuse and ft.reuse_noise == "same" and cfg.delta_prime != pt.delta:
        raise ValueError(f"finetune.reuse_noise = 'same' needs finetune.delta = pretrain.delta "
                         f"(got {cfg.delta_prime} and {pt.delta})")
    if sim.surrogate == "residual":
        if ft.reuse:
            raise SimulationNotImplemented(
                "sim.surrogate = 'residual' with finetune.reuse = true is not supported: the "
                "surrogate draws an independent residual, which is what reuse is not")
        if ft.recalibrate == "learned":
            raise SimulationNotImplemented(
                "sim.surrogate = 'residual' with finetune.recalibrate = 'learned' is not supported "
                "(Delta_eff(c) depends on the c being learned)")
        if cfg.model.attention == "softmax" and ft.recalibrate != "optimal":
            raise SimulationNotImplemented(
                "sim.surrogate = 'residual' with softmax attention needs finetune.recalibrate = "
                "'optimal' (c = M/Q: then B' = (M/Q)B is kept and R + xi' is replaced by "
                "GOE_T(Delta_eff), THEORY T26)")


def _static(cfg: Config) -> Config:
    """The part of the config that fixes the computation (seed fields dropped: one compile)."""
    return cfg.replace(sim={"seeds": 1, "seed": 0})


def _opt_kw(cfg: Config) -> dict:
    m = cfg.model
    return dict(attention=m.attention, beta=m.beta, output=m.output)


# --------------------------------------------------------------------------------------------
# pre-training (M5–M8)
# --------------------------------------------------------------------------------------------
def _pretrain_impl(root_key, cfg: Config, keep_data: bool) -> dict:
    d, T = cfg.sim.d, cfg.model.T
    pt = cfg.pretrain
    W0 = data.teacher_factor(data.purpose_key(root_key, "teacher"), d, cfg.teacher_rank)
    pdata = data.pretrain_data(data.purpose_key(root_key, "pretrain_X"),
                               data.purpose_key(root_key, "pretrain_noise"), W0,
                               n=cfg.n_pretrain, T=T, delta=pt.delta, attention=cfg.model.attention,
                               beta=cfg.model.beta)
    G = model.gram(pdata.X)
    kw = _opt_kw(cfg)
    if pt.estimator == "factorized":
        P = cfg.student_width
        W_init = 0.5 * jax.random.normal(data.purpose_key(root_key, "pretrain_init"), (d, P))
        W, report = train.pretrain_factorized(W_init, pdata.X, G, pdata.A_target, lam=pt.lam,
                                              gtol=cfg.sim.pretrain_gtol,
                                              max_steps=cfg.sim.max_steps, **kw)
        S_hat = W @ W.T / jnp.sqrt(P * d)
        H = model.score_factor(pdata.X, W)
        objective = report.value
    elif cfg.model.attention == "linear":
        S_hat, report = train.pretrain_direct_linear(pdata.X, G, pdata.A_target, lam=pt.lam,
                                                     rtol=_CG_RTOL, max_steps=cfg.sim.max_steps)
        H = model.score_dense(pdata.X, S_hat)
        objective = train.pretrain_direct_objective(S_hat, pdata.X, G, pdata.A_target, lam=pt.lam,
                                                    **kw)
        report = report._replace(value=objective)   # grad_norm keeps the CG relative residual
    else:
        S_hat, report = train.pretrain_direct_lbfgs(pdata.X, G, pdata.A_target, lam=pt.lam,
                                                    gtol=cfg.sim.pretrain_gtol,
                                                    max_steps=cfg.sim.max_steps, **kw)
        H = model.score_dense(pdata.X, S_hat)
        objective = report.value
    A = model.attention(H, cfg.model.attention, cfg.model.beta)
    train_error = jnp.mean(model.per_sample_loss(A, pdata.A_target, G, cfg.model.output))
    S0 = W0 @ W0.T / jnp.sqrt(cfg.teacher_rank * d)
    order = metrics.pretrain_order_parameters(S_hat, S0)
    out = {
        "W0": W0, "S_hat": S_hat,
        "metrics": {"train_error": train_error, "objective": objective, **order},
        "report": report._asdict(),
    }
    if keep_data:
        out["data"] = {"X": pdata.X, "noise": pdata.noise, "h_teacher": pdata.h_teacher}
    return out


# --------------------------------------------------------------------------------------------
# fine-tuning (M9–M14)
# --------------------------------------------------------------------------------------------
def _finetune_data_impl(root_key, backbone: dict, cfg: Config):
    """(M9, M10, M13, surrogate) The labelled fine-tuning set and the backbone scale c0."""
    d, T = cfg.sim.d, cfg.model.T
    ft = cfg.finetune
    n1 = cfg.n_finetune
    delta1 = cfg.delta_prime
    W0, S_hat = backbone["W0"], backbone["S_hat"]
    Q, M, Q0 = (backbone["metrics"][k] for k in ("Q", "M", "Q0"))
    c0 = model.recalibration(ft.recalibrate, M, Q)
    w_star = data.spike(data.purpose_key(root_key, "spike"), d, ft.q0star)
    key_noise = data.purpose_key(root_key, "finetune_noise")

    if ft.reuse:                                                       # (M10) e = 1
        X = backbone["data"]["X"][:n1]
        h_base = backbone["data"]["h_teacher"][:n1]
        noise = (backbone["data"]["noise"][:n1] if ft.reuse_noise == "same"
                 else data.score_noise(key_noise, n1, T, delta1))
        index = jnp.arange(n1)
        B = model.score_dense(X, S_hat)
    elif ft.pool_alpha is not None:                                    # (M13) selection
        X_pool = data.sequences(data.purpose_key(root_key, "pool_X"), cfg.n_pool, T, d)
        B_pool = model.score_dense(X_pool, S_hat)
        index = data.select(ft.selection, X_pool, S_hat, B_pool, n1, c=c0,
                            beta=None if cfg.model.attention == "linear" else cfg.model.beta)
        X, B = X_pool[index], B_pool[index]
        h_base = model.score_factor(X, W0)
        noise = data.score_noise(key_noise, n1, T, delta1)
    else:                                                              # (M10) e = 0, fresh
        X = data.sequences(data.purpose_key(root_key, "finetune_X"), n1, T, d)
        index = jnp.arange(n1)
        B = model.score_dense(X, S_hat)
        h_base = model.score_factor(X, W0)
        noise = data.score_noise(key_noise, n1, T, delta1)

    if cfg.sim.surrogate == "residual":
        # THEORY §10 item 8: h(S0*) + ξ' − cB replaced by an independent GOE_T(Δ_eff(c)).
        h_base = c0 * B
        noise = data.score_noise(data.purpose_key(root_key, "surrogate_noise"), n1, T,
                                 2.0 * metrics.delta_eff(delta1, Q0, M, Q, c0))

    fdata = data.finetune_data(X, noise, h_base, B, w_star, attention=cfg.model.attention,
                               beta=cfg.model.beta, index=index)
    return fdata, w_star, c0


def _finetune_impl(root_key, backbone: dict, cfg: Config) -> dict:
    ft = cfg.finetune
    Q, M, Q0 = (backbone["metrics"][k] for k in ("Q", "M", "Q0"))
    fdata, w_star, c0 = _finetune_data_impl(root_key, backbone, cfg)
    X, B, h_base, noise = fdata.X, fdata.B, fdata.h_base, fdata.noise
    delta1 = cfg.delta_prime
    G = model.gram(X)
    kw = _opt_kw(cfg)
    lora, info = train.finetune_lora(
        X, G, B, fdata.A_target, c0, key=data.purpose_key(root_key, "lora_init"), lora=ft.lora,
        learned_c=ft.recalibrate == "learned", restarts=cfg.sim.restarts, lam=ft.lam,
        gtol=cfg.sim.finetune_gtol, max_steps=cfg.sim.max_steps, **kw)
    c = lora.get("c", c0)
    A = model.attention(model.lora_score(lora, X, B, c0), cfg.model.attention, cfg.model.beta)
    train_error = jnp.mean(model.per_sample_loss(A, fdata.A_target, G, cfg.model.output))
    out_metrics = {"train_error": train_error, "objective": info["objective"],
                   **metrics.lora_order_parameters({k: v for k, v in lora.items() if k != "c"},
                                                   w_star)}
    return {
        "w_star": w_star, "lora": lora, "c": c,
        "metrics": out_metrics,
        "delta_eff": metrics.delta_eff(delta1, Q0, M, Q, c),
        "delta_eff_train": jnp.mean(metrics.residual_noise(h_base, noise, B, c)),
        "info": info,
        "index": fdata.index,
    }


# --------------------------------------------------------------------------------------------
# test errors
# --------------------------------------------------------------------------------------------
def _test_models(backbone, tuned) -> metrics.TestModels:
    return metrics.TestModels(backbone["W0"], backbone["S_hat"], tuned["w_star"], tuned["lora"],
                              tuned["c"])


def _test_kw(cfg: Config) -> dict:
    return dict(T=cfg.model.T, delta=cfg.pretrain.delta, delta_prime=cfg.delta_prime, **_opt_kw(cfg))


def _test_pilot_impl(root_key, models, cfg):
    return metrics.test_moments(data.purpose_key(root_key, "test_pilot"), _PILOT_BATCHES, models,
                                **_test_kw(cfg))


def _test_impl(root_key, n_batches, models, cfg):
    return metrics.test_moments(data.purpose_key(root_key, "test"), n_batches, models,
                                **_test_kw(cfg))


# --------------------------------------------------------------------------------------------
# jitted (single seed) and vmapped (seed chunk) entry points; cfg is static
# --------------------------------------------------------------------------------------------
@partial(jax.jit, static_argnames=("cfg", "keep_data"))
def _pretrain_jit(root_key, cfg, keep_data):
    return _pretrain_impl(root_key, cfg, keep_data)


@partial(jax.jit, static_argnames=("cfg",))
def _finetune_jit(root_key, backbone, cfg):
    return _finetune_impl(root_key, backbone, cfg)


@partial(jax.jit, static_argnames=("cfg",))
def _pilot_jit(root_key, models, cfg):
    return _test_pilot_impl(root_key, models, cfg)


@partial(jax.jit, static_argnames=("cfg",))
def _test_jit(root_key, n_batches, models, cfg):
    return _test_impl(root_key, n_batches, models, cfg)


def _seed_impl(root_key, cfg):
    """Pre-training, fine-tuning and the test pilot of one seed."""
    backbone = _pretrain_impl(root_key, cfg, cfg.finetune.reuse)
    tuned = _finetune_impl(root_key, backbone, cfg)
    backbone.pop("data", None)
    models = _test_models(backbone, tuned)
    pilot = _test_pilot_impl(root_key, models, cfg)
    return backbone, tuned, pilot


@partial(jax.jit, static_argnames=("cfg",))
def _seed_jit(root_key, cfg):
    return _seed_impl(root_key, cfg)


@partial(jax.jit, static_argnames=("cfg",))
def _seed_chunk_jit(root_keys, cfg):
    """:func:`_seed_impl` vmapped over a chunk of seeds (``vmap_seeds=True``)."""
    return jax.vmap(lambda k: _seed_impl(k, cfg))(root_keys)


@partial(jax.jit, static_argnames=("cfg",))
def _test_chunk_jit(root_keys, n_batches, models, cfg):
    return jax.vmap(lambda k, nb, m: _test_impl(k, nb, m, cfg))(root_keys, n_batches, models)


# --------------------------------------------------------------------------------------------
# assembling per-seed results
# --------------------------------------------------------------------------------------------
def _n_batches_for(pilot_sum, pilot_sumsq, cfg: Config) -> int:
    """Test batches: sim.n_test rounded up to whole batches, or automatic (sim.n_test = 0)."""
    if cfg.sim.n_test > 0:
        return max(1, -(-cfg.sim.n_test // metrics.TEST_BATCH))
    n_pilot = _PILOT_BATCHES * metrics.TEST_BATCH
    return metrics.choose_n_test(pilot_sum, pilot_sumsq, n_pilot) // metrics.TEST_BATCH


def _per_seed_record(seed, backbone, tuned, test_sum, test_sumsq, n_batches, cfg) -> dict:
    """Flat per-seed dict: metric name → float, plus "diagnostics"."""
    to_f = lambda x: float(np.asarray(x))  # noqa: E731
    n_test = int(n_batches) * metrics.TEST_BATCH
    mean = np.asarray(test_sum) / n_test
    var = np.maximum(np.asarray(test_sumsq) / n_test - mean**2, 0.0) * n_test / (n_test - 1)
    sem = np.sqrt(var / n_test)
    rec = {f"pretrain.{k}": to_f(v) for k, v in backbone["metrics"].items()}
    rec.update({f"finetune.{k}": to_f(v) for k, v in tuned["metrics"].items()})
    for name, value in zip(metrics.TEST_METRICS, mean):
        rec[name] = float(value)
    rec["delta_eff"] = to_f(tuned["delta_eff"])
    rec["delta_eff_train"] = to_f(tuned["delta_eff_train"])
    rep, info = backbone["report"], tuned["info"]
    pre_diag = {"objective": to_f(rep["value"]), "stationarity": to_f(rep["grad_norm"]),
                "steps": int(rep["steps"]), "converged": bool(rep["converged"]),
                "stalled": bool(rep["stalled"]),
                "method": ("cg" if cfg.pretrain.estimator == "direct"
                           and cfg.model.attention == "linear" else "lbfgs")}
    ft_diag = {"objective": to_f(info["objective"]), "grad_norm": to_f(info["grad_norm"]),
               "steps": int(info["steps"]), "converged": bool(info["converged"]),
               "stalled": bool(info["stalled"]),
               "restart_success_fraction": to_f(info["restart_success_fraction"]),
               "restart_objectives": [float(x) for x in np.asarray(info["restart_objectives"])],
               "restart_converged": [bool(x) for x in np.asarray(info["restart_converged"])],
               "best_restart": int(info["best_restart"]), "q_init": to_f(info["q_init"]),
               "c": to_f(tuned["c"])}
    warnings = []
    if not pre_diag["converged"]:
        warnings.append(f"seed {seed}: pre-training did not reach its tolerance "
                        f"(stationarity {pre_diag['stationarity']:.3g} after {pre_diag['steps']} "
                        f"steps{', stalled' if pre_diag['stalled'] else ''})")
    if not ft_diag["converged"]:
        warnings.append(f"seed {seed}: fine-tuning (best restart) did not reach its tolerance "
                        f"(|grad| {ft_diag['grad_norm']:.3g} after {ft_diag['steps']} steps"
                        f"{', stalled' if ft_diag['stalled'] else ''})")
    for name, m_, s_ in zip(metrics.TEST_METRICS, mean, sem):
        if s_ > metrics.TARGET_REL_SEM * abs(m_):
            warnings.append(f"seed {seed}: {name} = {m_:.4g} has sem {s_:.2g} > "
                            f"{metrics.TARGET_REL_SEM:.0%} of its value (n_test = {n_test})")
    rec["diagnostics"] = {
        "seed": seed, "pretrain": pre_diag, "finetune": ft_diag, "n_test": n_test,
        "test_sem": {name: float(s) for name, s in zip(metrics.TEST_METRICS, sem)},
        "warnings": warnings,
    }
    return rec


def _chunk_size(cfg: Config) -> int:
    d, T, n = cfg.sim.d, cfg.model.T, cfg.n_pretrain
    width = cfg.student_width if cfg.pretrain.estimator == "factorized" else d
    per_seed = 8.0 * n * T * (d + width) * 4 + 8.0 * 12 * d * width
    return max(1, int(_MEMORY_BUDGET // per_seed))


def _run_seeds(cfg: Config, seeds, progress=False, vmap_seeds=False) -> list[dict]:
    _check_supported(cfg)
    scfg = _static(cfg)
    records = []
    size = _chunk_size(cfg) if vmap_seeds else 1
    for start in range(0, len(seeds), size):
        chunk = list(seeds[start:start + size])
        t0 = time.time()
        if vmap_seeds:
            keys = jnp.stack([jax.random.PRNGKey(s) for s in chunk])
            backbone, tuned, (p_sum, p_sumsq) = _seed_chunk_jit(keys, scfg)
            n_batches = np.array([_n_batches_for(p_sum[i], p_sumsq[i], cfg)
                                  for i in range(len(chunk))])
            models = jax.vmap(_test_models)(backbone, tuned)
            t_sum, t_sumsq = _test_chunk_jit(keys, jnp.asarray(n_batches), models, scfg)
            for i, s in enumerate(chunk):
                pick = lambda tree: jax.tree_util.tree_map(lambda x: x[i], tree)  # noqa: E731
                records.append(_per_seed_record(s, pick(backbone), pick(tuned), t_sum[i],
                                                t_sumsq[i], n_batches[i], cfg))
        else:
            key = jax.random.PRNGKey(chunk[0])
            backbone, tuned, (p_sum, p_sumsq) = _seed_jit(key, scfg)
            n_batches = _n_batches_for(p_sum, p_sumsq, cfg)
            models = _test_models(backbone, tuned)
            t_sum, t_sumsq = _test_jit(key, jnp.asarray(n_batches), models, scfg)
            records.append(_per_seed_record(chunk[0], backbone, tuned, t_sum, t_sumsq, n_batches,
                                            cfg))
        if progress:
            print(f"[simulate] seeds {chunk[0]}..{chunk[-1]} done in {time.time() - t0:.1f} s",
                  file=sys.stderr, flush=True)
    return records


def _summary(values: list[float]) -> dict:
    arr = np.asarray(values, dtype=float)
    sem = float(arr.std(ddof=1) / math.sqrt(arr.size)) if arr.size > 1 else None
    return {"mean": float(arr.mean()), "sem": sem, "values": [float(v) for v in arr]}


# --------------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------------
def simulate_seed(cfg: Config, seed: int) -> dict:
    """All metrics of one seed as a flat dict (``"pretrain.Q"``, …, ``"delta_eff"``,
    ``"delta_eff_train"``) plus ``"diagnostics"`` (optimiser reports, restarts, test size, sems)."""
    return _run_seeds(cfg, [int(seed)])[0]


def simulate(cfg: Config, seeds=None, progress: bool = False, vmap_seeds: bool = False) -> dict:
    """Run the whole pipeline for ``seeds`` (default ``range(sim.seed, sim.seed + sim.seeds)``) and
    return the results object of theory/schema.py with per-seed values, mean and sem.

    ``vmap_seeds=True`` vmaps seeds in memory-sized chunks. It is off by default because it is
    slower on CPU (measured at d = 150, 4 seeds: pre-training 15.7 s vmapped vs 4 × 1.4 s one
    seed at a time): optax's zoom line search branches with ``lax.cond``, which vmap turns into
    evaluating both branches (extra objective evaluations), and all seeds wait for the slowest
    line search. One seed at a time reuses one compiled program; restarts stay vmapped."""
    t0 = time.time()
    if seeds is None:
        seeds = range(cfg.sim.seed, cfg.sim.seed + cfg.sim.seeds)
    seeds = [int(s) for s in seeds]
    records = _run_seeds(cfg, seeds, progress=progress, vmap_seeds=vmap_seeds)
    out = {
        "config": cfg.to_dict(),
        "pretrain": {k: _summary([r[f"pretrain.{k}"] for r in records]) for k in PRETRAIN_METRICS},
        "finetune": {k: _summary([r[f"finetune.{k}"] for r in records]) for k in FINETUNE_METRICS},
        "delta_eff": _summary([r["delta_eff"] for r in records]),
        "delta_eff_train": _summary([r["delta_eff_train"] for r in records]),
    }
    diags = [r["diagnostics"] for r in records]
    out["diagnostics"] = {
        "seeds": seeds,
        "per_seed": diags,
        "all_converged": all(d["pretrain"]["converged"] and d["finetune"]["converged"]
                             for d in diags),
        "restart_success_fraction": _summary(
            [d["finetune"]["restart_success_fraction"] for d in diags]),
        "n_test": [d["n_test"] for d in diags],
        "warnings": [w for d in diags for w in d["warnings"]],
    }
    out["meta"] = {**provenance(), "seconds": time.time() - t0}
    return out


def pretrain_backbone(cfg: Config, seed: int, keep_data: bool | None = None) -> dict:
    """The frozen model of one seed: ``{"arrays": {"W0", "S_hat", "metrics", "report"[, "data"]},
    "seed", "pretrain_digest"}``. ``keep_data`` (default ``finetune.reuse``) keeps the pre-training
    sequences, needed to fine-tune with reuse (M10)."""
    _check_supported(cfg)
    if keep_data is None:
        keep_data = cfg.finetune.reuse
    arrays = _pretrain_jit(jax.random.PRNGKey(int(seed)), _static(cfg), bool(keep_data))
    return {"arrays": arrays, "seed": int(seed), "pretrain_digest": _pretrain_digest(cfg)}


def finetune_on(cfg: Config, backbone: dict, seed: int | None = None) -> dict:
    """Fine-tune the frozen ``backbone`` under ``cfg`` (its model/pretrain/d must match the
    backbone's) and evaluate every metric: returns the flat per-seed dict of
    :func:`simulate_seed`. ``seed`` (default: the backbone's) keys the fine-tuning randomness."""
    _check_supported(cfg)
    if _pretrain_digest(cfg) != backbone["pretrain_digest"]:
        raise ValueError("finetune_on: cfg's [model], [pretrain] or sim.d differ from the backbone's")
    if cfg.finetune.reuse and "data" not in backbone["arrays"]:
        raise ValueError("finetune_on: finetune.reuse = true needs a backbone made with keep_data=True")
    seed = backbone["seed"] if seed is None else int(seed)
    scfg = _static(cfg)
    root = jax.random.PRNGKey(seed)
    arrays = dict(backbone["arrays"])
    tuned = _finetune_jit(root, arrays, scfg)
    arrays.pop("data", None)
    models = _test_models(arrays, tuned)
    p_sum, p_sumsq = _pilot_jit(root, models, scfg)
    n_batches = _n_batches_for(p_sum, p_sumsq, cfg)
    t_sum, t_sumsq = _test_jit(root, jnp.asarray(n_batches), models, scfg)
    return _per_seed_record(seed, arrays, tuned, t_sum, t_sumsq, n_batches, cfg)


def finetune_dataset(cfg: Config, backbone: dict, seed: int | None = None) -> data.FinetuneData:
    """The labelled fine-tuning set that :func:`finetune_on` trains on (for inspection and tests)."""
    _check_supported(cfg)
    seed = backbone["seed"] if seed is None else int(seed)
    return _finetune_data_jit(jax.random.PRNGKey(seed), backbone["arrays"], _static(cfg))[0]


@partial(jax.jit, static_argnames=("cfg",))
def _finetune_data_jit(root_key, backbone, cfg):
    return _finetune_data_impl(root_key, backbone, cfg)


def _pretrain_digest(cfg: Config) -> str:
    return cfg.digest(sections=["model", "pretrain"]) + f"-d{cfg.sim.d}"
