"""Channel data and jitted channel programs of the symmetric LoRA RS theory (THEORY.md T28–T32;
T34–T36 for reuse and selection): the frozen draws, the frozen setup of a (cfg, pre) pair, and the
per-sample prox/hat/test programs (split from :mod:`.lora`, which drives them)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from ..aot import cached_jit
from ..config import Config
from ..gaussian import goe, memoize_by_key, seed_key
from ..states import PretrainState
from . import noise, reuse, selection
from ..prox import jacobi_eigh, multistart_prox, sym_inverse
from ..solver_constants import COLUMN_FORM_MAX_T
from . import lora_columns


# ------------------------------------------------------------------------------------------------
# frozen draws and channel data
# ------------------------------------------------------------------------------------------------
def _draws(key, n: int, T: int, sampling: str = "mc") -> dict:
    """:func:`_unit_draws`, memoised by (key, n, T, sampling): a curve draws the same frozen
    numbers at every point (its MC repeats' keys are fixed); a new dict of the immutable arrays."""
    return dict(_unit_draws_memo(key, n, T, sampling))


@memoize_by_key(maxsize=16)
def _unit_draws_memo(key, n: int, T: int, sampling: str) -> dict:
    return _unit_draws(key, n, T, sampling)


def _unit_draws(key, n: int, T: int, sampling: str = "mc") -> dict:
    """Frozen common random numbers of T28 (unit variances); η is antithetic (second half −first).

    ``sampling = "qmc"``: the n/2 base points are a scrambled Sobol sequence (scipy.stats.qmc,
    Owen scrambling seeded from ``key``) in the 2T + 4K_T coordinates (ξ_t, η, and the Frobenius
    coordinates of B, R, ξ', G), mapped by the normal quantile: each point is exactly N(0, I)
    distributed, so the estimator is unbiased, and independent keys give independent randomised
    replicates, whose spread (the MC repeats) is the honest error."""
    n2 = (n + 1) // 2
    if sampling == "qmc":
        return _qmc_draws(key, n2, T)
    return _mc_draws(key, n2=n2, T=T)


@cached_jit(static_argnames=("n2", "T"))
def _mc_draws(key, n2: int, T: int) -> dict:
    """The pseudo-random draws of :func:`_unit_draws`, one program (op by op ≈ 15 programs)."""
    k = jax.random.split(key, 6)
    eta = jax.random.normal(k[1], (n2, T))
    return dict(xi_t=jnp.concatenate([x := jax.random.normal(k[0], (n2, T)), x]),
                eta=jnp.concatenate([eta, -eta]),
                B=jnp.concatenate([b := goe(k[2], (n2,), T), b]),
                R=jnp.concatenate([r := goe(k[3], (n2,), T), r]),
                Xp=jnp.concatenate([xp := goe(k[4], (n2,), T), xp]),
                G=jnp.concatenate([g := goe(k[5], (n2,), T), g]))


def _qmc_draws(key, n2: int, T: int) -> dict:
    from scipy.special import ndtri
    from scipy.stats import qmc

    K = T * (T + 1) // 2
    seed = int(jax.random.randint(key, (), 0, 2 ** 31 - 1))
    u = qmc.Sobol(d=2 * T + 4 * K, scramble=True, seed=seed).random(n2)
    g = jnp.asarray(ndtri(np.clip(u, 1e-16, 1 - 1e-16)))
    iu = np.triu_indices(T)
    scale = jnp.asarray(np.where(iu[0] == iu[1], np.sqrt(2.0), 1.0))   # GOE_T(1): diag var 2

    def sym(c):                                              # (n2, K) -> (n2, T, T)
        H = jnp.zeros((n2, T, T)).at[:, iu[0], iu[1]].set(c * scale)
        return H.at[:, iu[1], iu[0]].set(c * scale)

    xi, eta = g[:, :T], g[:, T:2 * T]
    mats = [sym(g[:, 2 * T + i * K:2 * T + (i + 1) * K]) for i in range(4)]
    two = lambda a: jnp.concatenate([a, a])
    return dict(xi_t=two(xi), eta=jnp.concatenate([eta, -eta]), B=two(mats[0]),
                R=two(mats[1]), Xp=two(mats[2]), G=two(mats[3]))


class _Setup:
    """Everything fixed for a given (cfg, pre): c, Δ's, and the channel arrays per key."""

    def __init__(self, cfg: Config, pre: PretrainState, *, reduced: bool = False,
                 delta_train: float | None = None, allow_general: bool = False,
                 c: float | None = None, sampling: str | None = None):
        ft = cfg.finetune
        if ft.lora != "symmetric" and not allow_general:
            raise NotImplementedError("finetune.lora = 'general' (u vᵀ, T33): solved by "
                                      "theory.finetuning.general_lora")
        if not ft.reuse:
            noise._check_selection(cfg)
        self.cfg, self.pre = cfg, pre
        self.T = cfg.model.T
        self.q0 = ft.q0star
        self.alpha = ft.alpha
        self.lam = ft.lam
        self.c = noise.resolve_c(cfg, pre) if c is None else float(c)
        # a zero backbone (Q = 0) is the limit a = 0, s_R² = Q0 (noise.backbone_projection)
        self.a, self.sR = noise.backbone_projection(float(pre.Q), float(pre.M), float(pre.Q0))
        self.dp = cfg.delta_prime
        self.delta_eff = noise.delta_eff(cfg, pre, self.c)
        self.linear = cfg.model.attention == "linear"
        # softmax on reused sequences: the non-Gaussian channel T34 (theory/finetuning/reuse.py)
        # partial reuse (M10): a fraction e of the channel samples carry the reused law, 1 − e the
        # fresh one (the output channel is an average over the n' sequences)
        self.e = cfg.reuse_e
        self.reused = self.e > 0
        self.reuse_t34 = self.reused and not self.linear and not reduced
        self.delta_eff_train_err = 0.0
        if delta_train is not None:
            self.delta_eff_train = float(delta_train)
        elif self.reuse_t34:
            ch = reuse.reuse_channel(cfg, pre, seed_key(cfg.theory.seed + 1),
                                     cfg.theory.mc_samples)
            m2, m2_err = reuse.residual_second_moment(ch, self.c)
            self.delta_eff_train = self.e * m2 + (1 - self.e) * self.delta_eff
            self.delta_eff_train_err = self.e * m2_err
        else:
            self.delta_eff_train = noise.delta_eff_train(cfg, pre, self.c)
        self.reduced = reduced
        if reduced and not self.linear:
            raise ValueError("the reduced solver is for attention = 'linear' only")
        self.selection = ((not ft.reuse) and cfg.rho < 1 and not selection.is_random(
            ft.selection, noise.selection_operating_point(cfg, pre, self.c)[1]))
        self.n = cfg.theory.mc_samples
        self.kind = "reduced" if reduced else ("linear" if self.linear else "softmax")
        self.beta = cfg.model.beta
        sampling = cfg.theory.draws if sampling is None else sampling     # theory.draws
        if sampling not in ("mc", "qmc"):
            raise ValueError(f"sampling = {sampling!r}: must be 'mc' or 'qmc'")
        self.sampling = sampling

    def data(self, key) -> dict:
        """Per-sample channel arrays (independent of q, m, v)."""
        d = _draws(key, self.n, self.T, self.sampling)
        Q = self.pre.Q
        scalars = (float(Q), float(self.c), float(self.a), float(self.sR), float(self.dp))
        fresh = _fresh_arrays(d["B"], d["R"], d["Xp"], *scalars)
        Bt = fresh["Bt"]
        if self.reduced:
            Sst = jnp.zeros_like(Bt)
            Htea = jnp.sqrt(self.delta_eff_train) * d["G"]
        elif self.reused:
            if self.reuse_t34:                 # softmax on reused sequences (T34)
                ch = reuse.reuse_channel(self.cfg, self.pre, jax.random.fold_in(key, 11), self.n)
                Sst, Htea = self.c * ch["B_hat"], ch["H_star"] + ch["noise"]
            else:                              # linear (T35): residual GOE_T(Δ_eff,1)
                Sst = jnp.zeros_like(Bt)
                Htea = jnp.sqrt(noise.delta_eff_reused(self.cfg, self.pre, self.c)) * d["G"]
            if self.e < 1:                     # partial reuse: the first e of each antithetic half
                half = (Bt.shape[0] + 1) // 2
                keep = (jnp.arange(Bt.shape[0]) % half) < round(self.e * half)
                Sst = jnp.where(keep[:, None, None], Sst, fresh["St"])
                Htea = jnp.where(keep[:, None, None], Htea, fresh["Htrain"])
        elif self.selection:                                  # T36: the kept law of B
            scale, beta = noise.selection_operating_point(self.cfg, self.pre, self.c)
            kept = _fresh_arrays(selection.selected_unit_B(
                self.cfg.finetune.selection, jax.random.fold_in(key, 7), self.n, self.T,
                self.cfg.rho, scale=scale, beta=beta, B_unit=d["B"]), d["R"], d["Xp"], *scalars)
            Sst, Htea = kept["St"], kept["Htrain"]
        else:
            Sst, Htea = fresh["St"], fresh["Htrain"]
        # the test arrays are the fresh, unselected ones (T32)
        return dict(xi_t=d["xi_t"], eta=d["eta"], Sst=Sst, Htea=Htea, St=fresh["St"],
                    Ht=fresh["Ht"], Nt=fresh["Nt"])


@cached_jit
def _fresh_arrays(B, R, Xp, Q, c, a, sR, dp) -> dict:
    """Fresh-sequence channel arrays of T28/T32 from the unit draws B (or the kept ones of T36),
    one program (numbers traced: no recompilation across points): B̃ = √Q B, the student's S = cB̃, the teacher's
    H = aB̃ + √s_R R, the label noise N = √(Δ′/2) ξ′ and H + N (training teacher, fresh)."""
    Bt = jnp.sqrt(Q) * B
    Ht = a * Bt + jnp.sqrt(sR) * R
    Nt = jnp.sqrt(dp / 2) * Xp
    return dict(Bt=Bt, St=c * Bt, Ht=Ht, Nt=Nt, Htrain=Ht + Nt)


# ------------------------------------------------------------------------------------------------
# per-sample channel (jitted, vmapped)
# ------------------------------------------------------------------------------------------------
#: the per-sample means the hats (T30) and the metric row (train error) read: the units of
#: :mod:`theory.engine.linear_response`
UNIT_KEYS = ("f2", "fxi", "feta", "divw", "divz", "dq", "train")


def antithetic_units(a):
    """Per-sample values (axis 0, the order of :func:`_unit_draws`) averaged over the antithetic
    pairs (i, i + n/2): the independent units of the MC draws."""
    a = np.asarray(a, float)
    h = a.shape[0] // 2
    return 0.5 * (a[:h] + a[h:2 * h])


def start_target(kind: str, beta: float, zeta, Sst, Htea, q0):
    """Target A of the LoRA score zzᵀ − qI, minus qI, from which the prox multistart takes its
    spectral starts (T29): exact for linear σ (Htea − Sst + ζζᵀ − q0 I); for softmax the
    symmetrised difference of row-centred log σ(teacher) and the row-centred student score (a
    start only). Shared by the symmetric (T28) and general (T33) channels."""
    eye = jnp.eye(zeta.shape[-1])
    if kind == "softmax":
        Y = jax.nn.softmax(beta * (Htea + jnp.outer(zeta, zeta) - q0 * eye), axis=-1)
        L = jnp.log(Y) / beta
        X = (L - L.mean(-1, keepdims=True)) - (Sst - Sst.mean(-1, keepdims=True))
        return 0.5 * (X + X.T)
    return Htea - Sst + jnp.outer(zeta, zeta) - q0 * eye


def _sigma(kind: str, beta: float):
    if kind == "softmax":
        return lambda H: jax.nn.softmax(beta * H, axis=-1)
    return lambda H: H


@functools.lru_cache(maxsize=None)
def _channel_fn(kind: str, beta: float, T: int, explicit_q: bool):
    """Jitted map (x = (q, m, v), q0, warm z, data) -> (sample means of the hat ingredients, ẑ)."""
    sig = _sigma(kind, beta)
    eye = jnp.eye(T)

    def teacher(zeta, Htea, q0):                                        # σ(H* + ζζᵀ − q0 I)
        return sig(Htea + jnp.outer(zeta, zeta) - q0 * eye)

    def loss(z, q, zeta, Sst, Htea, q0):                              # ℓ'(z; q)  (T28)
        P = sig(Sst + jnp.outer(z, z) - q * eye)
        return jnp.sum((P - teacher(zeta, Htea, q0)) ** 2)

    # The prox works on p = (ω, v, q, S, Y) with the teacher Y = σ(·) computed once per sample.
    def obj(z, p):
        omega, v, q, Sst, Y = p
        P = sig(Sst + jnp.outer(z, z) - q * eye)
        return jnp.sum((z - omega) ** 2) / (2 * v) + jnp.sum((P - Y) ** 2)

    A_base = functools.partial(start_target, kind, beta)
    # T ≤ COLUMN_FORM_MAX_T: the prox and the hats column-wise (lora_columns, the same
    # functions unrolled over the T coordinates); the per-sample forms here above it
    columns = T <= COLUMN_FORM_MAX_T
    obj_columns = lora_columns.objective(kind, beta)
    grad_hess_columns = lora_columns.grad_hess(kind, beta)
    hat_columns = lora_columns.hat_terms(kind, beta)     # not for "reduced" (below)

    def grad_hess(z, p):
        """Analytic ∇_z and ∇²_z of F = |z − ω|²/(2v) + ℓ'(z; q) (T29).

        ℓ' = Σ_i ℓ_i(M_i·), M = S + zzᵀ − qI, rows independent. With G = ∂ℓ'/∂M and the row
        Hessians K⁽ⁱ⁾ = ∂²ℓ_i/∂M_i·²: ∇ℓ' = (G + Gᵀ)z and
        ∇²ℓ' = G + Gᵀ + diag(zᵀK⁽ᵃ⁾z) + [z_a (K⁽ᵃ⁾z)_b] + [z_b (K⁽ᵇ⁾z)_a] + Σ_i z_i² K⁽ⁱ⁾.
        Linear σ: G = 2(M − Y), K⁽ⁱ⁾ = 2I. Softmax rows p = softmax(βm), r = p − y,
        J = diag p − ppᵀ: G_i· = 2β J r = 2β p ⊙ (r − r·p) and
        K = 2β²[J² + Σ_k r_k p_k (e_k − p)(e_k − p)ᵀ − (r·p) J]."""
        omega, v, q, Sst, Y = p
        M = Sst + jnp.outer(z, z) - q * eye
        if kind == "softmax":
            P = jax.nn.softmax(beta * M, axis=-1)
            R = P - Y
            rp = jnp.sum(R * P, axis=-1, keepdims=True)
            G = 2 * beta * P * (R - rp)
            J = P[:, :, None] * eye[None] - P[:, :, None] * P[:, None, :]
            E = eye[None, :, :] - P[:, None, :]                      # E[i, k] = e_k − p_i
            K = 2 * beta ** 2 * (jnp.einsum("ijk,ikl->ijl", J, J)
                                 + jnp.einsum("ik,ikj,ikl->ijl", R * P, E, E)
                                 - rp[:, :, None] * J)
            Kz = jnp.einsum("ijl,l->ij", K, z)
            zKz = Kz @ z
            zK = z[:, None] * Kz
            Hl = G + G.T + jnp.diag(zKz) + zK + zK.T + jnp.einsum("i,ijl->jl", z * z, K)
        else:
            G = 2 * (M - Y)
            Hl = G + G.T + 4 * (jnp.dot(z, z) * eye + jnp.outer(z, z))
        return (z - omega) / v + (G + G.T) @ z, eye / v + Hl

    def prep(x, q0, warm, xi_t, eta, Sst, Htea):
        q, m, v = x[0], x[1], x[2]
        sq = jnp.sqrt(q)
        sp = jnp.sqrt(jnp.maximum(q0 - jnp.where(q > 0, m * m / jnp.where(q > 0, q, 1.0), 0.0),
                                  0.0))
        omega = sq * xi_t
        zeta = jnp.where(q > 0, m / jnp.where(q > 0, sq, 1.0), 0.0) * xi_t + sp * eta
        A = A_base(zeta, Sst, Htea, q0) + q * eye
        return omega, zeta, A

    def hats_one(z, x, q0, xi_t, eta, omega, zeta, Sst, Htea):
        q, v = x[0], x[2]
        p = (omega, v, q, Sst, teacher(zeta, Htea, q0))
        f = (z - omega) / v
        Hinv = sym_inverse(grad_hess(z, p)[1])
        if kind == "reduced":
            Afull = Htea + jnp.outer(zeta, zeta) - q0 * eye + q * eye
            divz = 4.0 / v * (jnp.dot(zeta, z) * jnp.trace(Hinv) + z @ Hinv @ zeta)
            dq = 2.0 * jnp.trace(Afull - jnp.outer(z, z))
            train = jnp.sum((jnp.outer(z, z) - Afull) ** 2)
        else:
            gz = jax.grad(loss, argnums=0)
            Jz = jax.jacfwd(gz, argnums=2)(z, q, zeta, Sst, Htea, q0)     # ∂_ζ ∇_z ℓ'
            divz = -jnp.trace(Hinv @ Jz) / v
            dq = jax.grad(loss, argnums=1)(z, q, zeta, Sst, Htea, q0)
            train = loss(z, q, zeta, Sst, Htea, q0)
        divw = (jnp.trace(Hinv) / v - T) / v
        at = jnp.sum((eye - Hinv / v) ** 2)
        F = jnp.sum((z - omega) ** 2) / (2 * v) + train
        return dict(f2=jnp.dot(f, f), fxi=jnp.dot(f, xi_t), feta=jnp.dot(f, eta), divw=divw,
                    divz=divz, dq=dq if explicit_q else 0.0 * dq, train=train, F=F, at=at)

    @cached_jit(static_argnames=("full",), tag=repr((kind, beta, T, explicit_q)))
    def run(x, q0, warm, data, full=True):
        """``full``: all starts (ω, ±e_max, warm); otherwise the warm start only (cheap polish
        during the iteration; the flags are then meaningless and not used)."""
        xi_t, eta, Sst, Htea = data["xi_t"], data["eta"], data["Sst"], data["Htea"]
        omega, zeta, A = jax.vmap(prep, in_axes=(None, None, 0, 0, 0, 0, 0))(
            x, q0, warm, xi_t, eta, Sst, Htea)
        if full:
            lam, U = jacobi_eigh(A)
            e = U[:, :, -1] * jnp.sqrt(jnp.maximum(lam[:, -1], 0.0))[:, None]
            starts = jnp.stack([omega, e, -e, warm], axis=1)
        else:
            starts = warm[:, None, :]
        n = omega.shape[0]
        Y = jax.vmap(teacher, in_axes=(0, 0, None))(zeta, Htea, q0)
        p = (omega, jnp.full((n,), x[2]), jnp.full((n,), x[0]), Sst, Y)
        if columns:                          # the same prox, column-wise (lora_columns)
            r = multistart_prox(obj_columns, starts, p, grad_hess=grad_hess_columns,
                                columns=True)
        else:
            r = multistart_prox(obj, starts, p, grad_hess=grad_hess)
        z = r["z"]
        if columns and kind != "reduced":
            tr = lambda a: jnp.moveaxis(a, 0, -1)
            outs = hat_columns(tr(z), tr(omega), x[2], x[0], tr(Sst), tr(Y), tr(zeta), tr(xi_t),
                               tr(eta))
            if not explicit_q:
                outs["dq"] = 0.0 * outs["dq"]
        else:
            outs = jax.vmap(hats_one, in_axes=(0, None, None, 0, 0, 0, 0, 0, 0))(
                z, x, q0, xi_t, eta, omega, zeta, Sst, Htea)
        outs.update(nonconvex=r["nonconvex"].astype(jnp.float64),
                    multimin=r["multimin"].astype(jnp.float64),
                    unconv=(~r["converged"]).astype(jnp.float64))
        means = {k: jnp.mean(v) for k, v in outs.items()}
        means["newton_iters"] = r["iters"]
        # per-sample hat ingredients: the units of the linear-response MC error (engine)
        means["samples"] = {k: outs[k] for k in UNIT_KEYS}
        return means, z

    return run


@functools.lru_cache(maxsize=None)
def _test_fn(kind: str, beta: float, T: int):
    """Jitted per-sample fresh-sequence test errors (T32): noisy and clean."""
    sig = _sigma("softmax" if kind == "softmax" else "linear", beta)
    eye = jnp.eye(T)

    @cached_jit(tag=repr((kind, beta, T)))
    def run(q, m, q0, xi_t, eta, St, Ht, Nt):
        sq = jnp.sqrt(q)
        sp = jnp.sqrt(jnp.maximum(q0 - jnp.where(q > 0, m * m / jnp.where(q > 0, q, 1.0), 0.0),
                                  0.0))
        om = sq * xi_t
        ze = jnp.where(q > 0, m / jnp.where(q > 0, sq, 1.0), 0.0) * xi_t + sp * eta
        P = sig(St + om[:, :, None] * om[:, None, :] - q * eye)
        tea = Ht + ze[:, :, None] * ze[:, None, :] - q0 * eye
        return (jnp.sum((P - sig(tea + Nt)) ** 2, axis=(-1, -2)),
                jnp.sum((P - sig(tea)) ** 2, axis=(-1, -2)))

    return run


