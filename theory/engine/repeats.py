"""MC repeats of the RS solve protocol (THEORY.md §9): the key of each repeat, the aggregation of
the per-repeat rows with their errors, and the threads that run independent solves (split from
:mod:`.driver`)."""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np

__all__ = ["repeat_key", "aggregate", "parallel_map"]


def repeat_key(key, i: int):
    """The key of MC repeat ``i`` (THEORY.md §9): repeat 0 draws from ``key`` itself, repeat
    i > 0 from ``fold_in(key, i)`` — the one rule for every solver and curve."""
    import jax

    return key if i == 0 else jax.random.fold_in(key, i)


def aggregate(rows) -> tuple[dict, dict]:
    """Mean of each metric over the R repeat rows and its MC error: the spread over repeats
    (std/√R, None when R = 1: unknown, never 0) ⊕ the within-draw error ``_se`` of sampled
    formulas (√(mean se²/R))."""
    R = len(rows)
    keys = [k for k in rows[0] if k != "_se"]
    mean = {k: float(np.mean([r[k] for r in rows])) for k in keys}
    err = {k: (float(np.std([r[k] for r in rows], ddof=1) / math.sqrt(R)) if R > 1 else None)
           for k in keys}
    for k in rows[0].get("_se", {}):
        within = math.sqrt(np.mean([r["_se"][k] ** 2 for r in rows]) / R)
        err[k] = math.sqrt(err[k] ** 2 + within ** 2) if err[k] is not None else None
    return mean, err


def parallel_map(fn, items, workers: int) -> list:
    """``[fn(i) for i in items]``, on up to ``workers`` threads when there are several items (the
    MC repeats; the chains of a map: jitted calls release the GIL, so two solves run on two
    cores; each call is deterministic, so the results do not depend on the threads)."""
    items = list(items)
    if workers <= 1 or len(items) <= 1:
        return [fn(i) for i in items]
    with ThreadPoolExecutor(max_workers=min(workers, len(items))) as pool:
        return list(pool.map(fn, items))
