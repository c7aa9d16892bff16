"""Continuation along a curve (issue 13): a fine-tuning solve started from its neighbour's
solution agrees with the cold solve, still runs its own branch search (a warm start never hides
a second branch), and is used by the sweep runner (resume included), the mismatch map and the
pre-training optimisation. Cheap settings: linear attention, closed-form pre-training, N = 400."""

from __future__ import annotations

import math
import textwrap

import pytest

from simulations.sweeps import ResultStore, load_spec, run_sweep
from theory.config import Config, load_config
from theory.predict import continuation_start, predict

CHEAP = Config().replace(model={"attention": "linear", "T": 2},
                         pretrain={"estimator": "direct", "alpha": 0.2},
                         theory={"mc_samples": 400, "mc_repeats": 2, "tol": 1e-6,
                                 "max_iter": 300})
KEYS = ("q", "m", "overlap", "test_error")


def _agree(a: dict, b: dict):
    """Same fixed point on the same draws: equal to far below the MC error (and within it)."""
    for k in KEYS:
        x, y = a["finetune"][k], b["finetune"][k]
        err = math.hypot(x["mc_err"], y["mc_err"])
        assert abs(x["value"] - y["value"]) <= min(err, 1e-3 * (1 + abs(x["value"]))), k


def test_continued_solve_agrees_with_the_cold_solve_and_records_its_start():
    left = predict(CHEAP.replace(finetune={"alpha": 2.0}))
    cfg = CHEAP.replace(finetune={"alpha": 2.5})
    cold, warm = predict(cfg), predict(cfg, start=left)
    _agree(cold, warm)
    start = continuation_start(left)
    assert warm["solver"]["finetune"]["start"] == pytest.approx(list(start))
    assert cold["solver"]["finetune"]["start"] is None
    assert warm["solver"]["finetune"]["converged"]
    assert warm["flags"] == cold["flags"]


def test_a_warm_start_never_hides_a_second_branch():
    """Started on the uninformative fixed point (m = 0 is invariant under the antithetic draws),
    the solve still runs its informative start, finds both branches, flags them and reports the
    global (lowest free energy) one: the cold solve's answer."""
    cfg = CHEAP.replace(finetune={"alpha": 2.5})
    cold = predict(cfg)
    best = cold["solver"]["branches"][0]
    trapped = predict(cfg, start=(best["q"], 0.0, best["v"]))
    _agree(cold, trapped)
    starts = {b["start"]: b for b in trapped["solver"]["branches"]}
    assert set(starts) >= {"init", "informative"}
    assert starts["init"]["overlap"] < 0.05 < starts["informative"]["overlap"]
    assert trapped["solver"]["finetune"]["n_branches"] == 2
    assert any("2 fixed points found" in f for f in trapped["flags"])


def test_continuation_start_refuses_what_cannot_be_continued():
    assert continuation_start(None) is None
    assert continuation_start({"solver": {"finetune": {"converged": False},
                                          "branches": [{"q": 1, "m": 1, "v": 1}]}}) is None
    assert continuation_start({"solver": {"finetune": {"converged": True, "kind": "general-linear"},
                                          "branches": [{"q": 1, "m": 1, "v": 1}]}}) is None
    assert continuation_start({"diagnostics": {}}) is None
    assert continuation_start({"solver": {"finetune": {"converged": True},
                                          "branches": [{"q": 1.0, "m": 0.5, "v": 0.1}]}}) \
        == (1.0, 0.5, 0.1)


SPEC = textwrap.dedent("""
    [sweep]
    name = "cont"
    run = ["theory"]
    continuation = "finetune.alpha"
    [sweep.grid]
    "finetune.alpha" = [3.0, 2.0, 2.5]
    [base.model]
    attention = "linear"
    T = 2
    [base.pretrain]
    estimator = "direct"
    alpha = 0.2
    [base.theory]
    mc_samples = 400
    mc_repeats = 2
    tol = 1e-6
    max_iter = 300
""")


def test_sweep_continues_along_its_curve_and_on_resume(tmp_path):
    (tmp_path / "spec.toml").write_text(SPEC)
    spec = load_spec(tmp_path / "spec.toml")
    root = tmp_path / "store"
    run_sweep(spec, str(root), workers=0, progress=False)
    store = ResultStore(root)
    records = {r["point"]["finetune.alpha"]: r for r in store.records("theory")}
    assert sorted(records) == [2.0, 2.5, 3.0]
    ids = {a: r["point_id"] for a, r in records.items()}
    solver = {a: r["diagnostics"]["solver"] for a, r in records.items()}
    assert "continued_from" not in solver[2.0]                     # in the order of α'
    assert solver[2.5]["continued_from"] == ids[2.0]
    assert solver[3.0]["continued_from"] == ids[2.5]
    assert solver[3.0]["finetune"]["start"] is not None
    # the numbers are those of a cold solve (within MC error; the same draws: to the tolerance)
    cold = predict(CHEAP.replace(finetune={"alpha": 3.0}))
    rec = records[3.0]
    for k in KEYS:
        value, err = rec["metrics"][f"finetune.{k}"], rec["errors"][f"finetune.{k}"]
        ref = cold["finetune"][k]
        assert abs(value - ref["value"]) <= min(math.hypot(err, ref["mc_err"]),
                                                1e-3 * (1 + abs(value))), k
    # resume: the last point is redone, started from its neighbour's stored record
    store.path("theory", ids[3.0]).unlink()
    report = run_sweep(spec, str(root), workers=0, progress=False)
    assert report.submitted == 1 and report.skipped == 2
    again = {r["point"]["finetune.alpha"]: r for r in store.records("theory")}[3.0]
    assert again["diagnostics"]["solver"]["continued_from"] == ids[2.5]
    for k in KEYS:
        assert again["metrics"][f"finetune.{k}"] == pytest.approx(rec["metrics"][f"finetune.{k}"],
                                                                  rel=1e-4)


def test_mismatch_map_continues_along_x(monkeypatch):
    import theory.applications.mismatch as mm_mod

    starts = []
    real = mm_mod.predict_states

    def spy(point, **kw):
        starts.append((point.finetune.alpha, kw.get("start") is not None))
        return real(point, **kw)

    monkeypatch.setattr(mm_mod, "predict_states", spy)
    cfg = load_config(None, ["model.attention=linear", "model.T=2", "pretrain.estimator=direct",
                             "pretrain.alpha=0.2", "theory.mc_samples=400",
                             "theory.mc_repeats=2"])
    mm = mm_mod.mismatch_map(cfg, "finetune.alpha", [2.0, 3.0], "finetune.lam", [0.05],
                             modes={"fresh": ("finetune.reuse=false",)})
    assert starts == [(2.0, False), (3.0, True)]
    assert mm.trusted.all()


def test_optimize_pretraining_reports_progress_and_solves_pretraining_criteria_cheaply(
        monkeypatch):
    """A pre-training criterion's refinement solves the pre-training stage only (its grid is the
    shared, fully solved one); its optimum is then solved in full (downstream metrics reported);
    progress is reported once per evaluation."""
    from theory.applications import optimal_pretraining as opt

    monkeypatch.setattr(opt, "CRITERIA", {"pretrain.mse": opt.CRITERIA["pretrain.mse"]})
    calls = []
    real = opt.predict_states
    monkeypatch.setattr(opt, "predict_states",
                        lambda point, **kw: calls.append(kw) or real(point, **kw))
    cfg = load_config(None, ["model.attention=linear", "model.T=2", "pretrain.estimator=direct",
                             "pretrain.alpha=0.2", "finetune.alpha=2.0", "theory.mc_samples=400",
                             "theory.mc_repeats=2"])
    lines = []
    result = opt.optimize_pretraining(cfg, over=["pretrain.lam"], grid_points=5, refine_steps=2,
                                      progress=lines.append)
    evaluated = [line for line in lines if line.startswith("[")]
    solved = [line for line in lines if line.startswith("    pre-training at")]
    assert len(evaluated) == len(calls) >= len(result.scan)
    assert len(solved) == len(result.scan) and len(lines) == len(evaluated) + len(solved)
    stages = [p["metrics"].get("stage") for p in result.scan]
    assert stages.count("pretrain") >= 2 and stages[:5] == [None] * 5   # grid: every stage
    # continuation: every solve after the first fine-tuning one starts from a neighbour
    full = [kw for kw in calls if "finetune" in kw["stages"]]
    assert full[0]["start"] is None and all(kw["start"] is not None for kw in full[1:])
    best = result.best["pretrain.mse"]["metrics"]
    assert best.get("stage") is None and math.isfinite(best["finetune.test_error"])
    for p in result.scan:   # Δ_eff is a closed form in the pre-training: there at every stage
        assert math.isclose(p["metrics"]["delta_eff"], cfg.delta_prime / 2
                            + p["metrics"]["pretrain.mse"], rel_tol=1e-6)


def test_mismatch_map_chains_on_threads_give_the_numbers_of_one_thread():
    """The chains (y row × mode) run on threads; the pre-training solves run first in the grid's
    order, so the map (values, errors, marks, notes) is the same for any number of workers."""
    from theory.applications.mismatch import mismatch_map

    cfg = load_config(None, ["model.attention=linear", "model.T=2", "pretrain.estimator=direct",
                             "pretrain.alpha=0.2", "theory.mc_samples=400",
                             "theory.mc_repeats=2"])
    done = []
    maps = [mismatch_map(cfg, "finetune.alpha", [2.0, 3.0], "finetune.lam", [0.02, 0.2],
                         workers=w, progress=lambda d, t, where: done.append((w, d, t)))
            for w in (1, 2)]
    one, two = (m.to_dict() for m in maps)
    assert one == two
    assert [d for w, d, _ in done if w == 2] == list(range(1, 9))   # 2 × 2 cells × 2 modes
