"""The trust-flag audit (simulations/flag_audit.py, issue 15 item 3) on small hand-made tables."""

import pytest

from simulations.flag_audit import audit, main, parse_tables

TABLE = """# Validation

## fig_a

Image and prose.

| finetune.lam | finetune.alpha | metric | theory | simulation (n) | z | theory flags |
|---|---|---|---|---|---|---|
| 0.1 | 1.0 | finetune.overlap | 0.8 ± 0.01 | 0.5 ± 0.05 (8) | -5.90 | finetune: RS doubtful |
| 0.1 | 1.0 | pretrain.test_error | 0.3 ± 0 | 0.3 ± 0.001 (8) | +0.10 | finetune: RS doubtful |
| 0.1 | 3.0 | finetune.overlap | 0.95 ± 0.001 | 0.90 ± 0.01 (8) | -4.00 | — |
| 0.1 | 3.0 | finetune.test_error | 0.3 ± 0.01 | 0.31 ± 0.01 (8) | +0.70 | — |
| 1.0 | 3.0 | finetune.overlap | 0.9 ± 0.01 | 0.9 ± 0.01 (8) | +0.00 | finetune: not converged (stalled) |
| 1.0 | 3.0 | pretrain.Q | 1.0 ± 0 | 1.2 ± 0.01 (8) | +20.0 | finetune: not converged (stalled) |

| metric | theory: a − b | simulation | z |
|---|---|---|---|
| finetune.overlap | 0.1 | 0.1 | 0.0 |
"""


def test_parse_and_rates(tmp_path):
    path = tmp_path / "v.md"
    path.write_text(TABLE)
    rows = parse_tables(path)
    assert len(rows) == 6           # the paired table (no plain 'theory' column) is skipped
    res = audit(rows)
    r = res["rows"]
    # disagreeing rows: overlap@(0.1,1) flagged, overlap@(0.1,3) missed, pretrain.Q@(1,3) whose
    # fine-tuning flag does not vouch for a pre-training metric -> missed
    assert r["disagree"] == 3 and r["recall"] == pytest.approx(1 / 3)
    # agreeing rows: pretrain.test_error@(0.1,1) (fine-tuning flag only: not flagged), test@(0.1,3),
    # overlap@(1,3) flagged -> 1 of 3
    assert r["false_alarm"] == pytest.approx(1 / 3)
    assert {m["metric"] for m in res["misses"]} == {"finetune.overlap", "pretrain.Q"}
    # points: (0.1,1) flagged, (0.1,3) missed, (1,3) flagged through its overlap row
    assert res["points"]["n"] == 3 and res["points"]["recall"] == pytest.approx(2 / 3)


def test_cli_rejects_missing_file(capsys):
    assert main(["/nonexistent/table.md"]) == 2
    assert "not a file" in capsys.readouterr().err


EXTRAP = """## scan

| finetune.alpha | metric | theory | sim by d (mean ± sem (seeds)) | extrap 1/√d | z | extrap 1/d | z | theory flags |
|---|---|---|---|---|---|---|---|---|
| 1.0 | finetune.overlap | 0.8±0.02 | 100: 0.7±0.05 (8); 200: 0.6±0.04 (8) | 0.4±0.1 | +4.00 | 0.5±0.05 | +6.00 | — |
| 2.0 | finetune.overlap | 0.9±0.01 | 100: 0.9±0.01 (8); 200: 0.9±0.01 (8) | 0.9±0.02 | +0.00 | 0.9±0.01 | +0.00 | — |
"""


def test_extrapolated_rows_are_told_apart(tmp_path, capsys):
    """Rows of a table with an extrapolation in d (several z columns) use its last (1/d) z and
    are reported apart from one-d rows (issue 15's criterion is the extrapolated one)."""
    path = tmp_path / "v.md"
    path.write_text(TABLE + "\n" + EXTRAP)
    rows = parse_tables(path)
    ex = [r for r in rows if r.extrapolated]
    assert len(ex) == 2 and ex[0].z == pytest.approx(6.0)
    assert not any(r.extrapolated for r in rows if r.source.endswith("fig_a"))
    assert main([str(path)]) == 0
    out = capsys.readouterr().out
    assert "total, extrapolated in d" in out and "total, one d" in out


def test_recompute_replaces_theory_error_and_z(tmp_path):
    """``--recompute`` re-solves every row's setting (its spec's base with the row's axis values)
    and recomputes z against the simulation printed beside it: here a linear point whose table
    claims an impossible theory value."""
    import dataclasses
    import math

    from simulations.flag_audit import recompute_flags
    from theory.predict import predict
    from theory.config import Config

    spec = tmp_path / "s.toml"
    spec.write_text('[sweep]\nname = "t"\n[sweep.grid]\n"finetune.alpha" = [3.0]\n'
                    '[base.model]\nattention = "linear"\nT = 2\n'
                    '[base.theory]\nmc_samples = 400\nmc_repeats = 2\n')
    table = tmp_path / "v.md"
    table.write_text("## scan\n\n" + EXTRAP.split("\n", 2)[2].replace("0.8±0.02", "9.9±0.01"))
    rows = [r for r in parse_tables(table) if r.setting == (("finetune.alpha", 1.0),)]
    assert rows[0].sim == pytest.approx((0.5, 0.05)) and rows[0].theory == 9.9
    new = recompute_flags([dataclasses.replace(rows[0], spec=str(spec))])[0]
    res = predict(Config().replace(model={"attention": "linear", "T": 2}, finetune={"alpha": 1.0},
                                   theory={"mc_samples": 400, "mc_repeats": 2}))
    value, err = res["finetune"]["overlap"]["value"], res["finetune"]["overlap"]["mc_err"]
    assert new.theory == pytest.approx(value)
    assert new.z == pytest.approx((value - 0.5) / math.hypot(0.05, err))
