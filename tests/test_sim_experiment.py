"""End-to-end simulate(): schema, reproducibility, modes and the Δ_eff identity (MODEL.md §4)."""

import json

import jax
import numpy as np
import pytest

import simulations  # noqa: F401
from simulations import data, metrics, model
from simulations.experiment import (SimulationNotImplemented, finetune_dataset, finetune_on,
                                    pretrain_backbone, simulate, simulate_seed)
from theory.config import Config
from theory.schema import FINETUNE_METRICS, PRETRAIN_METRICS

_CFG = Config().replace(sim={"d": 24, "seeds": 2, "seed": 5, "restarts": 3},
                        pretrain={"alpha": 0.2})


@pytest.fixture(scope="module")
def result():
    return simulate(_CFG)


def test_simulate_schema(result):
    assert set(result) == {"config", "pretrain", "finetune", "delta_eff", "delta_eff_train",
                           "diagnostics", "meta"}
    assert result["config"] == _CFG.to_dict()
    assert tuple(result["pretrain"]) == PRETRAIN_METRICS
    assert tuple(result["finetune"]) == FINETUNE_METRICS
    entries = list(result["pretrain"].values()) + list(result["finetune"].values()) + \
        [result["delta_eff"], result["delta_eff_train"]]
    for e in entries:
        assert set(e) == {"mean", "sem", "values"}
        assert len(e["values"]) == 2 and all(np.isfinite(e["values"]))
        assert e["mean"] == pytest.approx(np.mean(e["values"]))
    assert result["diagnostics"]["seeds"] == [5, 6]
    assert result["diagnostics"]["all_converged"], result["diagnostics"]["warnings"]
    assert {"version", "git_commit", "seconds", "jax_backend"} <= set(result["meta"])
    json.dumps(result, allow_nan=False)


def test_internal_consistency(result):
    pre = result["pretrain"]
    for i in range(2):
        Q, M, Q0, mse = (pre[k]["values"][i] for k in ("Q", "M", "Q0", "mse"))
        assert mse == pytest.approx(Q0 - 2 * M + Q, rel=1e-9)
        assert M**2 <= Q * Q0
    ft = result["finetune"]
    assert ft["q0star"]["values"] == pytest.approx([1.0, 1.0], rel=1e-12)
    for i in range(2):
        q, m, o = (ft[k]["values"][i] for k in ("q", "m", "overlap"))
        assert o == pytest.approx(abs(m) / np.sqrt(q), rel=1e-12)
    for d in result["diagnostics"]["per_seed"]:
        assert d["n_test"] % metrics.TEST_BATCH == 0
        for name, sem in d["test_sem"].items():      # automatic test size: sem < 1% (+ slack)
            block, key = name.split(".")
            value = result[block][key]["values"][result["diagnostics"]["seeds"].index(d["seed"])]
            assert sem < 0.0125 * value, (name, sem, value)


def test_seed_reproducible_and_independent_of_batch(result):
    one = simulate_seed(_CFG, 6)
    again = simulate_seed(_CFG, 6)
    assert one == again
    for k in PRETRAIN_METRICS:
        assert one[f"pretrain.{k}"] == pytest.approx(result["pretrain"][k]["values"][1], rel=1e-6)
    for k in ("q", "overlap", "objective", "test_error"):
        assert one[f"finetune.{k}"] == pytest.approx(result["finetune"][k]["values"][1], rel=1e-6)


def test_backbone_reuse_path_matches(result):
    backbone = pretrain_backbone(_CFG, 5)
    rec = finetune_on(_CFG, backbone)
    assert rec["pretrain.Q"] == pytest.approx(result["pretrain"]["Q"]["values"][0], rel=1e-8)
    assert rec["finetune.q"] == pytest.approx(result["finetune"]["q"]["values"][0], rel=1e-6)
    other = finetune_on(_CFG.replace(finetune={"lam": 0.5}), backbone)
    assert other["pretrain.Q"] == rec["pretrain.Q"] and other["finetune.q"] < rec["finetune.q"]
    with pytest.raises(ValueError, match="differ from the backbone"):
        finetune_on(_CFG.replace(pretrain={"lam": 0.1}), backbone)


def test_unsupported_modes_raise():
    with pytest.raises(SimulationNotImplemented, match="theory only"):
        simulate(_CFG.replace(pretrain={"estimator": "bayes"}))
    with pytest.raises(SimulationNotImplemented, match="recalibrate = 'optimal'"):
        simulate(_CFG.replace(sim={"surrogate": "residual"}))
    with pytest.raises(SimulationNotImplemented, match="reuse"):
        simulate(_CFG.replace(sim={"surrogate": "residual"}, model={"attention": "linear"},
                              finetune={"reuse": True}))


def test_linear_direct_modes_and_delta_eff_identity():
    """Linear attention, direct (CG) pre-training, optimal c, general LoRA and the surrogate:
    runs converge; Δ_eff (T25(i)) matches the measured mean residual on many fresh sequences."""
    cfg = Config().replace(model={"attention": "linear"}, sim={"d": 24, "restarts": 2},
                           pretrain={"estimator": "direct", "alpha": 0.3},
                           finetune={"recalibrate": "optimal", "lora": "general"})
    rec = simulate_seed(cfg, 0)
    assert rec["diagnostics"]["pretrain"]["method"] == "cg"
    assert rec["diagnostics"]["pretrain"]["converged"] and rec["diagnostics"]["finetune"]["converged"]
    backbone = pretrain_backbone(cfg, 0)["arrays"]
    Q, M, Q0 = (backbone["metrics"][k] for k in ("Q", "M", "Q0"))
    c = M / Q
    n = 40000
    k = jax.random.split(jax.random.PRNGKey(99), 2)
    X = data.sequences(k[0], n, 3, 24)
    r = metrics.residual_noise(model.score_factor(X, backbone["W0"]),
                               data.score_noise(k[1], n, 3, cfg.delta_prime),
                               model.score_dense(X, backbone["S_hat"]), c)
    sem = float(r.std()) / np.sqrt(n)
    assert abs(float(r.mean()) - rec["delta_eff"]) < 5 * sem
    sur = simulate_seed(cfg.replace(sim={"surrogate": "residual"}), 0)
    assert sur["delta_eff"] == rec["delta_eff"]
    assert abs(sur["delta_eff_train"] / sur["delta_eff"] - 1) < 0.25   # n' = 72 sequences


@pytest.mark.slow
def test_vmapped_seeds_match_sequential(result):
    """simulate(..., vmap_seeds=True) gives the same per-seed numbers (up to reduction order)."""
    vm = simulate(_CFG, vmap_seeds=True)
    for block, names in (("pretrain", PRETRAIN_METRICS), ("finetune", ("q", "overlap", "objective"))):
        for k in names:
            np.testing.assert_allclose(vm[block][k]["values"], result[block][k]["values"], rtol=1e-6)
    assert vm["diagnostics"]["n_test"] == result["diagnostics"]["n_test"]


_REUSE = Config().replace(model={"attention": "linear"}, sim={"d": 20, "restarts": 2},
                          pretrain={"alpha": 0.2}, finetune={"alpha": 2.0, "reuse": True})


@pytest.mark.parametrize("noise", ["same", "fresh"])
def test_partial_reuse_fraction(noise):
    """Issue 14 item 5: the first round(e n') sequences are reused pre-training sequences (with
    their noise for reuse_noise = 'same'), the rest are the rows of the fresh draw; e = 1 is the
    full reuse, e = 0 the fresh fine-tuning of the same seed, bit for bit."""
    cfg = _REUSE.replace(finetune={"reuse_noise": noise})
    bb = pretrain_backbone(cfg, 1)
    pre = bb["arrays"]["data"]
    n1 = cfg.n_finetune
    full = finetune_dataset(cfg, bb)
    np.testing.assert_array_equal(full.X, pre["X"][:n1])
    np.testing.assert_array_equal(full.h_base, pre["h_teacher"][:n1])
    if noise == "same":
        np.testing.assert_array_equal(full.noise, pre["noise"][:n1])
    fresh_cfg = cfg.replace(finetune={"reuse": False, "reuse_noise": "same"})
    fresh = finetune_dataset(fresh_cfg, bb)
    half_cfg = cfg.replace(finetune={"reuse_fraction": 0.5})
    nr = half_cfg.n_reused
    assert nr == round(0.5 * n1)
    half = finetune_dataset(half_cfg, bb)
    # same draws; XLA fuses the 0 < e < 1 program differently (FMA), hence ulp-level tolerances
    close = lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-14, atol=1e-15)  # noqa: E731
    np.testing.assert_array_equal(half.X[:nr], pre["X"][:nr])
    np.testing.assert_array_equal(half.X[nr:], fresh.X[nr:])
    close(half.noise[nr:], fresh.noise[nr:])
    close(half.noise[:nr], (pre["noise"] if noise == "same" else fresh.noise)[:nr])
    close(half.h_base[:nr], pre["h_teacher"][:nr])
    close(half.h_base[nr:], fresh.h_base[nr:])
    zero_cfg = cfg.replace(finetune={"reuse_fraction": 0.0})
    assert zero_cfg.n_reused == 0
    if noise == "same":           # the whole pipeline once (compilation dominates the cost)
        rec0, rec_fresh = finetune_on(zero_cfg, bb), finetune_on(fresh_cfg, bb)
        for k in ("finetune.q", "finetune.m", "finetune.objective", "finetune.test_error",
                  "delta_eff_train"):
            assert rec0[k] == rec_fresh[k], k


def test_no_recompilation_across_numeric_fields():
    """Issue 13: λ′, Δ′, q0*, c and tolerances are traced, so a sweep over them compiles the
    fine-tuning program (and its test program) once; λ and Δ compile pre-training once."""
    from simulations import backbone as bbm
    from simulations import experiment as ex

    cfg = Config().replace(model={"attention": "linear"}, sim={"d": 14, "restarts": 2},
                           pretrain={"alpha": 0.2}, finetune={"alpha": 2.0, "recalibrate": 0.9})
    sizes = lambda: (ex._finetune_jit._cache_size(), ex._finetune_test_jit._cache_size(),  # noqa
                     bbm.pretrain_jit._cache_size(), bbm.pretrain_test_jit._cache_size())
    before = sizes()
    bbs = [pretrain_backbone(cfg.replace(pretrain={"lam": lam, "delta": dl}), 0)
           for lam, dl in ((0.01, 0.5), (0.1, 0.3), (0.5, 0.7))]
    for lam, delta, q0, c in ((0.05, None, 1.0, 0.9), (0.2, 0.3, 1.0, 0.9),
                              (1.0, 0.8, 1.5, 1.2), (0.01, 0.1, 0.7, 0.5)):
        finetune_on(cfg.replace(finetune={"lam": lam, "delta": delta, "q0star": q0,
                                          "recalibrate": c}), bbs[0])
    grown = [a - b for a, b in zip(sizes(), before)]
    assert grown == [min(g, 1) for g in grown] and grown[0] <= 1 and grown[2] <= 1, grown
