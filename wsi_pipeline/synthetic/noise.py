"""Deterministic procedural noise that is continuous across tiles.

Every function takes the tile's global pixel coordinates, so a tile rendered on its own
equals the same window of a whole image rendered at once: the slide can be drawn tile by
tile, in any order, in bounded memory.
"""

from __future__ import annotations

import numpy as np

_M1 = np.uint64(0x9E3779B97F4A7C15)
_M2 = np.uint64(0xBF58476D1CE4E5B9)
_M3 = np.uint64(0x94D049BB133111EB)


def hash_uniform(ix: np.ndarray, iy: np.ndarray, seed: int) -> np.ndarray:
    """Uniform [0, 1) values from integer lattice coordinates (splitmix64 finaliser).

    ``ix`` and ``iy`` broadcast against each other; the result has their broadcast shape.
    """
    x = np.asarray(ix, dtype=np.int64).astype(np.uint64)
    y = np.asarray(iy, dtype=np.int64).astype(np.uint64)
    salt = np.uint64(((seed & 0xFFFFFFFF) * 0xBF58476D1CE4E5B9 + 0x632BE59BD9B4E019) % 2**64)
    h = np.atleast_1d(x) * _M1 + np.atleast_1d(y) * _M3 + salt
    h ^= h >> np.uint64(30)
    h *= _M2
    h ^= h >> np.uint64(27)
    h *= _M3
    h ^= h >> np.uint64(31)
    return (h >> np.uint64(11)).astype(np.float64) * (1.0 / 9007199254740992.0)


def value_noise(x0: int, y0: int, width: int, height: int, *, scale: float, seed: int) -> np.ndarray:
    """Smooth lattice noise in [0, 1] over the window ``[x0, x0+width) x [y0, y0+height)``.

    ``scale`` is the lattice spacing in pixels (the feature size). Returns ``(height, width)``
    float32.
    """
    fx = (np.arange(x0, x0 + width, dtype=np.float64) + 0.5) / scale
    fy = (np.arange(y0, y0 + height, dtype=np.float64) + 0.5) / scale
    ix = np.floor(fx).astype(np.int64)
    iy = np.floor(fy).astype(np.int64)
    tx = fx - ix
    ty = fy - iy
    tx = tx * tx * (3 - 2 * tx)
    ty = ty * ty * (3 - 2 * ty)
    xs = np.arange(ix[0], ix[-1] + 2)
    ys = np.arange(iy[0], iy[-1] + 2)
    lattice = hash_uniform(xs[None, :], ys[:, None], seed).astype(np.float32)
    cx = ix - xs[0]
    cy = iy - ys[0]
    tx = tx.astype(np.float32)
    ty = ty.astype(np.float32)[:, None]
    rows = lattice[:, cx] * (1 - tx) + lattice[:, cx + 1] * tx  # (lattice rows, width)
    return rows[cy] * (1 - ty) + rows[cy + 1] * ty


def fbm(x0: int, y0: int, width: int, height: int, *, scale: float, seed: int, octaves: int = 3) -> np.ndarray:
    """Fractal sum of :func:`value_noise` octaves, normalised to about [0, 1]; ``(height, width)``."""
    total = np.zeros((height, width), np.float32)
    weight = 0.0
    amp = 1.0
    for k in range(octaves):
        total += amp * value_noise(x0, y0, width, height, scale=scale / 2**k, seed=seed + 7919 * k)
        weight += amp
        amp *= 0.5
    return total / weight
