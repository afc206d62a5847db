"""Precomputed periodic textures, sampled by global pixel coordinates.

Procedural texture per pixel is the expensive part of painting a slide. Instead each
texture is computed once as a seamless ``(S, S)`` periodic image (value noise with a
wrapping lattice, sine waves with a whole number of cycles per period) and a window at
``(x0, y0)`` is the slice ``[y0 mod S, x0 mod S]``: a view, no arithmetic. Aperiodic
low-frequency noise applied per window hides the repetition.
"""

from __future__ import annotations

import math

import numpy as np


def periodic_noise(size: int, *, scale: float, rng: np.random.Generator, octaves: int = 1) -> np.ndarray:
    """Seamless smooth noise in [0, 1], ``(size, size)`` float32; ``scale`` = feature size (px)."""
    total = np.zeros((size, size), np.float32)
    weight = 0.0
    for k in range(octaves):
        n = max(1, round(size / (scale / 2**k)))
        lattice = rng.random((n, n)).astype(np.float32)
        f = (np.arange(size, dtype=np.float64) + 0.5) * n / size
        i0 = np.floor(f).astype(np.int64) % n
        i1 = (i0 + 1) % n
        t = (f - np.floor(f)).astype(np.float32)
        t = t * t * (3 - 2 * t)
        rows = lattice[:, i0] * (1 - t) + lattice[:, i1] * t
        layer = rows[i0] * (1 - t)[:, None] + rows[i1] * t[:, None]
        amp = 0.5**k
        total += amp * layer
        weight += amp
    return total / weight


def periodic_wave(size: int, *, angle: float, period: float) -> tuple[np.ndarray, np.ndarray]:
    """Phase components ``(px (size,), py (size,))`` of a plane wave with a whole number of
    cycles per ``size`` in x and y, close to ``angle`` (radians) and ``period`` (px)."""
    cycles = size / period
    kx = round(cycles * math.cos(angle))
    ky = round(cycles * math.sin(angle))
    if kx == 0 and ky == 0:
        kx = 1
    idx = np.arange(size, dtype=np.float64) + 0.5
    return (
        np.mod(idx * (2 * math.pi * kx / size), 2 * math.pi).astype(np.float32),
        np.mod(idx * (2 * math.pi * ky / size), 2 * math.pi).astype(np.float32),
    )


def _fibres(size, rng, *, angle, period, warp_scale, warp_amp):
    px, py = periodic_wave(size, angle=angle, period=period)
    warp = periodic_noise(size, scale=warp_scale, rng=rng, octaves=2)
    jitter = periodic_noise(size, scale=warp_scale / 4, rng=rng)
    wave = np.sin(py[:, None] + px[None, :] + warp_amp * warp + 0.4 * warp_amp * jitter)
    thickness = periodic_noise(size, scale=warp_scale * 0.6, rng=rng)
    return np.clip((0.5 + 0.5 * wave) * (0.6 + 0.8 * thickness), 0, 1) ** 1.5


def red_cells(size: int, *, radius: float, rng: np.random.Generator, cover: float = 0.8) -> np.ndarray:
    """Seamless field of red blood cells: discs with a pale centre, ``(size, size)`` in [0, 1]."""
    n = int(cover * size * size / (math.pi * radius**2))
    pts = rng.uniform(0, size, (n, 2))
    keep = np.ones(n, bool)
    if n > 1:
        from scipy.spatial import cKDTree

        wrapped = cKDTree(pts, boxsize=size)
        for i, j in sorted(wrapped.query_pairs(1.6 * radius)):
            if keep[i] and keep[j]:
                keep[j] = False
    out = np.zeros((size, size), np.float32)
    m = int(math.ceil(radius)) + 2
    g = np.arange(-m, m + 1, dtype=np.float32)
    for x, y in pts[keep]:
        ix, iy = int(x), int(y)
        dx = g[None, :] + ix + 0.5 - x
        dy = g[:, None] + iy + 0.5 - y
        r = np.sqrt(dx * dx + dy * dy) / radius
        disc = np.clip((1.0 - r) * radius + 0.5, 0, 1) * (1.0 - 0.45 * np.exp(-((r / 0.45) ** 2)))
        rows = (np.arange(iy - m, iy + m + 1)) % size
        cols = (np.arange(ix - m, ix + m + 1)) % size
        block = out[np.ix_(rows, cols)]
        out[np.ix_(rows, cols)] = np.maximum(block, disc)
    return out


class TextureBank:
    """The textures a :class:`~wsi_pipeline.synthetic.render.TileRenderer` samples.

    ``px`` is pixels per micrometre; ``size`` the period in pixels (power of two, a multiple
    of the tile size keeps aligned windows as plain slices).
    """

    def __init__(self, *, px: float, seed: int, size: int = 2048) -> None:
        rng = np.random.default_rng([seed, 0x7E7])
        self.size = size
        s = size
        fib_a = _fibres(s, rng, angle=rng.uniform(0, 0.6), period=7 * px, warp_scale=60 * px, warp_amp=16.0)
        fib_b = _fibres(s, rng, angle=rng.uniform(1.3, 1.9), period=8 * px, warp_scale=70 * px, warp_amp=18.0)
        pick = periodic_noise(s, scale=90 * px, rng=rng, octaves=2)
        pick = np.clip((pick - 0.5) * 5 + 0.5, 0, 1)
        fib = fib_a * pick + fib_b * (1 - pick)
        # fibres only: the clefts between bundles are low-frequency, so the renderer draws
        # them aperiodically (a repeated blotch pattern would show at low magnification)
        self.collagen = (0.35 + 0.65 * fib).astype(np.float32)
        self.mottle = periodic_noise(s, scale=12 * px, rng=rng, octaves=3)
        self.chromatin = periodic_noise(s, scale=1.6 * px, rng=rng, octaves=2)
        lam_px, lam_py = periodic_wave(s, angle=math.pi / 2, period=4 * px)
        lam_warp = periodic_noise(s, scale=40 * px, rng=rng, octaves=2)
        self.lamellae = np.clip(
            (0.5 + 0.5 * np.sin(lam_py[:, None] + lam_px[None, :] + 12.0 * lam_warp)) * 1.3 - 0.15, 0, 1
        ).astype(np.float32)
        self.grain = rng.standard_normal((s, s), dtype=np.float32)
        self.rbc = red_cells(s, radius=3.6 * px, rng=rng)

    def window(self, name: str, x0: int, y0: int, w: int, h: int) -> np.ndarray:
        """``(h, w)`` window of texture ``name`` at global ``(x0, y0)`` (a view when it does
        not wrap)."""
        tex = getattr(self, name)
        s = self.size
        xs, ys = x0 % s, y0 % s
        if xs + w <= s and ys + h <= s:
            return tex[ys : ys + h, xs : xs + w]
        return tex[np.ix_(np.arange(y0, y0 + h) % s, np.arange(x0, x0 + w) % s)]
