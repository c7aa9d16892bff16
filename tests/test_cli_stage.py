"""``hdlora theory --stage`` (issue 13): the pre-training alone, and exit codes per stage."""

import json

from simulations import cli

LINEAR = ["--set", "model.attention=linear", "--set", "pretrain.estimator=direct"]


def test_stage_pretrain_solves_and_reports_the_pretraining_only(capsys):
    assert cli.main(["theory", "--stage", "pretrain", "--json", *LINEAR]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["pretrain"]["Q"]["value"] > 0 and out["pretrain"]["Q"]["mc_err"] == 0.0
    assert out["finetune"] is None and "finetune" not in out["solver"]


def test_stage_finetune_exit_follows_the_finetuning(monkeypatch, capsys):
    # a fine-tuning solve that reports non-convergence: exit 3 with --stage finetune and all,
    # while the pre-training alone (the same config) exits 0
    from theory import predict as predict_mod

    real = predict_mod.predict

    def fake(cfg, **kw):
        res = real(cfg, **kw)
        if "finetune" in res["solver"]:
            res["solver"]["finetune"]["converged"] = False
        return res

    monkeypatch.setattr(predict_mod, "predict", fake)
    small = [*LINEAR, "--set", "theory.mc_samples=200", "--set", "theory.mc_repeats=1",
             "--set", "theory.max_iter=5"]
    assert cli.main(["theory", "--stage", "finetune", "--json", *small]) == 3
    assert cli.main(["theory", "--stage", "pretrain", "--json", *small]) == 0
    capsys.readouterr()
