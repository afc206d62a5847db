"""Colour deconvolution (Ruifrok & Johnston 2001) in torch: RGB -> optical density -> H, E.

Optical density per channel is ``OD = -log10(I / 255)`` with ``I`` clipped to ``[1, 255]``.
A stain matrix has one unit-norm row per stain (RGB optical densities); the third row is
the residual (the normalised cross product of the first two). Unmixing multiplies OD by
the matrix inverse.
"""

from __future__ import annotations

import numpy as np
import torch

#: Ruifrok & Johnston's H&E vectors (rows: hematoxylin, eosin), as in ImageJ / QuPath.
RUIFROK_HE = np.array([[0.650, 0.704, 0.286], [0.072, 0.990, 0.105]])


def stain_matrix(vectors: np.ndarray = RUIFROK_HE) -> np.ndarray:
    """(3, 3) matrix: the two normalised stain rows plus the residual row."""
    v = np.asarray(vectors, np.float64)
    v = v / np.linalg.norm(v, axis=1, keepdims=True)
    third = np.cross(v[0], v[1])
    third = third / np.linalg.norm(third)
    return np.vstack([v[:2], third])


def rgb_to_od(rgb: torch.Tensor) -> torch.Tensor:
    """(B, H, W, 3) uint8 -> (B, 3, H, W) float32 optical density."""
    x = rgb.permute(0, 3, 1, 2).float().clamp_(min=1.0)
    return -torch.log10(x / 255.0)


def unmix(od: torch.Tensor, vectors: np.ndarray = RUIFROK_HE) -> torch.Tensor:
    """(B, 3, H, W) OD -> (B, 3, H, W) stain concentrations (hematoxylin, eosin, residual)."""
    inv = torch.as_tensor(np.linalg.inv(stain_matrix(vectors)), dtype=od.dtype, device=od.device)
    return torch.einsum("bchw,cs->bshw", od, inv)


def hematoxylin_eosin_np(rgb: np.ndarray, vectors: np.ndarray = RUIFROK_HE) -> np.ndarray:
    """(H, W, 3) uint8 -> (2, H, W) float32 hematoxylin and eosin OD (CPU convenience).

    Plain numpy in float64, one channel product at a time: the same bits whatever the
    thread count (a float32 einsum's blocking depends on it, and measurements taken on a
    Dask worker then differed from the in-process run's in the last bit)."""
    od = -np.log10(np.clip(np.asarray(rgb, np.float64), 1.0, 255.0) / 255.0)
    inv = np.linalg.inv(stain_matrix(vectors))
    out = np.empty((2, *od.shape[:2]), np.float32)
    for s in range(2):
        out[s] = od[..., 0] * inv[0, s] + od[..., 1] * inv[1, s] + od[..., 2] * inv[2, s]
    return out


def macenko_vectors(rgb: np.ndarray, *, od_min: float = 0.15, percentile: float = 1.0,
                    max_pixels: int = 200_000, seed: int = 0) -> np.ndarray:
    """(2, 3) H and E optical-density vectors estimated from ``rgb`` ``(..., 3)`` uint8 (Macenko 2009).

    Tissue pixels (every channel's OD above ``od_min``) are projected on the plane of their
    two main directions; the stains are the directions at the ``percentile`` and
    ``100 - percentile`` angles. Hematoxylin is the vector with the larger red OD. Falls
    back to :data:`RUIFROK_HE` when there are too few tissue pixels.
    """
    od = -np.log10(np.clip(np.asarray(rgb, np.float64).reshape(-1, 3), 1, 255) / 255.0)
    od = od[(od > od_min).all(axis=1)]
    if len(od) < 500:
        return RUIFROK_HE.copy()
    if len(od) > max_pixels:
        od = od[np.random.default_rng(seed).choice(len(od), max_pixels, replace=False)]
    _, vecs = np.linalg.eigh(np.cov(od.T))
    plane = vecs[:, 1:3]  # two largest eigenvectors
    plane = plane * np.where(plane.sum(axis=0) < 0, -1.0, 1.0)
    proj = od @ plane
    phi = np.arctan2(proj[:, 1], proj[:, 0])
    lo, hi = np.percentile(phi, [percentile, 100 - percentile])
    v1 = plane @ np.array([np.cos(lo), np.sin(lo)])
    v2 = plane @ np.array([np.cos(hi), np.sin(hi)])
    h, e = (v1, v2) if v1[0] > v2[0] else (v2, v1)
    out = np.abs(np.vstack([h, e]))
    return out / np.linalg.norm(out, axis=1, keepdims=True)
