"""Impossible sizes fail fast with a message naming sim.d (issue 16 item 5, issue 15 item 1) and
test sets are evaluated in memory-bounded batches."""

import warnings

import pytest

import simulations  # noqa: F401
from simulations import budget, metrics
from simulations.cli import main
from simulations.experiment import SimulationTooLarge, pretrain_backbone, simulate
from theory.config import Config


def test_refuses_huge_dimensions():
    for d in (1_000_000, 1e23):
        cfg = Config().replace(sim={"d": d})
        with pytest.raises(SimulationTooLarge, match="sim.d = "):
            simulate(cfg)
        eq = cfg.replace(sim={"backbone": "equivalent", "backbone_Q": 1.0, "backbone_M": 0.8})
        with pytest.raises(SimulationTooLarge, match="equivalent backbone .* needs about"):
            simulate(eq)
        with pytest.raises(SimulationTooLarge, match="sim.d = "):
            pretrain_backbone(eq, 0)


def test_trained_d2000_refused_with_alternative(monkeypatch):
    monkeypatch.setenv("HDLORA_SIM_MEMORY_GB", "20")
    cfg = Config().replace(sim={"d": 2000})
    with pytest.raises(SimulationTooLarge) as err:
        simulate(cfg)
    text = str(err.value)
    assert "sim.d = 2000" in text and "sim.backbone = 'equivalent'" in text and " h " in text
    est = budget.estimate(cfg.replace(sim={"backbone": "equivalent", "backbone_Q": 1.0,
                                           "backbone_M": 0.8}))
    assert est["peak_bytes"] < 4e9        # the equivalent backbone fits in a few GB at d = 2000
    assert est["test_bytes"] < 1e9


def test_slow_pretraining_warns(monkeypatch):
    monkeypatch.setenv("HDLORA_SIM_MEMORY_GB", "1000")
    cfg = Config().replace(sim={"d": 1200})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est = budget.check(cfg)
    assert est["pretrain_seconds"] > budget.SLOW_SECONDS
    assert any(issubclass(w.category, budget.SimulationCostWarning) and "sim.d = 1200" in
               str(w.message) for w in caught)


@pytest.mark.parametrize("d", ["1000000", "1e23"])
def test_cli_exit_2(d, capsys):
    assert main(["simulate", "--set", f"sim.d={d}", "--json"]) == 2
    err = capsys.readouterr().err
    assert "sim.d = " in err and "Traceback" not in err


def test_test_batch_memory_bound():
    assert metrics.test_batch_size(150, 3, 150) == metrics.TEST_BATCH
    for d in (2000, 20000):
        b = metrics.test_batch_size(d, 3, d)
        assert b * metrics.TEST_BATCH_BYTES_PER_SEQ * 3 * 4 * d <= 1.01 * metrics.TEST_MEMORY
