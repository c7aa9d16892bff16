"""One config + seeds → results in the schema of theory/schema.py (MODEL.md §4).

Public API
----------
* :func:`simulate(cfg, seeds=None, progress=False)` → ``{"config", "pretrain", "finetune",
  "delta_eff", "delta_eff_train", "diagnostics", "meta"}``; every metric is
  ``{"mean", "sem", "values"}`` over seeds (``sem`` is None for a single seed; an unmeasured
  metric — the test errors of an equivalent backbone — has ``None`` entries).
* :func:`simulate_seed(cfg, seed)` → flat per-seed dict (``"pretrain.Q"``, …, ``"diagnostics"``).
* :func:`pretrain_backbone(cfg, seed)` → a frozen backbone (teacher, Ŝ, its pre-training metrics,
  test errors included) that :func:`finetune_on(cfg, backbone, seed)` fine-tunes; a sweep over
  fine-tuning settings reuses one backbone per seed, and :func:`simulate` runs exactly these two
  steps per seed, so a (backbone, seed) reports the same numbers wherever it appears.

Backbones (``sim.backbone``): ``"trained"`` (M5–M8) or ``"equivalent"`` (Ŝ = a·S0* + R with the
theory's or the given (Q, M); :mod:`simulations.backbone` has the derivation).

Compilation (issue 13): the jitted functions take the static :class:`~simulations.plan.Plan`
(shapes and code paths) and the numeric fields as traced scalars (:func:`simulations.plan.numbers`),
so a sweep over λ′, Δ′, λ, β, q0*, c, tolerances compiles each stage once.

Randomness: seed s → root key ``PRNGKey(s)``; each purpose (teacher, data, noise, inits, test, …)
has its own key ``data.purpose_key(root, purpose)``, so no key is used twice. The teacher, the
spike, the fine-tuning sequences, noises, LoRA inits and the test sets do not depend on the
backbone kind, so "trained" and "equivalent" runs of one seed are paired. Restarts are vmapped
inside each seed; seeds run one at a time, or vmapped in chunks with ``vmap_seeds=True`` (slower
on CPU). Test sizes are chosen per seed (and per backbone) from pilot batches.
"""

from __future__ import annotations

import sys
import time
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from theory.config import Config
from theory.provenance import provenance
from theory.schema import FINETUNE_METRICS, PRETRAIN_METRICS

from . import backbone as bbm
from . import budget, data, metrics, model, records, train
from .plan import Plan, split

__all__ = ["simulate", "simulate_seed", "pretrain_backbone", "finetune_on", "finetune_dataset",
           "SimulationNotImplemented", "SimulationTooLarge", "backbone_digest"]

SimulationNotImplemented = budget.SimulationNotImplemented
SimulationTooLarge = budget.SimulationTooLarge


# --------------------------------------------------------------------------------------------
# checks
# --------------------------------------------------------------------------------------------
def _check_supported(cfg: Config, stages=("pretrain", "finetune")) -> None:
    pt, ft, sim = cfg.pretrain, cfg.finetune, cfg.sim
    if pt.estimator == "bayes" and sim.backbone == "trained":
        raise SimulationNotImplemented(
            "pretrain.estimator = 'bayes' is not implemented in simulation (theory only); "
            "use 'factorized' or 'direct'")
    if ft.reuse and cfg.n_reused > cfg.n_pretrain:
        raise ValueError(f"finetune.reuse = true needs e n' = {cfg.n_reused} <= n = {cfg.n_pretrain}")
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
    budget.check(cfg, stages)


def backbone_digest(cfg: Config) -> str:
    """What a backbone depends on: [model], [pretrain], sim.d and the backbone kind (with its
    (Q, M) source: the given values or the [theory] section)."""
    extra = f"-d{cfg.sim.d}-{cfg.sim.backbone}"
    if cfg.sim.backbone == "equivalent":
        extra += (f"-Q{cfg.sim.backbone_Q!r}-M{cfg.sim.backbone_M!r}"
                  if cfg.sim.backbone_Q is not None else "-" + cfg.digest(sections=["theory"]))
    return cfg.digest(sections=["model", "pretrain"]) + extra


def _num(cfg: Config):
    if cfg.sim.backbone == "equivalent":
        Q, M, Q0, source = bbm.equivalent_targets(cfg)
        plan, num = split(cfg, backbone_Q=Q, backbone_M=M, backbone_Q0=Q0)
        return plan, num, source
    plan, num = split(cfg)
    return plan, num, "trained"


# --------------------------------------------------------------------------------------------
# fine-tuning (M9–M14)
# --------------------------------------------------------------------------------------------
def _recalibration(plan: Plan, num: dict, M, Q):
    """(M11) c: a number, "optimal" → M/Q (realised matrices), "learned" → initial value 1."""
    if plan.recalibrate == "optimal":
        return M / Q
    if plan.recalibrate == "learned":
        return jnp.ones_like(M)
    return num["c_fixed"] + 0.0 * M


def _finetune_data_impl(root_key, bb: dict, plan: Plan, num: dict):
    """(M9, M10, M13, surrogate) The labelled fine-tuning set and the backbone scale c0.

    Reuse (M10, ``finetune.reuse_fraction`` = e): the first n_r = round(e n′) sequences are the
    first n_r pre-training sequences (their teacher scores, and their noise with
    ``reuse_noise = "same"``), rows n_r.. are the rows of the fresh draw of e = 0. So e = 1 is
    the full reuse and e = 0 the fresh set of the same seed, bit for bit."""
    d, T, n1 = plan.d, plan.T, plan.n1
    W0, S_hat = bb["W0"], bb["S_hat"]
    Q, M, Q0 = (bb["metrics"][k] for k in ("Q", "M", "Q0"))
    c0 = _recalibration(plan, num, M, Q)
    w_star = data.spike(data.purpose_key(root_key, "spike"), d, num["q0star"])
    key_noise = data.purpose_key(root_key, "finetune_noise")
    delta1 = num["delta_prime"]
    nr = plan.n_reused if plan.reuse else 0

    if nr == n1:                                                       # (M10) e = 1
        X = bb["data"]["X"][:n1]
        h_base = bb["data"]["h_teacher"][:n1]
        noise = (bb["data"]["noise"][:n1] if plan.reuse_noise == "same"
                 else data.score_noise(key_noise, n1, T, delta1))
        index = jnp.arange(n1)
        B = model.score_dense(X, S_hat)
    elif plan.pool:                                                    # (M13) selection
        X_pool = data.sequences(data.purpose_key(root_key, "pool_X"), plan.n_pool, T, d)
        B_pool = model.score_dense(X_pool, S_hat)
        index = data.select(plan.selection, X_pool, S_hat, B_pool, n1, c=c0,
                            beta=None if plan.linear else num["beta"])
        X, B = X_pool[index], B_pool[index]
        h_base = model.score_factor(X, W0)
        noise = data.score_noise(key_noise, n1, T, delta1)
    else:                                                              # fresh, or 0 < e < 1
        X = data.sequences(data.purpose_key(root_key, "finetune_X"), n1, T, d)
        noise = data.score_noise(key_noise, n1, T, delta1)
        index = jnp.arange(n1)
        if nr == 0:
            h_base = model.score_factor(X, W0)
        else:
            pre = bb["data"]
            h_base = jnp.concatenate([pre["h_teacher"][:nr], model.score_factor(X[nr:], W0)])
            if plan.reuse_noise == "same":
                noise = jnp.concatenate([pre["noise"][:nr], noise[nr:]])
            X = jnp.concatenate([pre["X"][:nr], X[nr:]])
        B = model.score_dense(X, S_hat)

    if plan.surrogate == "residual":
        # THEORY §10 item 8: h(S0*) + ξ' − cB replaced by an independent GOE_T(Δ_eff(c)).
        h_base = c0 * B
        noise = data.score_noise(data.purpose_key(root_key, "surrogate_noise"), n1, T,
                                 2.0 * metrics.delta_eff(delta1, Q0, M, Q, c0))

    fdata = data.finetune_data(X, noise, h_base, B, w_star, attention=plan.attention,
                               beta=num["beta"], index=index)
    return fdata, w_star, c0


def _finetune_impl(root_key, bb: dict, plan: Plan, num: dict) -> dict:
    Q, M, Q0 = (bb["metrics"][k] for k in ("Q", "M", "Q0"))
    fdata, w_star, c0 = _finetune_data_impl(root_key, bb, plan, num)
    X, B = fdata.X, fdata.B
    G = model.gram(X)
    kw = dict(attention=plan.attention, beta=num["beta"], output=plan.output)
    lora, info = train.finetune_lora(
        X, G, B, fdata.A_target, c0, key=data.purpose_key(root_key, "lora_init"), lora=plan.lora,
        learned_c=plan.recalibrate == "learned", restarts=plan.restarts, lam=num["lam_ft"],
        gtol=num["finetune_gtol"], max_steps=num["max_steps"], **kw)
    c = lora.get("c", c0)
    A = model.attention(model.lora_score(lora, X, B, c0), plan.attention, num["beta"])
    train_error = jnp.mean(model.per_sample_loss(A, fdata.A_target, G, plan.output))
    out_metrics = {"train_error": train_error, "objective": info["objective"],
                   **metrics.lora_order_parameters({k: v for k, v in lora.items() if k != "c"},
                                                   w_star)}
    return {"w_star": w_star, "lora": lora, "c": c, "metrics": out_metrics,
            "delta_eff": metrics.delta_eff(num["delta_prime"], Q0, M, Q, c),
            "delta_eff_train": jnp.mean(metrics.residual_noise(fdata.h_base, fdata.noise, B, c)),
            "info": info, "index": fdata.index}


def _finetune_test_impl(root_key, n_batches, models, plan: Plan, num: dict, pilot: bool):
    batch = metrics.test_batch_size(plan.d, plan.T, plan.P0)
    kw = dict(T=plan.T, delta_prime=num["delta_prime"], attention=plan.attention,
              beta=num["beta"], output=plan.output)
    fn = lambda k: metrics.finetune_test_losses(k, batch, models, **kw)  # noqa: E731
    key = data.purpose_key(root_key, "test_pilot" if pilot else "test")
    return metrics.batched_moments(fn, key, n_batches)


def _models(bb, tuned) -> metrics.TestModels:
    return metrics.TestModels(bb["W0"], bb["S_hat"], tuned["w_star"], tuned["lora"], tuned["c"])


def _device_part(arrays: dict, with_data: bool) -> dict:
    """What the fine-tuning stage reads of a backbone (arrays only; the pre-training sequences
    only when some are reused)."""
    out = {k: arrays[k] for k in ("W0", "S_hat")}
    out["metrics"] = {k: arrays["metrics"][k] for k in ("Q", "M", "Q0")}
    if with_data:
        out["data"] = arrays["data"]
    return out


def _finetune_stage(root_key, bb, num, plan):
    """Fine-tuning and its test pilot (one program)."""
    tuned = _finetune_impl(root_key, bb, plan, num)
    pilot = _finetune_test_impl(root_key, bbm.PILOT_BATCHES, _models(bb, tuned), plan, num, True)
    return tuned, pilot


_finetune_jit = jax.jit(_finetune_stage, static_argnames=("plan",))


@partial(jax.jit, static_argnames=("plan",))
def _finetune_test_jit(root_key, n_batches, models, num, plan):
    return _finetune_test_impl(root_key, n_batches, models, plan, num, False)


@partial(jax.jit, static_argnames=("plan",))
def _finetune_data_jit(root_key, bb, num, plan):
    return _finetune_data_impl(root_key, bb, plan, num)


# --------------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------------
def pretrain_backbone(cfg: Config, seed: int, keep_data: bool | None = None) -> dict:
    """The frozen model of one seed: ``{"arrays": {"W0", "S_hat", "metrics", "report"[, "data"]},
    "pretrain": {"metrics", "diagnostics"} (host floats, test errors included), "seed",
    "pretrain_digest"}``. ``keep_data`` (default: some sequence is reused) keeps the pre-training
    sequences, needed to fine-tune with reuse (M10). Pre-training test errors use the keys
    "pretrain_test_pilot"/"pretrain_test" of the seed: they depend on the backbone only."""
    _check_supported(cfg, ("pretrain",))
    seed = int(seed)
    plan, num, source = _num(cfg)
    root = jax.random.PRNGKey(seed)
    if plan.backbone == "equivalent":
        arrays = bbm.equivalent_jit(root, num, plan)
        if not np.isfinite(float(arrays["metrics"]["mse"])):
            raise ValueError(f"sim.backbone_Q = {float(num['backbone_Q'])!r}, sim.backbone_M = "
                             f"{float(num['backbone_M'])!r}: need M^2 <= Q Q0 (Cauchy-Schwarz) "
                             f"for the realised Q0 = {float(arrays['metrics']['Q0']):.6g} of "
                             f"seed {seed}")
        test = None
    else:
        if keep_data is None:
            keep_data = cfg.n_reused > 0
        arrays = bbm.pretrain_jit(root, num, plan, bool(keep_data))
        W0, S_hat = arrays["W0"], arrays["S_hat"]
        pilot = bbm.pretrain_test_jit(bbm.test_key(root, True), jnp.asarray(bbm.PILOT_BATCHES),
                                      W0, S_hat, num, plan)
        nb, batch = records.n_batches(pilot, cfg)
        test = (bbm.pretrain_test_jit(bbm.test_key(root, False), jnp.asarray(nb), W0, S_hat, num,
                                      plan), nb * batch)
    return {"arrays": arrays, "pretrain": records.backbone_host(cfg, seed, arrays, source, test),
            "seed": seed, "pretrain_digest": backbone_digest(cfg)}


def finetune_on(cfg: Config, backbone: dict, seed: int | None = None) -> dict:
    """Fine-tune the frozen ``backbone`` under ``cfg`` (its model/pretrain/d/backbone kind must
    match the backbone's) and evaluate every metric: returns the flat per-seed dict of
    :func:`simulate_seed`. ``seed`` (default: the backbone's) keys the fine-tuning randomness."""
    _check_supported(cfg, ("finetune",))
    if backbone_digest(cfg) != backbone["pretrain_digest"]:
        raise ValueError("finetune_on: cfg's [model], [pretrain], sim.d or sim.backbone differ "
                         "from the backbone's")
    if cfg.n_reused > 0 and "data" not in backbone["arrays"]:
        raise ValueError("finetune_on: finetune.reuse = true needs a backbone made with keep_data=True")
    seed = backbone["seed"] if seed is None else int(seed)
    plan, num = split(cfg)
    root = jax.random.PRNGKey(seed)
    bb = _device_part(backbone["arrays"], cfg.n_reused > 0)
    tuned, pilot = _finetune_jit(root, bb, num, plan)
    nb, batch = records.n_batches(pilot, cfg)
    test = _finetune_test_jit(root, jnp.asarray(nb), _models(bb, tuned), num, plan)
    return records.per_seed_record(seed, backbone["pretrain"], tuned, (test, nb * batch), cfg)


def finetune_dataset(cfg: Config, backbone: dict, seed: int | None = None) -> data.FinetuneData:
    """The labelled fine-tuning set that :func:`finetune_on` trains on (for inspection and tests)."""
    _check_supported(cfg, ("finetune",))
    seed = backbone["seed"] if seed is None else int(seed)
    plan, num = split(cfg)
    bb = _device_part(backbone["arrays"], cfg.n_reused > 0)
    return _finetune_data_jit(jax.random.PRNGKey(seed), bb, num, plan)[0]


def simulate_seed(cfg: Config, seed: int) -> dict:
    """All metrics of one seed as a flat dict (``"pretrain.Q"``, …, ``"delta_eff"``,
    ``"delta_eff_train"``) plus ``"diagnostics"`` (optimiser reports, restarts, test size, sems)."""
    return _run_seeds(cfg, [int(seed)])[0]


def _run_seeds(cfg: Config, seeds, progress=False, vmap_seeds=False) -> list[dict]:
    _check_supported(cfg)
    if vmap_seeds:
        from .vmapped import run_seeds_vmapped

        return run_seeds_vmapped(cfg, seeds, progress=progress)
    recs = []
    for s in seeds:
        t0 = time.time()
        recs.append(finetune_on(cfg, pretrain_backbone(cfg, s), s))
        if progress:
            print(f"[simulate] seed {s} done in {time.time() - t0:.1f} s", file=sys.stderr,
                  flush=True)
    return recs


def simulate(cfg: Config, seeds=None, progress: bool = False, vmap_seeds: bool = False) -> dict:
    """Run the whole pipeline for ``seeds`` (default ``range(sim.seed, sim.seed + sim.seeds)``) and
    return the results object of theory/schema.py with per-seed values, mean and sem.

    Per seed: :func:`pretrain_backbone` then :func:`finetune_on` (one compiled program per stage
    for every seed and every numeric setting). ``vmap_seeds=True`` vmaps seeds in memory-sized
    chunks (:mod:`simulations.vmapped`); it is slower on CPU (optax's zoom line search branches
    with ``lax.cond``, which vmap turns into evaluating both branches)."""
    t0 = time.time()
    if seeds is None:
        seeds = range(cfg.sim.seed, cfg.sim.seed + cfg.sim.seeds)
    seeds = [int(s) for s in seeds]
    recs = _run_seeds(cfg, seeds, progress=progress, vmap_seeds=vmap_seeds)
    out = {
        "config": cfg.to_dict(),
        "pretrain": {k: records.summary([r[f"pretrain.{k}"] for r in recs])
                     for k in PRETRAIN_METRICS},
        "finetune": {k: records.summary([r[f"finetune.{k}"] for r in recs])
                     for k in FINETUNE_METRICS},
        "delta_eff": records.summary([r["delta_eff"] for r in recs]),
        "delta_eff_train": records.summary([r["delta_eff_train"] for r in recs]),
    }
    diags = [r["diagnostics"] for r in recs]
    out["diagnostics"] = {
        "seeds": seeds,
        "backbone": cfg.sim.backbone,
        "per_seed": diags,
        "all_converged": all(d["pretrain"]["converged"] and d["finetune"]["converged"]
                             for d in diags),
        "restart_success_fraction": records.summary(
            [d["finetune"]["restart_success_fraction"] for d in diags]),
        "n_test": [d["n_test"] for d in diags],
        "warnings": [w for d in diags for w in d["warnings"]],
    }
    out["meta"] = {**provenance(), "seconds": time.time() - t0}
    return out
