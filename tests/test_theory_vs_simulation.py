"""Theory vs finite-d simulation (slow): the cheap version of the issue-3 validation table.

``hdlora validate tests/validation/pretrain.toml`` (linear rows, d = 50/100/200, 8 seeds) found
that the simulated means approach the theory as a + b/d: the 1/d extrapolation agrees with the
theory within |z| <= 1.5 for every linear row, while a 1/sqrt(d) fit overshoots (z down to -4).
For direct + linear at (alpha, lambda) = (0.2, 0.1) the fitted slopes are b ~ 24 (test error) and
b ~ 1.1 (mse). The tolerance below is: the fitted finite-size shift b/d, plus half of it again for
the uncertainty of b, plus 4 sem of the seed average.
"""

import pytest

from simulations.experiment import simulate
from theory.config import Config
from theory.predict import predict


@pytest.mark.slow
def test_direct_linear_pretraining_matches_theory_at_d100():
    cfg = Config().with_overrides([
        "model.attention=linear", "pretrain.estimator=direct", "pretrain.alpha=0.2",
        "pretrain.lam=0.1", "sim.d=100", "sim.seeds=6", "sim.restarts=2"])
    sim = simulate(cfg)
    theory = predict(cfg, stages=("pretrain",))
    d = cfg.sim.d
    for key, slope in (("test_error", 24.0), ("mse", 1.1)):
        th = theory["pretrain"][key]["value"]
        mean, sem = sim["pretrain"][key]["mean"], sim["pretrain"][key]["sem"]
        shift = slope / d
        assert abs(mean - th - shift) <= 0.5 * shift + 4 * sem, (key, mean, th, sem)
