"""Solved states passed between the theory stages and to :mod:`theory.predict`.

A pre-training solver returns a :class:`PretrainState`; the fine-tuning solvers read the
order parameters they need from it (Q, M, Q0, V, tau_hat) and return a :class:`FinetuneState`.
``metrics`` use the short metric names of :mod:`theory.schema`; ``mc_err`` holds the Monte-Carlo
standard error of the metrics that are sampled (0.0 for closed forms); ``solver`` is a flat dict
(``converged``, ``iterations``, ``residual``, ``seconds``, ``branch``, ...) and ``flags`` lists
human-readable warnings (non-converged, RS doubtful, ...). Plain dataclasses of floats: cheap to
copy; the optional ``solution`` (the engine solution a curve continues from) is never serialised.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["PretrainState", "FinetuneState"]


@dataclass(frozen=True)
class PretrainState:
    """Pre-training fixed point (THEORY.md §3).

    Q, M, Q0 (M8); V the response (width of the output prox, T7); Qhat, Mhat, Vhat conjugates
    (T8); tau_hat = Tr Ŝ/d; rank_fraction (factorized, T17). For ``bayes`` V = Q0 − q.
    """

    Q: float
    M: float
    Q0: float
    V: float
    Qhat: float = float("nan")
    Mhat: float = float("nan")
    Vhat: float = float("nan")
    tau_hat: float = float("nan")
    rank_fraction: float = float("nan")
    metrics: dict = field(default_factory=dict)
    mc_err: dict = field(default_factory=dict)
    solver: dict = field(default_factory=dict)
    flags: tuple = ()
    #: the engine's :class:`theory.engine.Solution` behind the state (general-σ RS solve only):
    #: what a neighbouring point of a curve continues from; never serialised
    solution: object = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class FinetuneState:
    """Fine-tuning fixed point (THEORY.md §4–§8): q, m, v and conjugates, metrics, Δ_eff.

    ``branches`` lists every fixed point found (each a dict with q, m, objective, stability,
    label); the state itself is the selected (global) one.
    """

    q: float
    m: float
    v: float
    qhat: float = float("nan")
    mhat: float = float("nan")
    vhat: float = float("nan")
    c: float = 1.0
    delta_eff: float = float("nan")
    delta_eff_train: float = float("nan")
    metrics: dict = field(default_factory=dict)
    mc_err: dict = field(default_factory=dict)
    solver: dict = field(default_factory=dict)
    branches: tuple = ()
    flags: tuple = ()
    #: the engine's :class:`theory.engine.Solution` behind the state (per-repeat order parameters
    #: and per-sample prox solutions): what a neighbouring point of a curve continues from; not
    #: part of the results (never serialised)
    solution: object = field(default=None, repr=False, compare=False)
