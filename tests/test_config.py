"""Every validation path of the shared config (theory/config.py), TOML round trip, overrides."""

import math

import pytest
from hypothesis import given, strategies as st

from theory.config import Config, ConfigError, field_docs, load_config, parse_assignment


def test_defaults_are_model_md_section_6():
    cfg = Config()
    assert (cfg.model.T, cfg.model.attention, cfg.model.beta, cfg.model.output) == \
        (3, "softmax", 1.0, "values")
    p = cfg.pretrain
    assert (p.kappa0, p.kappa, p.alpha, p.delta, p.lam) == (1.0, 1.0, 0.1, 0.5, 0.01)
    f = cfg.finetune
    assert (f.alpha, f.lam, f.q0star, f.reuse, f.recalibrate, f.lora, f.selection) == \
        (3.0, 0.05, 1.0, False, 1.0, "symmetric", "random")
    assert cfg.sim.d == 150
    assert cfg.n_pretrain == 2250 and cfg.n_finetune == 450
    assert cfg.delta_prime == 0.5 and cfg.rho == 1.0


@pytest.mark.parametrize("assignment, fragment", [
    ("model.T=1", "model.T = 1"),
    ("model.T=2.5", "model.T = 2.5"),
    ("model.attention=relu", "model.attention = 'relu'"),
    ("model.beta=0", "model.beta = 0.0"),
    ("model.output=logits", "model.output"),
    ("pretrain.kappa0=0", "pretrain.kappa0 = 0.0"),
    ("pretrain.kappa=-1", "pretrain.kappa = -1.0"),
    ("pretrain.alpha=-0.1", "pretrain.alpha = -0.1"),
    ("pretrain.delta=-1", "pretrain.delta = -1.0"),
    ("pretrain.lam=-0.01", "pretrain.lam"),
    ("pretrain.estimator=lasso", "pretrain.estimator"),
    ("finetune.alpha=0", "finetune.alpha = 0.0"),
    ("finetune.lam=-1", "finetune.lam"),
    ("finetune.q0star=0", "finetune.q0star"),
    ("finetune.lora=full", "finetune.lora"),
    ("finetune.recalibrate=-1", "finetune.recalibrate"),
    ("finetune.recalibrate=best", "finetune.recalibrate"),
    ("finetune.reuse=1", "finetune.reuse"),
    ("finetune.reuse_noise=other", "finetune.reuse_noise"),
    ("finetune.selection=oracle", "finetune.selection"),
    ("finetune.pool_alpha=1.0", "finetune.pool_alpha"),  # rho = 3 > 1
    ("finetune.pool_alpha=0", "finetune.pool_alpha"),
    ("finetune.selection=smallest_score", "finetune.selection"),  # needs a pool
    ("sim.d=1", "sim.d"),
    ("sim.seeds=0", "sim.seeds"),
    ("sim.restarts=0", "sim.restarts"),
    ("sim.n_test=-1", "sim.n_test"),
    ("sim.pretrain_gtol=0", "sim.pretrain_gtol"),
    ("theory.mc_samples=10", "theory.mc_samples"),
    ("theory.damping=1.0", "theory.damping"),
    ("theory.tol=0", "theory.tol"),
    ("theory.max_iter=0", "theory.max_iter"),
    ("theory.draws=sobol", "theory.draws"),
    ("theory.draws=1", "theory.draws"),
    ("model.nonsense=1", "model.nonsense"),
    ("nosection.T=1", "nosection"),
])
def test_bad_values_name_the_field(assignment, fragment):
    with pytest.raises(ConfigError) as info:
        Config().with_overrides([assignment])
    assert fragment in str(info.value)


def test_range_text_in_message():
    with pytest.raises(ConfigError, match=r"int in \[2, inf\)"):
        Config().with_overrides(["model.T=1"])


def test_cross_field_checks():
    # reuse with n' > n
    with pytest.raises(ConfigError, match="n' <= n"):
        Config().with_overrides(["finetune.reuse=true", "sim.d=10", "pretrain.alpha=0.01",
                                 "finetune.alpha=3"])
    # reuse 'same' noise needs equal deltas
    with pytest.raises(ConfigError, match="reuse_noise"):
        Config().with_overrides(["finetune.reuse=true", "finetune.delta=0.1"])
    Config().with_overrides(["finetune.reuse=true", "finetune.delta=0.1",
                             "finetune.reuse_noise=fresh"])
    # reuse cannot be combined with a selection pool
    with pytest.raises(ConfigError, match="reuse"):
        Config().with_overrides(["finetune.reuse=true", "finetune.pool_alpha=10"])
    # n = alpha d^2 < 1
    with pytest.raises(ConfigError, match="pretrain.alpha"):
        Config().with_overrides(["pretrain.alpha=1e-6", "sim.d=10"])


def test_selection_fraction():
    cfg = Config().with_overrides(["finetune.pool_alpha=100", "finetune.selection=smallest_score"])
    assert math.isclose(cfg.rho, 0.03)
    assert cfg.n_pool == 15000 and cfg.n_finetune == 450


def test_unknown_keys_in_toml(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[model]\nT = 3\nfoo = 1\n")
    with pytest.raises(ConfigError, match="model.foo"):
        load_config(path)
    path.write_text("[modle]\nT = 3\n")
    with pytest.raises(ConfigError, match="modle"):
        load_config(path)
    path.write_text("[model\nT = 3\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.toml")


def test_toml_round_trip_and_digest(tmp_path):
    cfg = Config().with_overrides(["finetune.recalibrate=optimal", "sim.d=77",
                                   "finetune.pool_alpha=30", "finetune.selection=smallest_score",
                                   "model.attention=linear"])
    path = tmp_path / "c.toml"
    path.write_text(cfg.to_toml())
    again = load_config(path)
    assert again == cfg
    assert again.digest() == cfg.digest()
    assert hash(again) == hash(cfg)
    assert cfg.digest() != Config().digest()
    assert cfg.digest(sections=["model"]) != Config().digest(sections=["model"])
    assert cfg.digest(sections=["pretrain"]) == Config().digest(sections=["pretrain"])


def test_parse_assignment_types():
    assert parse_assignment("finetune.recalibrate=optimal") == (("finetune", "recalibrate"),
                                                                "optimal")
    assert parse_assignment("finetune.recalibrate=0.5")[1] == 0.5
    assert parse_assignment("finetune.reuse=true")[1] is True
    assert parse_assignment("finetune.delta=none")[1] is None
    assert parse_assignment('model.attention="linear"')[1] == "linear"
    with pytest.raises(ConfigError):
        parse_assignment("model.T")


def test_int_promoted_to_float_but_not_bool():
    cfg = Config().with_overrides(["pretrain.alpha=1"])
    assert isinstance(cfg.pretrain.alpha, float)
    with pytest.raises(ConfigError):
        Config().with_overrides(["pretrain.alpha=true"])


def test_field_docs_cover_every_field():
    docs = field_docs()
    for section, values in Config().to_dict().items():
        for name in values:
            assert f"{section}.{name}" in docs


@given(alpha=st.floats(0.01, 10), pool=st.floats(1.0, 100.0))
def test_rho_is_never_clipped(alpha, pool):
    overrides = [f"finetune.alpha={alpha!r}", f"finetune.pool_alpha={pool!r}",
                 "finetune.selection=smallest_score"]
    if alpha > pool:
        with pytest.raises(ConfigError, match="pool_alpha"):
            Config().with_overrides(overrides)
    else:
        cfg = Config().with_overrides(overrides)
        assert 0 < cfg.rho <= 1 and math.isclose(cfg.rho, alpha / pool)


def test_cli_reader_matches_load_config(tmp_path):
    """The CLI's reader (simulations/cli_io.py: every unreadable file is a ConfigError naming
    it) gives the same config as theory.config.load_config for a readable file."""
    from simulations.cli_io import load_cli_config

    path = tmp_path / "c.toml"
    path.write_text("[model]\nT = 2\n[finetune]\nalpha = 1.5\n", encoding="utf-8")
    overrides = ["sim.d=20", "finetune.lam=0.3"]
    assert load_cli_config(path, overrides) == load_config(path, overrides)
    assert load_cli_config(None) == Config()
    path.write_bytes(b"[model]\nT = 2 # \xe9\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_cli_config(path)


def test_theory_draws_field():
    assert Config().theory.draws == "mc"
    assert Config().with_overrides(["theory.draws=qmc"]).theory.draws == "qmc"
    with pytest.raises(ConfigError, match=r"theory.draws = 'sobol': must be one of 'mc', 'qmc'"):
        Config().with_overrides(["theory.draws=sobol"])


def test_digest_neutral_defaults_keep_older_store_keys():
    # records are keyed by Config.digest(); a field added later (theory.draws) must not re-key the
    # stores while it holds the value of the older behaviour. 9d4675050c0cf8ea is the digest of
    # the default config at 52a1980, before theory.draws existed.
    from theory.config import DIGEST_NEUTRAL_DEFAULTS
    assert Config().digest() == "9d4675050c0cf8ea"
    qmc = Config().with_overrides(["theory.draws=qmc"])
    assert qmc.digest() != Config().digest()
    assert qmc.digest(sections=["model"]) == Config().digest(sections=["model"])
    for (section, name), neutral in DIGEST_NEUTRAL_DEFAULTS.items():
        assert getattr(getattr(Config(), section), name) == neutral
    assert "draws" in Config().to_dict()["theory"]   # the digest does not mutate the config's dict
