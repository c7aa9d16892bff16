"""RS theory of general rank-one LoRA ``S = cŜ + u vᵀ/√d`` (MODEL.md M12; THEORY.md T33).

Public API
----------
``solve(cfg, pre, *, init=None, repeats=None) -> FinetuneState``   global RS fixed point.
``linear_test_error(cfg, pre, c, Qw, mw)``                          T33 closed form (linear σ).

Equations (re-derived from T28–T31 with K = 2 vectors W = [u, v]; notation of THEORY.md)
----------------------------------------------------------------------------------------
Order parameters: Q_W = WᵀW/d (2×2: q_uu, q_uv, q_vv), m_W = Wᵀw*/d ∈ R², response V_W (2×2) and
conjugates Q̂_W, m̂_W, V̂_W. Token fields (ω_a, ν_a) = Ω_a ∈ R² and the spike field ζ_a, jointly
Gaussian with the Gram matrix G of (w*, u, v)/√d: (ζ_a, ω_a, ν_a) = L (η_a, ξ_a0, ξ_a1), L Lᵀ = G
lower-triangular, η, ξ iid N(0, 1) (:func:`.general_gram.factor`; finite where u ∥ v, Q of rank one).
Loss (non-symmetric student score): ℓ′(Z; q_uv) = ‖σ(cB + Z_u Z_vᵀ − q_uv I) − σ(H + ζζᵀ − q0*I)‖²_F,
Z ∈ R^{T×2}, Z_u, Z_v its columns; frozen B, H, R, ξ′ exactly as in :mod:`.lora` (T28).
Prox: Ẑ = argmin_Z Σ_a (Z_a − Ω_a)ᵀ V_W⁻¹ (Z_a − Ω_a)/2 + ℓ′(Z), f_a = V_W⁻¹(Ẑ_a − Ω_a).
Hats (T30 with matrices; Σ over tokens a):
  Q̂_W = α′ E Σ_a f_a f_aᵀ,
  m̂_W = α′ E Σ_a ∂_{ζ_a} f_a,
  V̂_W = −α′ sym E Σ_a ∂_{Ω_a} f_a + α′ E[∂ℓ′/∂q_uv] (off-diagonal entries only)
        (Stein forms: (E Σ_a ∂_ζ f_a, E Σ_a ∂_Ω f_a) = E Σ_a f_a (η_a, ξ_a0, ξ_a1) · L⁻¹, from
         E[g e_k] = Σ_j E[∂g/∂φ_j] L_jk for φ = L e; :func:`_hats`).
  The explicit term is 2α′ ∂Ψ′/∂Q_W restricted to the loss's dependence on q_uv; with the
  symmetric-matrix convention dΨ = Tr(G dQ) it sits on the off-diagonal entries (q_uu, q_vv do not
  enter ℓ′). Derivative forms: ∂Ẑ/∂Ω = H⁻¹𝕄, ∂f/∂Ω = 𝕄(H⁻¹𝕄 − I), ∂Ẑ/∂ζ = −H⁻¹ ∂_ζ∇_Zℓ′,
  𝕄 = I_T ⊗ V_W⁻¹, H = 𝕄 + ∇²_Zℓ′(Ẑ).
Prior (penalty λ′(|u|² + |v|²)/2): V_W = (λ′I + V̂_W)⁻¹, m_W = q0* V_W m̂_W,
Q_W = V_W (q0* m̂_W m̂_Wᵀ + Q̂_W) V_W.
Outputs (MODEL.md M14): q = √(q_uu q_vv), m = sign(m_u m_v)√|m_u m_v|, overlap = |m|/√(q q0*);
objective = α′·train + λ′(q_uu + q_vv)/2; the test error on fresh sequences by MC of the T32
formula with the general score, or (linear σ) the exact Wick form of T33:
T(T+1)(Δ_eff + q0*²) + T² q_uu q_vv + T q_uv² − 2T(T+1) m_u m_v.
RS stability: λ_AT = α′ E‖I − H⁻¹𝕄‖²_F < 1 (the scalar form of :mod:`.lora` with v → V_W).
Symmetries: (u, v) → (−u, −v) (m_W → −m_W); u ↔ v. The penalty breaks (cu, v/c): |u| = |v| at
stationarity, so q_uu = q_vv at the fixed point (checked in the tests).

Solve protocol (§9): :mod:`theory.engine` on the channel :class:`GeneralLoraChannel` (the same
driver as the symmetric channel: phases, Stein retry, branch search, MC repeats, flags).

Scope: fresh sequences, random or ``smallest_score`` selection (the frozen-background law of T36 is
unchanged); ``reuse = true`` with general LoRA is not covered (raises, as for softmax reuse).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from .. import engine
from ..config import Config
from ..gaussian import seed_key
from ..solver_constants import PIVOT_FLOOR, RS_DOUBT_MULTIMIN, STEIN_THRESHOLD
from ..states import FinetuneState, PretrainState
from . import general_gram as gram, noise
from .lora import LoraBranches, _aggregate, _Setup
from .lora_channel import start_target
from ..prox import jacobi_eigh, multistart_prox, sym_inverse

__all__ = ["solve", "linear_test_error", "GeneralLoraChannel"]


# ------------------------------------------------------------------------------------------------
# jitted channel
# ------------------------------------------------------------------------------------------------
def _token_fields(L, Xi, eta):
    """(ζ, Ω) of every token from the iid draws (η, Ξ) = (η, ξ₀, ξ₁): (ζ, ω, ν) = L (η, ξ₀, ξ₁)."""
    fields = jnp.concatenate([eta[..., None], Xi], axis=-1) @ L.T        # (N, T, 3)
    return fields[..., 0], fields[..., 1:]


@functools.lru_cache(maxsize=None)
def _channel_fn(kind: str, beta: float, T: int):
    sig = (lambda H: jax.nn.softmax(beta * H, axis=-1)) if kind == "softmax" else (lambda H: H)
    eye = jnp.eye(T)

    def loss(z, quv, zeta, Sst, Htea, q0):                  # ℓ′(Z; q_uv), z = Z.reshape(2T)
        Z = z.reshape(T, 2)
        Y = sig(Htea + jnp.outer(zeta, zeta) - q0 * eye)
        P = sig(Sst + jnp.outer(Z[:, 0], Z[:, 1]) - quv * eye)
        return jnp.sum((P - Y) ** 2)

    def obj(z, p):
        omega, Vinv, quv, zeta, Sst, Htea, q0 = p
        dz = z.reshape(T, 2) - omega
        return 0.5 * jnp.sum((dz @ Vinv) * dz) + loss(z, quv, zeta, Sst, Htea, q0)

    A_base = functools.partial(start_target, kind, beta)

    def hats_one(z, Xi, eta, omega, zeta, Sst, Htea, Vinv, quv, q0):
        p = (omega, Vinv, quv, zeta, Sst, Htea, q0)
        f = (z.reshape(T, 2) - omega) @ Vinv                        # (T, 2)
        H = jax.hessian(obj)(z, p)
        Hinv = sym_inverse(H)
        Mbig = jnp.kron(eye, Vinv)
        dfdO = Mbig @ (Hinv @ Mbig - jnp.eye(2 * T))                # ∂f/∂Ω (2T × 2T)
        divw = jnp.einsum("aiaj->ij", dfdO.reshape(T, 2, T, 2))     # Σ_a ∂f_a/∂Ω_a
        Jz = jax.jacfwd(jax.grad(loss, argnums=0), argnums=2)(z, quv, zeta, Sst, Htea, q0)
        dfdz = -(Mbig @ Hinv @ Jz)                                  # ∂f/∂ζ (2T × T)
        divz = jnp.einsum("aia->i", dfdz.reshape(T, 2, T))          # Σ_a ∂f_a/∂ζ_a
        train = loss(z, quv, zeta, Sst, Htea, q0)
        return dict(ff=f.T @ f, fxi=f.T @ Xi, feta=f.T @ eta, divw=divw, divz=divz,
                    dq=jax.grad(loss, argnums=1)(z, quv, zeta, Sst, Htea, q0), train=train,
                    F=obj(z, p), at=jnp.sum((jnp.eye(2 * T) - Hinv @ Mbig) ** 2))

    @functools.partial(jax.jit, static_argnames=("full",))
    def run(L, Vinv, quv, q0, warm, data, full=True):
        """L the Gram factor (:func:`.general_gram.factor`); returns the sample means of the hat ingredients
        and Ẑ (N, 2T)."""
        Xi, eta, Sst, Htea = data["Xi"], data["eta"], data["Sst"], data["Htea"]
        zeta, omega = _token_fields(L, Xi, eta)
        n = omega.shape[0]
        if full:
            A = jax.vmap(A_base, in_axes=(0, 0, 0, None))(zeta, Sst, Htea, q0) + quv * eye
            lam, U = jacobi_eigh(A)
            top = U[:, :, -1] * jnp.sqrt(jnp.maximum(lam[:, -1], 0.0))[:, None]
            bot = U[:, :, 0] * jnp.sqrt(jnp.maximum(-lam[:, 0], 0.0))[:, None]
            st = [omega, jnp.stack([top, top], -1), jnp.stack([-top, -top], -1),
                  jnp.stack([bot, -bot], -1), warm.reshape(n, T, 2)]
            starts = jnp.stack([s.reshape(n, 2 * T) for s in st], axis=1)
        else:
            starts = warm[:, None, :]
        p = (omega, jnp.broadcast_to(Vinv, (n, 2, 2)), jnp.full((n,), quv), zeta, Sst, Htea,
             jnp.full((n,), q0))
        r = multistart_prox(obj, starts, p)
        z = r["z"]
        outs = jax.vmap(hats_one, in_axes=(0, 0, 0, 0, 0, 0, 0, None, None, None))(
            z, Xi, eta, omega, zeta, Sst, Htea, Vinv, quv, q0)
        outs.update(nonconvex=r["nonconvex"].astype(jnp.float64),
                    multimin=r["multimin"].astype(jnp.float64),
                    unconv=(~r["converged"]).astype(jnp.float64))
        return {k: jnp.mean(v, axis=0) for k, v in outs.items()}, z

    return run


@functools.lru_cache(maxsize=None)
def _test_fn(kind: str, beta: float, T: int):
    sig = (lambda H: jax.nn.softmax(beta * H, axis=-1)) if kind == "softmax" else (lambda H: H)
    eye = jnp.eye(T)

    @jax.jit
    def run(L, quv, q0, Xi, eta, St, Ht, Nt):
        zeta, omega = _token_fields(L, Xi, eta)
        P = sig(St + omega[:, :, 0, None] * omega[:, None, :, 1] - quv * eye)
        tea = Ht + zeta[:, :, None] * zeta[:, None, :] - q0 * eye
        return (jnp.sum((P - sig(tea + Nt)) ** 2, axis=(-1, -2)),
                jnp.sum((P - sig(tea)) ** 2, axis=(-1, -2)))

    return run


# ------------------------------------------------------------------------------------------------
# setup, data, one branch
# ------------------------------------------------------------------------------------------------
def _data(S: _Setup, key) -> dict:
    """The frozen draws of :class:`.lora._Setup` plus a second token field (Ξ ∈ R^{T×2})."""
    base = S.data(key)
    n = base["xi_t"].shape[0]
    n2 = (n + 1) // 2
    x2 = jax.random.normal(jax.random.fold_in(key, 101), (n2, S.T))
    second = jnp.concatenate([x2, x2])[:n]
    Xi = jnp.stack([base["xi_t"], second], axis=-1)                 # (N, T, 2)
    return dict(Xi=Xi, eta=base["eta"], Sst=base["Sst"], Htea=base["Htea"], St=base["St"],
                Ht=base["Ht"], Nt=base["Nt"])


def _hats(S: _Setup, means: dict, Q, m, force_stein: bool = False):
    """(T33) matrix hats: derivative forms, or the Stein forms when the multi-minimum fraction is
    ≥ STEIN_THRESHOLD or ``force_stein`` (the engine's retry of a stalled iteration).

    Stein forms in the Gram factor L (:func:`.general_gram.factor`), fields φ = (ζ, ω, ν) = L e with
    e = (η, ξ₀, ξ₁) iid N(0, 1): E[f e_k] = Σ_j E[∂f/∂φ_j] L_jk, so
    (E Σ_a ∂_ζ f_a, E Σ_a ∂_Ω f_a) = E Σ_a f_a eᵀ · L⁻¹. They need an invertible L (u ∦ v and
    u ∦ w*): on the u ∥ v boundary the derivative forms are used."""
    al = S.alpha
    Qhat = al * gram.sym(np.asarray(means["ff"]))
    L = gram.factor(Q, m, S.q0)
    stein = (force_stein or float(means["multimin"]) >= STEIN_THRESHOLD) and \
        min(L[1, 1], L[2, 2]) > PIVOT_FLOOR
    if stein:
        fe = np.column_stack([np.asarray(means["feta"]), np.asarray(means["fxi"])])   # (2, 3)
        D = fe @ np.linalg.inv(L)
        mhat, EdfdO = al * D[:, 0], D[:, 1:]
    else:
        mhat = al * np.asarray(means["divz"])
        EdfdO = np.asarray(means["divw"])
    Vhat = -al * gram.sym(EdfdO)
    explicit = al * float(means["dq"])
    Vhat = Vhat + np.array([[0.0, explicit], [explicit, 0.0]])
    return Qhat, mhat, Vhat, stein


def _prior(S: _Setup, Qhat, mhat, Vhat):
    """T33 prior: V = (λ′I + V̂)⁻¹, m = q0* V m̂, Q = V(q0* m̂m̂ᵀ + Q̂)V."""
    A = S.lam * np.eye(2) + gram.sym(Vhat)
    w, U = np.linalg.eigh(A)
    V = (U / np.maximum(w, 1e-10)) @ U.T
    return V, S.q0 * V @ mhat, V @ (S.q0 * np.outer(mhat, mhat) + Qhat) @ V


class GeneralLoraChannel(LoraBranches):
    """General rank-one LoRA channel (T33) for :func:`theory.engine.solve`: x = (q_uu, q_uv, q_vv,
    m_u, m_v, V_uu, V_uv, V_vv), hats (Q̂_W, m̂_W, V̂_W), the jitted multistart prox above."""

    stage = "fine-tuning"

    def __init__(self, S: _Setup):
        self.S = S
        self._run = _channel_fn("linear" if S.linear else "softmax", S.beta, S.T)

    def draws(self, key):
        return _data(self.S, key)

    def cold_warm(self, data):
        return jnp.zeros((self.S.n, 2 * self.S.T))

    def sanitize(self, x):
        return gram.pack(*gram.sanitize(x, self.S.q0))

    def means(self, x, warm, data, full):
        Q, m, V = gram.unpack(x)
        return self._run(jnp.asarray(gram.factor(Q, m, self.S.q0)), jnp.asarray(np.linalg.inv(V)),
                         float(Q[0, 1]), self.S.q0, warm, data, full=full)

    def to_iter(self, x):
        """Iteration coordinates y = (L₁₀, L₁₁, L₂₀, L₂₁, L₂₂, V_uu, V_uv, V_vv) of x balanced
        (:func:`.general_gram.balance`): the Gram factor of (w*, u, v) (:func:`.general_gram.factor`).

        Two slow directions of the (Q, m, V) iteration, measured at the linear test point
        (α′ = 3, λ′ = 0.5): (i) the fixed point has u ∥ v, Q of rank one, on the boundary of the
        (Q, m) coordinates, where the smallest eigenvalue of Q shrank ≈ 7 % per step and the
        Anderson extrapolations left the cone; in y it is the regular point L₂₂ = 0 (the map is
        even in L₂₂). (ii) The gauge (u, v) → (cu, v/c), which only the penalty breaks: the
        imbalance q_uu − q_vv contracted ≈ 2 % per damped step, so the residual test stopped
        with q_uu/q_vv − 1 ≈ 2e-3. Every iterate is therefore balanced: the iteration runs on
        the slice q_uu = q_vv, which contains the fixed point (stationarity along the gauge orbit
        is the balance, the rest of the free energy being invariant on it) and cuts every orbit
        once; that the balanced fixed point is one of the unbalanced map is checked in
        tests/test_theory_general_lora.py."""
        Q, m, V = gram.balance(*gram.unpack(np.asarray(x, float)))
        L = gram.factor(Q, m, self.S.q0)
        return np.array([L[1, 0], L[1, 1], L[2, 0], L[2, 1], L[2, 2], V[0, 0], V[0, 1], V[1, 1]])

    def from_iter(self, y):
        """Inverse of :meth:`to_iter` (any sign of the pivots: the same Gram matrix)."""
        y = np.asarray(y, float)
        L = np.array([[math.sqrt(self.S.q0), 0.0, 0.0], [y[0], y[1], 0.0], [y[2], y[3], y[4]]])
        return gram.from_factor(L, np.array([[y[5], y[6]], [y[6], y[7]]]))

    def hats(self, x, means, force_stein):
        Q, m, _ = gram.unpack(x)
        *h, stein = _hats(self.S, means, Q, m, force_stein)
        return tuple(h), stein

    def prior(self, hats):
        Vn, mn, Qn = _prior(self.S, *hats)
        return gram.pack(Qn, mn, Vn)

    def record(self, x, hats, means, stein):
        """M14 outputs at a solved point: q = √(q_uu q_vv), m = sign(m_u m_v)√|m_u m_v|, objective
        α'·train + λ'(q_uu + q_vv)/2, λ_AT and the prox fractions."""
        S = self.S
        Q, m, V = gram.unpack(x)
        Qhat, mhat, Vhat = hats
        al, lam, q0 = S.alpha, S.lam, S.q0
        train = float(means["train"])
        q = math.sqrt(Q[0, 0] * Q[1, 1])
        prod = float(m[0] * m[1])
        m_eff = math.copysign(math.sqrt(abs(prod)), prod)
        lam_at = al * float(means["at"])
        frac_multimin = float(means["multimin"])
        return dict(Q=Q, mW=m, V=V, Qhat=Qhat, mhat=mhat, Vhat=Vhat, q=q, m=m_eff,
                    v=float(np.trace(V) / 2), train=train,
                    objective=al * train + lam * (Q[0, 0] + Q[1, 1]) / 2,
                    overlap=(abs(m_eff) / math.sqrt(q * q0) if q > 0 else 0.0),
                    lambda_AT=lam_at, frac_nonconvex=float(means["nonconvex"]),
                    frac_multimin=frac_multimin, stein_hats=stein,
                    rs_doubtful=bool(lam_at >= 1.0 or frac_multimin > RS_DOUBT_MULTIMIN))

    def outputs(self, branch, data):
        r = branch.record
        t, tc, se, sec = _test_errors(self.S, data, r["Q"], r["mW"])
        row = dict(q=r["q"], m=r["m"], overlap=r["overlap"], train_error=r["train"],
                   objective=r["objective"], test_error=t, test_error_clean=tc)
        if not self.S.linear:
            row["_se"] = dict(test_error=se, test_error_clean=sec)
        return row



def linear_test_error(cfg: Config, pre: PretrainState, c: float, Q, m) -> float:
    """(T33) T(T+1)(Δ_eff(c) + q0*²) + T² q_uu q_vv + T q_uv² − 2T(T+1) m_u m_v (Wick)."""
    T, q0 = cfg.model.T, cfg.finetune.q0star
    return float(T * (T + 1) * (noise.delta_eff(cfg, pre, c) + q0 * q0) + T * T * Q[0, 0] * Q[1, 1]
                 + T * Q[0, 1] ** 2 - 2 * T * (T + 1) * m[0] * m[1])


def _test_errors(S: _Setup, data, Q, m):
    if S.linear:
        t = linear_test_error(S.cfg, S.pre, S.c, Q, m)
        return t, t - S.T * (S.T + 1) * S.dp / 2, 0.0, 0.0
    e, ec = _test_fn("softmax", S.beta, S.T)(jnp.asarray(gram.factor(Q, m, S.q0)), float(Q[0, 1]),
                                             S.q0, data["Xi"], data["eta"], data["St"],
                                             data["Ht"], data["Nt"])
    e, ec = np.asarray(e), np.asarray(ec)
    n = e.size
    return (float(e.mean()), float(ec.mean()), float(e.std(ddof=1) / math.sqrt(n)),
            float(ec.std(ddof=1) / math.sqrt(n)))


def _initial_points(S: _Setup):
    q0 = S.q0
    v0 = 1.0 / (S.lam + 4.0 * S.alpha * S.T + 1.0)
    V0 = v0 * np.eye(2)
    Qi = q0 * np.array([[1.0, 0.9], [0.9, 1.0]])
    return [("informative", gram.pack(Qi, 0.85 * q0 * np.ones(2), V0)),
            ("uninformative", gram.pack(0.5 * q0 * np.eye(2), 1e-3 * q0 * np.ones(2), V0))]


def _record(r: dict) -> dict:
    keep = ("q", "m", "v", "overlap", "objective", "train", "lambda_AT", "frac_nonconvex",
            "frac_multimin", "stein_hats", "rs_doubtful", "converged", "iterations", "label",
            "start")
    out = {k: r[k] for k in keep}
    out.update(q_uu=float(r["Q"][0, 0]), q_uv=float(r["Q"][0, 1]), q_vv=float(r["Q"][1, 1]),
               m_u=float(r["mW"][0]), m_v=float(r["mW"][1]), V_uu=float(r["V"][0, 0]),
               V_uv=float(r["V"][0, 1]), V_vv=float(r["V"][1, 1]))
    return out


def solve(cfg: Config, pre: PretrainState, *, init=None, repeats: int | None = None) -> FinetuneState:
    """General-LoRA RS fixed point (T33) and its outputs; branches, selection and MC repeats as
    in :func:`.lora.solve` (:func:`theory.engine.solve`). ``init``: an 8-vector (q_uu, q_uv, q_vv,
    m_u, m_v, V_uu, V_uv, V_vv)."""
    if cfg.finetune.reuse:
        raise NotImplementedError("finetune.lora = 'general' with reuse = true is not covered "
                                  "(needs T34/T35 with K = 2)")
    S = _Setup(cfg, pre, allow_general=True)
    starts = [engine.Start(n, x) for n, x in _initial_points(S)]
    if init is not None:
        starts = [engine.Start("init", np.asarray(init, float))] + starts
    settings = engine.Settings.from_config(cfg, repeats=repeats)
    sol = engine.solve(GeneralLoraChannel(S), settings, seed_key(cfg.theory.seed),
                       starts)
    best = sol.best.record
    metrics, err = _aggregate(S, sol.repeats)
    solver = dict(converged=sol.stats["converged"], result=best["result"],
                  result_code=sol.result, iterations=best["iterations"],
                  residual=float(best["residual"]), seconds=sol.stats["seconds"],
                  branch=best["label"], n_branches=len(sol.branches), lambda_AT=best["lambda_AT"],
                  frac_nonconvex=best["frac_nonconvex"], frac_multimin=best["frac_multimin"],
                  stein_hats=best["stein_hats"], rs_doubtful=best["rs_doubtful"],
                  mc_repeats=settings.repeats, stein_retries=sol.stats["stein_retries"],
                  kind="general-" + ("linear" if S.linear else "softmax"),
                  order_parameters=_record(best))
    return FinetuneState(q=metrics["q"], m=metrics["m"], v=best["v"],
                         qhat=float(np.trace(best["Qhat"]) / 2), mhat=float(np.mean(best["mhat"])),
                         vhat=float(np.trace(best["Vhat"]) / 2), c=S.c, delta_eff=S.delta_eff,
                         delta_eff_train=S.delta_eff_train, metrics=metrics, mc_err=err,
                         solver=solver, branches=tuple(_record(r) for r in sol.branches),
                         flags=sol.flags)
