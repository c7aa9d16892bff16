"""The 1RSB ground-state search and ``hdlora one-rsb`` (theory/finetuning/one_rsb_ground.py):
the complexity's zero raises the ground state above RS (R8: φ(μ) ≤ e_GS, φ(0⁺) = φ_RS), bad
settings and unsupported configurations are refused with a clear message. Cheap settings (N =
200, two μ): ≈ 20 s."""

from __future__ import annotations

import json

import pytest

import theory  # noqa: F401
from simulations.cli import main
from theory.config import Config
from theory.finetuning.one_rsb_ground import Settings, predict_one_rsb
from theory.states import PretrainState

ZERO = PretrainState(Q=0.0, M=0.0, Q0=2.0, V=0.0)     # pretrain.lam = 1000: Ŝ = 0



# jax's compiled programs released after this module (tests/conftest.py)
pytestmark = pytest.mark.usefixtures("release_compiled_programs")


def test_linear_ground_state_lies_above_rs():
    """Linear σ, zero backbone, α' = 0.5, λ' = 0.05 (§3.16: RS stalls, 1RSB has Σ = 0 at
    μ* ≈ 0.11, 0.43 above RS at N = 2000–4000). With N = 200 and μ ∈ {0.1, 0.2} the zero is
    bracketed, φ_1RSB > φ_RS on the same draws, and the 1RSB state has a smaller norm q."""
    cfg = Config.from_dict({"model": {"attention": "linear"}, "pretrain": {"lam": 1000.0},
                            "finetune": {"alpha": 0.5, "lam": 0.05}})
    out = predict_one_rsb(cfg, ZERO, Settings(repeats=1, n_outer=200, mus=(0.1, 0.2)))
    d = out["one_rsb"]
    assert d["repeats_with_ground_state"] == 1 and d["rs_converged"] == [True]
    assert 0.1 < d["mu_star"]["value"] < 0.2
    assert d["phi_minus_rs"]["value"] > 0.1
    assert out["finetune_1rsb"]["q"]["value"] < out["finetune_rs"]["q"]["value"]
    assert out["finetune_1rsb"]["q"]["mc_err"] is None          # one repeat: unknown, not 0
    assert 0 < d["q0"]["value"] < out["finetune_1rsb"]["q"]["value"]


def test_settings_are_validated():
    with pytest.raises(ValueError, match="repeats"):
        Settings(repeats=0)
    with pytest.raises(ValueError, match="mus"):
        Settings(mus=(1.0, 0.5))
    with pytest.raises(ValueError, match="mus"):
        Settings(mus=(0.0, 1.0))


@pytest.mark.parametrize("args, message", [
    (["--set", "finetune.lora=general"], "symmetric"),
    (["--repeats", "0"], "repeats"),
    (["--mus", "2,1"], "mus"),
])
def test_cli_refuses_bad_input(capsys, args, message):
    assert main(["one-rsb", *args]) == 2
    assert message in capsys.readouterr().err


def test_cli_quick_softmax_json(capsys):
    """The smoke run: softmax default config (pre-trained backbone), one repeat; the JSON has
    the RS and 1RSB blocks with the MODEL.md §4 metric names."""
    assert main(["one-rsb", "--quick", "--json"]) in (0, 3)
    out = json.loads(capsys.readouterr().out)
    for block in ("finetune_rs", "finetune_1rsb"):
        assert set(out[block]) == {"test_error", "train_error", "objective", "q", "m",
                                   "overlap"}
    assert out["one_rsb"]["repeats"] == 1 and out["config"]["model"]["attention"] == "softmax"
    assert "commit" in json.dumps(out["meta"]) or "version" in json.dumps(out["meta"])


def test_linear_channel_with_a_pretrained_backbone_reduces_to_the_rs_channel():
    """The driver's linear channel, A = ζζᵀ + (q − q0*)I + H − S (any backbone), at q0 = q equals
    the project's RS linear channel (T28–T30, multistart prox, not the reduced form) on the same
    draws: the exact prox is the multistart's global minimum."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from theory.finetuning import one_rsb_ground, one_rsb_linear
    from theory.finetuning.lora import LoraChannel
    from theory.finetuning.lora_channel import _Setup

    pre = PretrainState(Q=0.8, M=0.7, Q0=2.0, V=0.1)
    cfg = Config.from_dict({"model": {"attention": "linear"},
                            "finetune": {"alpha": 1.5, "lam": 0.05},
                            "theory": {"mc_samples": 400}})
    key = jax.random.PRNGKey(7)
    prob, _, _ = one_rsb_ground.channel(cfg, pre, key, Settings(n_outer=400))
    S = _Setup(cfg, pre)
    ch = LoraChannel(S)
    x3 = np.array([1.1, 0.8, 0.05])
    means, _ = ch.means(x3, jnp.zeros((S.n, 3)), S.data(key), True)
    hp, stein = ch.hats(x3, means, True)
    d = S.data(key)                                   # the draws the driver's channel uses
    data = dict(xi0=d["xi_t"], eta=d["eta"], G=(d["Htea"] - d["Sst"]) / np.sqrt(prob.delta))
    rule = one_rsb_linear.inner_rule(3, **one_rsb_linear.RS_RULE)
    xn, h, mn = one_rsb_linear.fixed_point_map(np.array([1.1, 1.1, 0.8, 0.05]), 0.0, data, rule,
                                               prob, "outer")
    np.testing.assert_allclose([h[0], h[3], h[2]], hp, rtol=1e-6)
    np.testing.assert_allclose(xn[[0, 2, 3]], ch.prior(hp), rtol=1e-6)
    assert prob.delta == pytest.approx(S.delta_eff)
