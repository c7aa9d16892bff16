"""``simulate(..., vmap_seeds=True)``: the stages of :mod:`simulations.experiment` vmapped over
chunks of seeds (same keys, same per-seed numbers up to reduction order; slower on CPU, see
:func:`simulations.experiment.simulate`). Test sizes stay per seed (a per-seed trip count inside
the vmapped loop), so a seed's numbers do not depend on the other seeds of its chunk."""

from __future__ import annotations

import sys
import time
from functools import partial

import jax
import jax.numpy as jnp

from theory.config import Config

from . import backbone as bbm
from . import experiment as ex
from . import records

__all__ = ["run_seeds_vmapped", "MEMORY_BUDGET"]

MEMORY_BUDGET = 1.5e9           # bytes of per-chunk working set when vmapping seeds


def _chunk_size(cfg: Config) -> int:
    d, T, n = cfg.sim.d, cfg.model.T, cfg.n_pretrain
    width = cfg.student_width if cfg.pretrain.estimator == "factorized" else d
    per_seed = 8.0 * n * T * (d + width) * 4 + 8.0 * 12 * d * width
    return max(1, int(MEMORY_BUDGET // per_seed))


@partial(jax.jit, static_argnames=("plan", "keep_data"))
def _backbones(keys, num, plan, keep_data):
    if plan.backbone == "equivalent":
        return jax.vmap(lambda k: bbm.equivalent_impl(k, plan, num))(keys)
    return jax.vmap(lambda k: bbm.pretrain_impl(k, plan, num, keep_data))(keys)


@partial(jax.jit, static_argnames=("plan",))
def _pre_tests(keys, n_batches, W0, S_hat, num, plan):
    return jax.vmap(lambda k, nb, w, s: bbm.pretrain_test_impl(k, nb, w, s, plan, num))(
        keys, n_batches, W0, S_hat)


@partial(jax.jit, static_argnames=("plan",))
def _finetunes(keys, bb, num, plan):
    return jax.vmap(lambda k, b: ex._finetune_stage(k, b, num, plan))(keys, bb)


@partial(jax.jit, static_argnames=("plan",))
def _ft_tests(keys, n_batches, models, num, plan):
    return jax.vmap(lambda k, nb, m: ex._finetune_test_impl(k, nb, m, plan, num, False))(
        keys, n_batches, models)


def run_seeds_vmapped(cfg: Config, seeds, progress=False) -> list[dict]:
    plan, num, source = ex._num(cfg)
    recs = []
    size = _chunk_size(cfg)
    for start in range(0, len(seeds), size):
        chunk = list(seeds[start:start + size])
        t0 = time.time()
        pick = lambda tree, i: jax.tree_util.tree_map(lambda x: x[i], tree)  # noqa: E731
        roots = jnp.stack([jax.random.PRNGKey(s) for s in chunk])
        arrays = _backbones(roots, num, plan, cfg.n_reused > 0)
        tests = [None] * len(chunk)
        if plan.backbone == "trained":
            W0, S_hat = arrays["W0"], arrays["S_hat"]
            pk = jax.vmap(lambda r: bbm.test_key(r, True))(roots)
            mk = jax.vmap(lambda r: bbm.test_key(r, False))(roots)
            p = _pre_tests(pk, jnp.full(len(chunk), bbm.PILOT_BATCHES), W0, S_hat, num, plan)
            nbs = [records.n_batches((p[0][i], p[1][i]), cfg) for i in range(len(chunk))]
            t = _pre_tests(mk, jnp.asarray([nb for nb, _ in nbs]), W0, S_hat, num, plan)
            tests = [((t[0][i], t[1][i]), nb * b) for i, (nb, b) in enumerate(nbs)]
        hosts = [records.backbone_host(cfg, s, pick(arrays, i), source, tests[i])
                 for i, s in enumerate(chunk)]
        bb = ex._device_part(arrays, cfg.n_reused > 0)
        tuned, pilot = _finetunes(roots, bb, num, plan)
        nbs = [records.n_batches((pilot[0][i], pilot[1][i]), cfg) for i in range(len(chunk))]
        models = ex._models(bb, tuned)
        t = _ft_tests(roots, jnp.asarray([nb for nb, _ in nbs]), models, num, plan)
        for i, s in enumerate(chunk):
            recs.append(records.per_seed_record(
                s, hosts[i], pick(tuned, i), ((t[0][i], t[1][i]), nbs[i][0] * nbs[i][1]), cfg))
        if progress:
            print(f"[simulate] seeds {chunk[0]}..{chunk[-1]} done in {time.time() - t0:.1f} s",
                  file=sys.stderr, flush=True)
    return recs
