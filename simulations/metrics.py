"""Metrics of MODEL.md §4 at finite d.

* Order parameters (M8, M14): :func:`pretrain_order_parameters` (Q, M, realised Q0, mse),
  :func:`lora_order_parameters` (q, m, overlap, realised q0*).
* :func:`delta_eff` — Δ'/2 + Q0 − 2cM + c²Q with the realised matrices (THEORY T25(i): the exact
  finite-d identity E‖h(cŜ − S0*) − ξ'‖²_F = T(T+1)Δ_eff(c) on fresh sequences);
  :func:`residual_noise` — the measured per-sequence ‖h(S0*) + ξ' − c h(Ŝ)‖²_F/(T(T+1)) whose mean
  over the training sequences is ``delta_eff_train``.
* Test errors on fresh, unselected sequences: :func:`pretrain_test_losses` and
  :func:`finetune_test_losses` (per-sample losses of one batch), :func:`batched_moments` (sums over
  ``n_batches`` batches in a ``fori_loop``: dynamic trip count, no recompilation, one batch in
  memory), :func:`test_batch_size` (batch size under a memory bound) and :func:`choose_n_test`
  (the test size for a target relative sem, from a pilot batch).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from . import data, model

__all__ = [
    "TEST_METRICS", "TestModels", "pretrain_order_parameters", "lora_order_parameters",
    "delta_eff", "residual_noise", "pretrain_test_losses", "finetune_test_losses",
    "batched_moments", "test_batch_size", "choose_n_test", "PRETRAIN_TEST_METRICS",
    "FINETUNE_TEST_METRICS", "TEST_BATCH", "TEST_MEMORY", "TARGET_REL_SEM", "N_TEST_MAX",
]

# The test errors: pre-training ones (measured once per backbone) and fine-tuning ones.
PRETRAIN_TEST_METRICS = ("pretrain.test_error", "pretrain.test_error_clean")
FINETUNE_TEST_METRICS = ("finetune.test_error", "finetune.test_error_clean",
                         "finetune.baseline_error")
TEST_METRICS = PRETRAIN_TEST_METRICS + FINETUNE_TEST_METRICS
TEST_BATCH = 1024        # sequences per test batch (at most; fewer at large d, test_batch_size)
TEST_MEMORY = 256 << 20  # bytes of working set of one test batch
TEST_BATCH_BYTES_PER_SEQ = 8 * 4   # float64 × ~4 live copies of each per-sequence array
TARGET_REL_SEM = 0.01    # sem of each test error below 1% of its value (sim.n_test = 0)
N_TEST_MAX = 1 << 20     # cap of the automatic test size (the achieved sem is reported)


class TestModels(NamedTuple):
    """What the test evaluation needs of one seed (all arrays, vmappable)."""

    W0: jax.Array       # (d, P0) teacher factor, S0* = W0 W0ᵀ/√(P0 d)
    S_hat: jax.Array    # (d, d) frozen pre-trained matrix
    w_star: jax.Array   # (d,) fine-tuning spike
    lora: dict          # LoRA parameters ({"w"} or {"u", "v"}, maybe "c")
    c: jax.Array        # backbone scale used by the fine-tuned model (learned value if learned)


def pretrain_order_parameters(S_hat: jax.Array, S0: jax.Array) -> dict:
    """(M8) Q = Tr Ŝ²/d, M = Tr ŜS0*/d, realised Q0 = Tr S0*²/d, mse = ‖Ŝ − S0*‖²_F/d."""
    d = S_hat.shape[0]
    Q = jnp.sum(S_hat * S_hat) / d
    M = jnp.sum(S_hat * S0) / d
    Q0 = jnp.sum(S0 * S0) / d
    mse = jnp.sum((S_hat - S0) ** 2) / d
    return {"Q": Q, "M": M, "Q0": Q0, "mse": mse}


def lora_order_parameters(lora: dict, w_star: jax.Array) -> dict:
    """(M14) q = |w|²/d, m = w·w*/d, overlap |m|/√(q q0*), realised q0* = |w*|²/d.

    Symmetric LoRA: w and −w are the same model (M14: the sign is not identifiable), so the sign
    is fixed by the gauge m ≥ 0, i.e. m = |w·w*|/d (otherwise seed averages of m are meaningless).

    General LoRA (M12): uvᵀ is invariant under (u, v) → (su, v/s) and (−u, −v), so we report the
    invariant generalisations q = |u||v|/d, m = sign((u·w*)(v·w*))·√|(u·w*)(v·w*)|/d, hence
    overlap = √|cos(u,w*) cos(v,w*)|; they reduce to (M14) when u = v = w."""
    d = w_star.shape[0]
    q0star = w_star @ w_star / d
    if "w" in lora:
        w = lora["w"]
        q = w @ w / d
        m = jnp.abs(w @ w_star) / d
    else:
        u, v = lora["u"], lora["v"]
        q = jnp.linalg.norm(u) * jnp.linalg.norm(v) / d
        prod = (u @ w_star) * (v @ w_star)
        m = jnp.sign(prod) * jnp.sqrt(jnp.abs(prod)) / d
    overlap = jnp.abs(m) / jnp.sqrt(q * q0star)
    return {"q": q, "m": m, "overlap": overlap, "q0star": q0star}


def delta_eff(delta_prime, Q0, M, Q, c):
    """(T25) Δ_eff(c) = Δ'/2 + Q0 − 2cM + c²Q (realised matrices; exact in mean on fresh X)."""
    return 0.5 * delta_prime + Q0 - 2.0 * c * M + c * c * Q


def residual_noise(h_base, noise, B, c):
    """Per-sequence ‖h(S0*) + ξ' − c h(Ŝ)‖²_F/(T(T+1)): the residual the LoRA is trained on."""
    T = B.shape[-1]
    R = h_base + noise - c * B
    return jnp.sum(R * R, axis=(-1, -2)) / (T * (T + 1))


def test_batch_size(d: int, T: int, P0: int) -> int:
    """Sequences per test batch: :data:`TEST_BATCH`, or fewer so that one batch's working set
    (X, X·Ŝ, X·W0 and the T×T arrays, ≈ :data:`TEST_BATCH_BYTES_PER_SEQ` × (T(3d + P0) + 40T²)
    bytes per sequence) stays under :data:`TEST_MEMORY` (issue 15: d = 2000 in a few GB)."""
    per_seq = TEST_BATCH_BYTES_PER_SEQ * (T * (3 * d + P0) + 40 * T * T)
    return int(max(1, min(TEST_BATCH, TEST_MEMORY // per_seq)))


def pretrain_test_losses(key, n: int, W0, S_hat, *, T: int, delta, attention: str, beta,
                         output: str) -> jax.Array:
    """Per-sample pre-training test losses on ``n`` fresh sequences: Ŝ against noisy and clean
    labels of S0* (M6), rows in the order of :data:`PRETRAIN_TEST_METRICS`. Shape (2, n)."""
    d = S_hat.shape[0]
    kX, kxi, _ = jax.random.split(key, 3)
    X = data.sequences(kX, n, T, d)
    G = model.gram(X)
    xi = data.score_noise(kxi, n, T, delta)
    h0 = model.score_factor(X, W0)
    A_pre = model.attention(model.score_dense(X, S_hat), attention, beta)
    loss = lambda At: model.per_sample_loss(A_pre, At, G, output)  # noqa: E731
    return jnp.stack([loss(model.attention(h0 + xi, attention, beta)),
                      loss(model.attention(h0, attention, beta))])


def finetune_test_losses(key, n: int, models: TestModels, *, T: int, delta_prime,
                         attention: str, beta, output: str) -> jax.Array:
    """Per-sample fine-tuning test losses on ``n`` fresh, unselected sequences (M13), rows in the
    order of :data:`FINETUNE_TEST_METRICS`: fine-tuned model against noisy / clean labels of S1*;
    frozen model c·Ŝ (w = 0) against noisy labels of S1*. Shape (3, n)."""
    d = models.S_hat.shape[0]
    kX, _, kxi1 = jax.random.split(key, 3)
    X = data.sequences(kX, n, T, d)
    G = model.gram(X)
    xi1 = data.score_noise(kxi1, n, T, delta_prime)
    h1 = model.score_factor(X, models.W0) + model.score_rank_one(X, models.w_star)
    B = model.score_dense(X, models.S_hat)
    sig = lambda H: model.attention(H, attention, beta)  # noqa: E731
    loss = lambda A, At: model.per_sample_loss(A, At, G, output)  # noqa: E731
    A_ft = sig(model.lora_score(models.lora, X, B, models.c))
    A1_noisy = sig(h1 + xi1)
    return jnp.stack([loss(A_ft, A1_noisy), loss(A_ft, sig(h1)), loss(sig(models.c * B), A1_noisy)])


def batched_moments(losses_of, key, n_batches) -> tuple[jax.Array, jax.Array]:
    """Sums of ``losses_of(k)`` (shape (r, batch)) and of their squares over ``n_batches``
    batches, batch b drawn with ``fold_in(key, b)``, in a ``fori_loop`` (``n_batches`` may be
    traced: no recompilation, and only one batch is in memory at a time). Returns two (r,) arrays."""
    rows = jax.eval_shape(losses_of, key).shape[0]

    def body(b, acc):
        losses = losses_of(jax.random.fold_in(key, b))
        return acc[0] + jnp.sum(losses, axis=1), acc[1] + jnp.sum(losses**2, axis=1)
    zero = jnp.zeros(rows)
    return jax.lax.fori_loop(0, n_batches, body, (zero, zero))


def choose_n_test(pilot_sum, pilot_sumsq, n_pilot: int, *, batch: int = TEST_BATCH,
                  rel_sem=TARGET_REL_SEM, n_max=N_TEST_MAX) -> int:
    """Number of test sequences (a multiple of ``batch``) so that every test error of every seed
    has sem < ``rel_sem`` × its value, from pilot moments (arrays (..., r))."""
    mean = np.asarray(pilot_sum) / n_pilot
    var = np.maximum(np.asarray(pilot_sumsq) / n_pilot - mean**2, 0.0) * n_pilot / (n_pilot - 1)
    need = 1.2 * var / (rel_sem * np.maximum(np.abs(mean), 1e-300)) ** 2  # 20% safety margin
    n = int(min(max(float(np.max(need)), batch), n_max))
    return -(-n // batch) * batch
