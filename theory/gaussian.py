"""Gaussian building blocks of the channels (THEORY.md §1–§2, T1–T3).

``GOE_T(r)``: symmetric T×T Gaussian with off-diagonal variance r and diagonal variance 2r,
sampled as sqrt(r)·(G + Gᵀ)/sqrt(2). In Frobenius-orthonormal coordinates (u_aa = H_aa,
u_ab = sqrt(2) H_ab) it is isotropic N(0, 2r) on K_T = T(T+1)/2 coordinates.

All samplers take an explicit ``key`` (jax.random) and are pure; frozen common random numbers
are simply a fixed key.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["goe", "n_sym", "sym_to_vec", "vec_to_sym", "frobenius_inner", "memoize_by_key"]


def memoize_by_key(maxsize: int):
    """Decorator: memoise a pure function ``fn(key, *args)`` of a raw jax.random key (uint32
    array) and hashable arguments — frozen draws that a curve asks for at every point. The key is
    hashed by its bytes; a typed key (``jax.random.key``) is not memoised. The cached value is
    returned as is: it must be immutable (jax arrays, read-only numpy arrays) or copied by the
    caller."""
    def wrap(fn):
        @functools.lru_cache(maxsize=maxsize)
        def cached(key_bytes: bytes, key_dtype: str, args: tuple):
            return fn(jnp.asarray(np.frombuffer(key_bytes, dtype=key_dtype)), *args)

        @functools.wraps(fn)
        def call(key, *args):
            if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
                return fn(key, *args)
            raw = np.asarray(key)
            return cached(raw.tobytes(), str(raw.dtype), args)

        call.cache_clear = cached.cache_clear
        return call
    return wrap


def seed_key(seed: int) -> jax.Array:
    """``jax.random.PRNGKey(seed)`` built on the host: the raw threefry2x32 key is the seed's
    high and low 32-bit words, so no device program runs (PRNGKey runs ≈ 5 small programs, each
    loaded from the compilation cache in a new process). Other PRNG implementations: PRNGKey."""
    if jax.config.jax_default_prng_impl != "threefry2x32":
        return jax.random.PRNGKey(seed)
    s = int(seed) & 0xFFFFFFFFFFFFFFFF
    return jnp.asarray(np.array([s >> 32, s & 0xFFFFFFFF], dtype=np.uint32))


def n_sym(T: int) -> int:
    """K_T = T(T+1)/2, the number of Frobenius coordinates of Sym_T."""
    return T * (T + 1) // 2


def goe(key: jax.Array, shape: tuple[int, ...], T: int, variance=1.0, dtype=jnp.float64) -> jax.Array:
    """``shape + (T, T)`` i.i.d. GOE_T(variance) matrices (THEORY.md §1)."""
    g = jax.random.normal(key, (*shape, T, T), dtype=dtype)
    return jnp.sqrt(variance / 2.0) * (g + jnp.swapaxes(g, -1, -2))


def sym_to_vec(H: jax.Array) -> jax.Array:
    """Frobenius-orthonormal coordinates of symmetric matrices: (..., T, T) -> (..., K_T)."""
    T = H.shape[-1]
    iu = jnp.triu_indices(T)
    scale = jnp.where(iu[0] == iu[1], 1.0, jnp.sqrt(2.0))
    return H[..., iu[0], iu[1]] * scale


def vec_to_sym(u: jax.Array, T: int) -> jax.Array:
    """Inverse of :func:`sym_to_vec`."""
    iu = jnp.triu_indices(T)
    scale = jnp.where(iu[0] == iu[1], 1.0, 1.0 / jnp.sqrt(2.0))
    H = jnp.zeros((*u.shape[:-1], T, T), dtype=u.dtype)
    H = H.at[..., iu[0], iu[1]].set(u * scale)
    H = H.at[..., iu[1], iu[0]].set(u * scale)
    return H


def frobenius_inner(A: jax.Array, B: jax.Array) -> jax.Array:
    """<A, B>_F over the last two axes."""
    return jnp.sum(A * B, axis=(-1, -2))
