"""Issue 16 (reliability holes): each fault reproduced, then handled — exit status 2 and a message
naming the path / flag / field, no traceback; records never lost, repeated or silently wrong.

Cheap by construction: sweeps are theory-only pre-training with the closed-form direct estimator
(linear attention), in-process (``workers=0``); the CLI is called in-process with the expensive
calls replaced where only the input/output handling is under test."""

import json
import math
import os
import stat
import subprocess
import sys
import textwrap
import threading
import warnings
from pathlib import Path

import pytest

from simulations import cli
from simulations.jsonio import dumps, file_mode
from simulations.sweeps import CorruptRecordWarning, ResultStore, load_spec, load_table, run_sweep
from simulations.sweeps import runner
from simulations.sweeps.claims import Claims, claim_path

CHEAP = textwrap.dedent("""
    [base.model]
    attention = "linear"
    T = 2
    [base.pretrain]
    estimator = "direct"
    [base.sim]
    d = 16
    [base.theory]
    mc_samples = 200
    mc_repeats = 2
""")


def _spec(tmp_path, name="rel", lams=(0.1, 1.0), extra=""):
    path = tmp_path / f"{name}.toml"
    path.write_text(textwrap.dedent(f"""
        [sweep]
        name = "{name}"
        run = ["theory"]
        stages = ["pretrain"]
        [sweep.grid]
        "pretrain.lam" = {list(lams)}
    """) + extra + CHEAP)
    return path


def _record(pid="p", point=None):
    return {"kind": "theory", "point": point or {"pretrain.lam": 1.0}, "point_id": pid,
            "seed": None, "config": {}, "config_digest": pid, "metrics": {"pretrain.Q": 1.0},
            "errors": {"pretrain.Q": 0.0}, "diagnostics": {}, "meta": {}}


def _no_traceback(err: str):
    assert "Traceback" not in err


# --- 1. truncated / corrupt records -------------------------------------------------------------

def test_truncated_record_is_redone_on_resume_and_skipped_by_load_naming_the_file(tmp_path):
    spec = load_spec(_spec(tmp_path))
    store = tmp_path / "store"
    run_sweep(spec, str(store), workers=0, progress=False)
    files = sorted((store / "theory").glob("*.json"))
    assert len(files) == 2
    good = files[0].read_text()
    files[0].write_text(good[: len(good) // 2])            # a truncated copy
    with pytest.warns(CorruptRecordWarning, match=str(files[0].name)):
        table = load_table(store)                          # skipped, named, no JSONDecodeError
    assert set(table.point_id) == {json.loads(files[1].read_text())["point_id"]}
    with pytest.warns(CorruptRecordWarning, match=r"redone"):
        report = run_sweep(spec, str(store), workers=0, progress=False)
    assert report.submitted == 1 and report.skipped == 1   # the bad one is redone, the good kept
    assert json.loads(files[0].read_text())["metrics"]      # valid again
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(load_table(store).point_id.unique()) == 2


def test_figures_table_on_a_store_with_a_corrupt_record(tmp_path, capsys):
    from figures import table

    spec = load_spec(_spec(tmp_path))
    store = tmp_path / "store"
    run_sweep(spec, str(store), workers=0, progress=False)
    bad = sorted((store / "theory").glob("*.json"))[0]
    bad.write_text('{"kind": "theory", "po')
    with pytest.warns(CorruptRecordWarning, match=bad.name):
        assert table.main([str(store), "--metrics", "pretrain.Q"]) == 0
    assert "pretrain.Q" in capsys.readouterr().out
    assert table.main([str(tmp_path / "nowhere")]) == 2
    assert "not a results store" in capsys.readouterr().err


# --- 2. concurrent sweeps on one store ----------------------------------------------------------

def test_a_live_claim_is_respected_and_released(tmp_path):
    record = tmp_path / "theory" / "abc.json"
    with Claims(tmp_path) as a, Claims(tmp_path) as b:
        assert a.claim(record) is None
        owner = b.claim(record)
        assert owner["pid"] == os.getpid() and owner["run"] == a.owner["run"]
        assert b.holder(record)["run"] == a.owner["run"]
        a.release(record)
        assert b.holder(record) is None and b.claim(record) is None
    assert not claim_path(record).exists()      # released when the run ends


def test_a_dead_runs_claim_is_taken_over(tmp_path):
    record = tmp_path / "theory" / "abc.json"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    claim_path(record).parent.mkdir(parents=True)
    import socket

    claim_path(record).write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(),
                                              "run": "old", "started": "then"}))
    with Claims(tmp_path) as c:
        assert c.claim(record) is None           # stale: owner process gone
    # another host's claim counts until its heartbeat is older than STALE_AFTER_S
    claim_path(record).write_text(json.dumps({"pid": 1, "host": "elsewhere", "run": "x"}))
    with Claims(tmp_path) as c:
        assert c.claim(record) is not None
        old = os.stat(claim_path(record)).st_mtime - 10 * 3600
        os.utime(claim_path(record), (old, old))
        assert c.claim(record) is None


def test_a_sweep_waits_for_tasks_another_run_holds(tmp_path, monkeypatch):
    """Run B finds one task claimed by a live run A: B computes only the other task, waits, and
    reports A's task as done by another run; nothing is computed twice."""
    monkeypatch.setattr(runner, "POLL_S", 0.05)
    spec = load_spec(_spec(tmp_path))
    store = ResultStore(tmp_path / "store")
    held = spec.points()[0]
    logs = []
    with Claims(store.root) as a:
        assert a.claim(store.path("theory", held.point_id)) is None
        out = {}
        thread = threading.Thread(target=lambda: out.setdefault("r", run_sweep(
            spec, str(store.root), workers=0, progress=False, log=logs.append)))
        thread.start()
        thread.join(timeout=1.0)
        assert thread.is_alive()                  # waiting for A's task
        store.write("theory", held.point_id, _record(held.point_id, held.as_dict()))
        a.release(store.path("theory", held.point_id))
        thread.join(timeout=30)
    report = out["r"]
    assert (report.submitted, report.by_others, report.skipped) == (1, 1, 0)
    assert "claimed by another run" in logs[0] and str(os.getpid()) in logs[0]


def test_a_task_released_unfinished_by_the_other_run_is_computed_here(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "POLL_S", 0.05)
    spec = load_spec(_spec(tmp_path))
    store = ResultStore(tmp_path / "store")
    held = spec.points()[0]
    with Claims(store.root) as a:
        a.claim(store.path("theory", held.point_id))
        out = {}
        thread = threading.Thread(target=lambda: out.setdefault("r", run_sweep(
            spec, str(store.root), workers=0, progress=False, log=lambda m: None)))
        thread.start()
        thread.join(timeout=1.0)
        a.release(store.path("theory", held.point_id))    # A died without writing it
        thread.join(timeout=30)
    assert out["r"].submitted == 2 and len(list(store.records("theory"))) == 2


def test_two_concurrent_sweeps_compute_every_task_once(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "POLL_S", 0.05)
    computed, lock = [], threading.Lock()
    real = runner.theory_curve_task

    def counting(curve, *args, **kwargs):
        with lock:
            computed.extend(a[2] for aliases in curve for a in aliases)
        return real(curve, *args, **kwargs)

    monkeypatch.setattr(runner, "theory_curve_task", counting)
    spec = load_spec(_spec(tmp_path, lams=(0.1, 0.2, 0.4, 0.8, 1.6, 3.2)))
    reports = []
    threads = [threading.Thread(target=lambda: reports.append(run_sweep(
        spec, str(tmp_path / "store"), workers=0, progress=False, log=lambda m: None)))
        for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert sorted(computed) == sorted(p.point_id for p in spec.points())   # each exactly once
    assert sum(r.submitted for r in reports) == 6
    assert not list((tmp_path / "store" / "theory").glob(".*.claim"))


# --- 3. output paths checked before computing ---------------------------------------------------

@pytest.fixture
def no_compute(monkeypatch):
    import theory.predict

    def boom(*a, **k):
        raise AssertionError("computed before the output path was checked")

    monkeypatch.setattr(theory.predict, "predict", boom)
    import simulations.experiment

    monkeypatch.setattr(simulations.experiment, "simulate", boom)


@pytest.mark.parametrize("command", ["theory", "simulate", "compare"])
def test_out_pointing_at_a_directory_fails_before_computing(tmp_path, capsys, no_compute,
                                                            command):
    assert cli.main([command, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "--out" in err and str(tmp_path) in err and "directory" in err
    _no_traceback(err)
    assert not list(tmp_path.glob(".*tmp"))


def test_out_under_a_file_fails_before_computing(tmp_path, capsys, no_compute):
    (tmp_path / "f").write_text("x")
    assert cli.main(["theory", "--out", str(tmp_path / "f" / "out.json")]) == 2
    assert "is a file, not a directory" in capsys.readouterr().err


def test_store_and_results_pointing_at_a_file(tmp_path, capsys):
    spec = _spec(tmp_path)
    (tmp_path / "file").write_text("x")
    assert cli.main(["sweep", str(spec), "--workers", "0", "--store", str(tmp_path / "file")]) == 2
    err = capsys.readouterr().err
    assert "--store" in err and "is a file, not a directory" in err
    _no_traceback(err)
    assert cli.main(["figures", "--results", str(tmp_path / "file")]) == 2
    assert "--results" in capsys.readouterr().err


def test_mismatch_map_figure_path_checked_first(tmp_path, capsys, monkeypatch):
    import theory.applications.mismatch as mm

    monkeypatch.setattr(mm, "mismatch_map", lambda *a, **k: pytest.fail("computed"))
    assert cli.main(["mismatch-map", "--figure", str(tmp_path)]) == 2
    assert "--figure" in capsys.readouterr().err
    assert cli.main(["mismatch-map", "--figure", str(tmp_path / "map.xyz")]) == 2
    assert "unknown file type 'xyz'" in capsys.readouterr().err


# --- 4. file modes follow the umask -------------------------------------------------------------

def test_records_spec_and_out_files_follow_the_umask(tmp_path, monkeypatch):
    old = os.umask(0o022)
    try:
        assert file_mode() == 0o644
        spec = load_spec(_spec(tmp_path))
        run_sweep(spec, str(tmp_path / "store"), workers=0, progress=False)
        files = [tmp_path / "store" / "spec.json", *(tmp_path / "store" / "theory").glob("*.json")]
        assert len(files) == 3
        for f in files:
            assert stat.S_IMODE(f.stat().st_mode) == 0o644, f
        from simulations.jsonio import write_atomic

        os.umask(0o027)
        assert stat.S_IMODE(write_atomic(tmp_path / "o.json", "{}").stat().st_mode) == 0o640
    finally:
        os.umask(old)


# --- 6. unreadable configs and specs ------------------------------------------------------------

@pytest.mark.parametrize("make, fragment", [
    (lambda p: p.write_bytes(b"[model]\nT = 3\n# \xff\xfe latin-1 \xe9\n"), "not UTF-8"),
    (lambda p: p.mkdir(), "is a directory"),
    (lambda p: None, "does not exist"),
    (lambda p: p.write_text("[model\n"), "not valid TOML"),
])
def test_unreadable_config_or_spec_exits_2_naming_the_path(tmp_path, capsys, make, fragment):
    path = tmp_path / "cfg.toml"
    make(path)
    assert cli.main(["theory", str(path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and fragment in err
    _no_traceback(err)
    assert cli.main(["sweep", str(path), "--workers", "0"]) == 2
    err = capsys.readouterr().err
    assert "sweep spec" in err and str(path) in err and fragment in err


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_config_without_read_permission(tmp_path, capsys):
    path = tmp_path / "cfg.toml"
    path.write_text("[model]\nT = 3\n")
    path.chmod(0)
    assert cli.main(["theory", str(path)]) == 2
    assert "permission denied" in capsys.readouterr().err


# --- 7. sweep flags and specs -------------------------------------------------------------------

def test_negative_workers_rejected(tmp_path, capsys):
    for command in ("sweep", "validate"):
        with pytest.raises(SystemExit) as exc:
            cli.main([command, str(_spec(tmp_path)), "--workers", "-1"])
        assert exc.value.code == 2
        assert "--workers" in capsys.readouterr().err
    with pytest.raises(ValueError, match="workers = -1"):
        run_sweep(load_spec(_spec(tmp_path)), str(tmp_path / "s"), workers=-1)


def test_duplicate_axis_values_rejected_naming_the_axis(tmp_path, capsys):
    path = _spec(tmp_path, lams=(2.0, 2, 2.0))
    assert cli.main(["sweep", str(path), "--workers", "0", "--store", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err
    assert '"pretrain.lam"' in err and "more than once" in err
    assert not (tmp_path / "s").exists()


def test_simulate_only_sweep_of_a_theory_only_estimator_is_refused(tmp_path, capsys):
    path = tmp_path / "b.toml"
    path.write_text(textwrap.dedent("""
        [sweep]
        name = "b"
        run = ["simulate"]
        [base.pretrain]
        estimator = "bayes"
    """))
    assert cli.main(["sweep", str(path), "--workers", "0", "--store", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err
    assert 'pretrain.estimator = "bayes"' in err and "theory-only" in err


@pytest.mark.parametrize("flag", ["--x-values", "--y-values"])
def test_mismatch_map_values_name_the_flag(capsys, flag):
    assert cli.main(["mismatch-map", flag, "a,b"]) == 2
    err = capsys.readouterr().err
    assert f"{flag}: 'a' is not a number" in err
    _no_traceback(err)


# --- 8. sweep specs may carry a [figure] table --------------------------------------------------

def test_figure_specs_load_as_sweep_specs():
    specs = Path(__file__).resolve().parent.parent / "figures" / "specs"
    for path in sorted(specs.glob("*.toml")):
        assert load_spec(path).points()


# --- 11. strict JSON ----------------------------------------------------------------------------

def test_json_output_is_strict(capsys, monkeypatch):
    import numpy as np

    assert dumps({"a": float("nan"), "b": [np.float64("inf"), np.float32(1.5)], "c": np.arange(2)}
                 ) == '{"a": null, "b": [null, 1.5], "c": [0, 1]}'
    import theory.predict

    from theory.schema import PRETRAIN_METRICS

    pretrain = {k: {"value": 0.5, "mc_err": 0.0} for k in PRETRAIN_METRICS}
    pretrain["objective"] = {"value": float("nan"), "mc_err": None}   # the Bayes estimator's
    fake = {"config": {}, "pretrain": pretrain,
            "finetune": None, "delta_eff": None, "delta_eff_train": None, "solver": {},
            "flags": [], "meta": {}}
    monkeypatch.setattr(theory.predict, "predict", lambda cfg, **k: dict(fake))
    assert cli.main(["theory", "--json", "--set", "pretrain.estimator=bayes"]) == 0
    out = json.loads(capsys.readouterr().out,
                     parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
    assert out["pretrain"]["objective"]["value"] is None


# --- 13. provenance: config digest and the config fields in --help -----------------------------

def test_cli_json_carries_the_config_digest(capsys, monkeypatch, tmp_path):
    import theory.predict
    from theory.config import Config

    monkeypatch.setattr(theory.predict, "predict", lambda cfg, **k: {
        "config": cfg.to_dict(), "pretrain": None, "finetune": None, "solver": {}, "flags": [],
        "meta": {}})
    out_file = tmp_path / "o.json"
    assert cli.main(["theory", "--json", "--set", "finetune.alpha=5", "--out", str(out_file)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["meta"]["config_digest"] == Config().with_overrides(["finetune.alpha=5"]).digest()
    assert json.loads(out_file.read_text()) == out


@pytest.mark.parametrize("command", ["simulate", "theory", "compare"])
def test_help_lists_config_fields_with_ranges(capsys, command):
    with pytest.raises(SystemExit):
        cli.main([command, "--help"])
    out = capsys.readouterr().out
    assert "config fields" in out and "sim.d" in out and "theory.mc_repeats" in out
    assert "int in [1, inf)" in out


# --- 9. an MC error that cannot be estimated is unknown, never 0 --------------------------------

def _states(pre_err: float | None):
    from theory.states import FinetuneState, PretrainState

    names = ("test_error", "test_error_clean", "train_error", "objective", "Q", "M", "Q0", "mse")
    pre = PretrainState(Q=1.0, M=0.8, Q0=2.0, V=0.1, metrics={k: 1.0 for k in names},
                        mc_err={k: (0.0 if k == "Q0" else pre_err) for k in names},
                        solver={"converged": True, "mc_repeats": 1 if pre_err is None else 3})
    keys = ("q", "m", "overlap", "train_error", "objective", "test_error", "test_error_clean")
    # what a single-repeat LoRA solve reports: 0.0 for every repeat-averaged metric
    fin = FinetuneState(q=0.5, m=0.4, v=0.1, delta_eff=1.2, delta_eff_train=1.2,
                        metrics={**{k: 0.5 for k in keys}, "q0star": 1.0, "baseline_error": 3.0},
                        mc_err={**{k: 0.0 for k in keys}, "q0star": 0.0, "baseline_error": 0.0,
                                "delta_eff_train": 0.0},
                        solver={"converged": True, "mc_repeats": 1})
    return pre, fin


@pytest.mark.parametrize("pre_err", [0.0, None])
def test_single_repeat_errors_are_unknown_not_zero(monkeypatch, pre_err):
    import theory.predict
    from theory.config import Config

    pre, fin = _states(pre_err)
    monkeypatch.setattr(theory.predict, "predict_finetuning", lambda cfg, p, **kw: fin)
    out = theory.predict.predict(Config(), pre=pre)
    for k in ("q", "m", "overlap", "objective", "test_error", "train_error"):
        assert out["finetune"][k]["mc_err"] is None, k
    assert out["finetune"]["q0star"]["mc_err"] == 0.0          # an input: exact
    assert out["pretrain"]["Q0"]["mc_err"] == 0.0
    # closed forms in (Q, M, Q0, c): exact only when the pre-training is
    exact = 0.0 if pre_err == 0.0 else None
    for k in ("delta_eff", "delta_eff_train"):
        assert out[k]["mc_err"] == exact
    assert out["finetune"]["baseline_error"]["mc_err"] == exact
    if pre_err is None:
        assert out["pretrain"]["Q"]["mc_err"] is None
    # compare: z is unknown (not inflated), the table says so
    from simulations.cli_format import compare_rows, table_compare

    sim = {"pretrain": None, "delta_eff": None, "delta_eff_train": None,
           "finetune": {k: {"mean": 0.45, "sem": 0.01, "values": []}
                        for k in out["finetune"]}}
    rows = {r["metric"]: r for r in compare_rows(out, sim)}
    assert rows["finetune.q"]["z"] is None and rows["finetune.q0star"]["z"] is not None
    text = table_compare(list(rows.values()), [])
    assert "n/a" in text and "?" in text and "error is unknown" in text
    assert json.loads(dumps(out))["finetune"]["q"]["mc_err"] is None


def test_missing_or_nan_errors_are_unknown():
    from theory.predict import _entry

    assert _entry({"q": 1.0}, {}, "q")["mc_err"] is None
    assert _entry({"q": 1.0}, {"q": float("nan")}, "q")["mc_err"] is None
    assert _entry({"q": 1.0}, {"q": 0.0}, "q")["mc_err"] == 0.0       # closed form, many repeats
    assert _entry({"q": 1.0}, {"q": 0.0}, "q", single=True)["mc_err"] is None
    assert _entry({"q": 1.0}, {"q": 0.02}, "q", single=True)["mc_err"] == 0.02


# --- issue 13: one z convention -----------------------------------------------------------------

def test_one_z_convention_everywhere(tmp_path):
    """z = (theory − simulation)/√(sem² + mc_err²) in compare, figures.table and validate."""
    import numpy as np
    import pandas as pd

    from figures.table import comparison_rows
    from simulations.cli_format import compare_rows
    from simulations.validate import validation_rows
    from theory.schema import z_score

    assert z_score(2.0, 0.3, 1.0, 0.4) == pytest.approx(2.0)       # theory above: z > 0
    assert z_score(1.0, 0.0, 2.0, 0.5) == pytest.approx(-2.0)
    assert z_score(1.0, None, 2.0, 0.5) is None and z_score(1.0, 0.1, 2.0, math.nan) is None
    assert z_score(1.0, 0.0, 2.0, 0.0) is None
    # compare
    th = {"pretrain": None, "finetune": {"q": {"value": 2.0, "mc_err": 0.3}}}
    sim = {"pretrain": None, "finetune": {"q": {"mean": 1.0, "sem": 0.4, "values": []}}}
    assert compare_rows(th, sim)[0]["z"] == pytest.approx(2.0)
    # figures.table: simulation values 0.6, 1.4 -> mean 1, sem 0.4
    store = ResultStore(tmp_path / "s")
    store.write_spec({"axes": ["finetune.alpha"]})
    point = {"finetune.alpha": 1.0}
    store.write("theory", "p", {**_record("p", point), "metrics": {"finetune.q": 2.0},
                                "errors": {"finetune.q": 0.3}})
    for seed, v in ((0, 0.6), (1, 1.4)):
        store.write("simulate", "p", {**_record("p", point), "kind": "simulate", "seed": seed,
                                      "metrics": {"finetune.q": v}, "errors": {}}, seed=seed)
    rows, _ = comparison_rows(tmp_path / "s", ["finetune.q"])
    assert rows[0]["z"] == pytest.approx(2.0)
    # validate: two dimensions, exact fit; the sign is theory minus the extrapolation
    table = pd.DataFrame([
        {"source": "theory", "metric": "finetune.q", "value": 2.0, "error": 0.0, "sim.d": 100},
        *({"source": "simulation", "metric": "finetune.q", "value": v, "error": np.nan,
           "sim.d": d} for d, vals in ((100, (0.9, 1.1)), (400, (0.9, 1.1))) for v in vals)])
    row = validation_rows(table, ["finetune.q"], ["sim.d"])[0]
    assert row["z_inv"] > 0 and row["z_sqrt"] > 0            # theory 2 above the sim's 1
    table.loc[table.source == "theory", "error"] = np.nan
    row = validation_rows(table, ["finetune.q"], ["sim.d"])[0]
    assert row["z_inv"] is None                             # unknown theory error: no z


def test_figures_table_bad_input_exits_2(tmp_path, capsys):
    from figures import table

    store = ResultStore(tmp_path / "s")
    store.write_spec({"axes": []})
    assert table.main([str(store.root)]) == 2
    assert "holds no readable records" in capsys.readouterr().err
    store.write("theory", "p", _record("p"))
    assert table.main([str(store.root), "--metrics", "finetune.bogus"]) == 2
    assert "--metrics: unknown metric 'finetune.bogus'" in capsys.readouterr().err
    assert table.main([str(store.root), "--paired", "pretrain.lam=1"]) == 2
    assert "--paired 'pretrain.lam=1'" in capsys.readouterr().err


def test_corrupt_record_warning_is_one_plain_line(tmp_path):
    store = ResultStore(tmp_path / "s")
    store.write_spec({"axes": []})
    store.write("theory", "p", _record("p"))
    (tmp_path / "s" / "theory" / "q.json").write_text("{")
    root = str(Path(__file__).resolve().parent.parent)
    proc = subprocess.run([sys.executable, "-m", "figures.table", str(store.root),
                           "--metrics", "pretrain.Q"], capture_output=True, text=True, cwd=root,
                          env={**os.environ, "PYTHONPATH": root})
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.startswith("figures.table: warning: record ") and "q.json" in proc.stderr
    _no_traceback(proc.stderr)


def test_delta_eff_error_propagates_the_pretraining_mc_errors():
    # Δ_eff = Δ'/2 + Q0 − 2cM + c²Q (T25) at c = 1: σ = √((2σ_M)² + σ_Q²) (covariance ignored,
    # conservative); single-repeat zeros are unknown, so the propagated error is unknown too
    import math
    import types

    from theory.config import Config
    from theory.finetuning import noise
    from theory.predict import _frozen_entry
    from theory.states import PretrainState

    cfg, fin = Config(), types.SimpleNamespace(mc_err={})
    pre = PretrainState(Q=2.0, M=1.5, Q0=2.0, V=1.0, mc_err={"Q": 0.01, "M": 0.02, "Q0": 0.0},
                        solver={"mc_repeats": 3})
    got = _frozen_entry(noise.delta_eff(cfg, pre, 1.0), cfg, pre, fin, "delta_eff")
    assert got["mc_err"] == pytest.approx(math.hypot(2 * 0.02, 0.01), rel=1e-6)
    one = PretrainState(Q=2.0, M=1.5, Q0=2.0, V=1.0, mc_err={"Q": 0.0, "M": 0.0, "Q0": 0.0},
                        solver={"mc_repeats": 1})
    assert _frozen_entry(1.0, cfg, one, fin, "delta_eff")["mc_err"] is None
    exact = PretrainState(Q=2.0, M=1.5, Q0=2.0, V=1.0, mc_err={"Q": 0.0, "M": 0.0, "Q0": 0.0})
    assert _frozen_entry(1.0, cfg, exact, fin, "delta_eff")["mc_err"] == 0.0
