"""Per-nucleus measurements with QuPath-style names.

:func:`measure` takes polygons in tile pixels (pixel-edge convention, see
:mod:`detectors.nuclei.polygons`), the RGB tile they were found in and the tile's
resolution, and returns one float64 array per measurement:

=========================  =====================================================
``Area µm^2``              polygon area
``Perimeter µm``           polygon perimeter
``Circularity``            4π area / perimeter², clipped to [0, 1]
``Solidity``               area / convex hull area
``Eccentricity``           of the ellipse with the polygon's second moments
``Max caliper µm``         largest distance between two vertices of the hull
``Min caliper µm``         smallest width of the hull over its edge directions
``Hematoxylin OD mean``    / ``std dev``: Ruifrok H&E unmixing of the pixels whose
``Eosin OD mean``          centre lies inside the polygon (NaN when none does)
=========================  =====================================================

Shape measures are vectorised over all polygons (shapely 2 and padded numpy arrays);
the stain statistics rasterise each object inside its bounding box only.
"""

from __future__ import annotations

import numpy as np
import shapely

from detectors.nuclei.polygons import rasterise
from detectors.nuclei.stain import RUIFROK_HE, hematoxylin_eosin_np

NAMES = (
    "Area µm^2", "Perimeter µm", "Circularity", "Solidity", "Eccentricity", "Max caliper µm",
    "Min caliper µm", "Hematoxylin OD mean", "Hematoxylin OD std dev", "Eosin OD mean",
)


def _padded_rings(geoms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, K, 2) exterior coordinates (closing vertex dropped, padded by repeating the last
    vertex) and (N,) vertex counts."""
    ext = shapely.get_exterior_ring(geoms)
    xy, idx = shapely.get_coordinates(ext, return_index=True)
    n = len(geoms)
    counts = np.bincount(idx, minlength=n)
    keep = np.ones(len(idx), bool)
    ends = np.cumsum(counts) - 1
    keep[ends[counts > 0]] = False  # drop the repeated closing vertex
    xy, idx = xy[keep], idx[keep]
    counts = np.bincount(idx, minlength=n)
    k = max(int(counts.max()), 1)
    pos = np.arange(len(idx)) - np.repeat(np.cumsum(counts) - counts, counts)
    out = np.zeros((n, k, 2))
    out[idx, pos] = xy
    last = np.maximum(counts - 1, 0)
    fill = np.arange(k)[None, :] >= counts[:, None]
    out[fill] = np.repeat(out[np.arange(n), last], k, axis=0).reshape(n, k, 2)[fill]
    return out, counts


def eccentricity(geoms: np.ndarray) -> np.ndarray:
    """(N,) eccentricity from the exact second area moments of each polygon's exterior."""
    ring, _ = _padded_rings(geoms)
    x, y = ring[..., 0], ring[..., 1]
    x1, y1 = np.roll(x, -1, axis=1), np.roll(y, -1, axis=1)
    cross = x * y1 - x1 * y
    a = cross.sum(1) / 2
    safe = np.where(np.abs(a) > 1e-12, a, 1.0)
    cx = ((x + x1) * cross).sum(1) / (6 * safe)
    cy = ((y + y1) * cross).sum(1) / (6 * safe)
    sxx = ((x * x + x * x1 + x1 * x1) * cross).sum(1) / (12 * safe) - cx * cx
    syy = ((y * y + y * y1 + y1 * y1) * cross).sum(1) / (12 * safe) - cy * cy
    sxy = ((x * y1 + 2 * x * y + 2 * x1 * y1 + x1 * y) * cross).sum(1) / (24 * safe) - cx * cy
    half_tr = (sxx + syy) / 2
    root = np.sqrt(np.maximum(((sxx - syy) / 2) ** 2 + sxy**2, 0))
    big, small = half_tr + root, np.maximum(half_tr - root, 0)
    ecc = np.sqrt(np.clip(1 - np.divide(small, big, out=np.ones_like(big), where=big > 0), 0, 1))
    return np.where(np.abs(a) > 1e-12, ecc, np.nan)


def calipers(geoms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N,) max and min caliper (Feret) diameters in pixels, from each convex hull."""
    hull = shapely.convex_hull(geoms)
    ring, counts = _padded_rings(hull)
    diff = ring[:, :, None, :] - ring[:, None, :, :]
    max_cal = np.sqrt((diff**2).sum(-1).max(axis=(1, 2)))
    edge = np.roll(ring, -1, axis=1) - ring  # (N, K, 2)
    length = np.hypot(edge[..., 0], edge[..., 1])
    normal = np.stack([-edge[..., 1], edge[..., 0]], -1) / np.where(length > 1e-9, length, 1)[..., None]
    # width along each edge normal: max |(v_j - v_i) . n_i| over vertices j
    rel = ring[:, None, :, :] - ring[:, :, None, :]  # (N, K_i, K_j, 2)
    width = np.abs((rel * normal[:, :, None, :]).sum(-1)).max(axis=2)
    width = np.where(length > 1e-9, width, np.inf)
    min_cal = width.min(axis=1)
    min_cal = np.where(np.isfinite(min_cal) & (counts >= 3), min_cal, 0.0)
    return max_cal, min_cal


def stain_stats(geoms: np.ndarray, tile_rgb: np.ndarray, *,
                stain_vectors: np.ndarray = RUIFROK_HE) -> dict[str, np.ndarray]:
    """Hematoxylin OD mean and std dev and eosin OD mean per polygon (NaN when empty)."""
    n = len(geoms)
    labels = rasterise(geoms, tile_rgb.shape[:2]).ravel()
    he = hematoxylin_eosin_np(tile_rgb, stain_vectors).reshape(2, -1).astype(np.float64)
    fg = labels > 0
    ids = labels[fg] - 1
    cnt = np.bincount(ids, minlength=n).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        h_mean = np.bincount(ids, he[0, fg], minlength=n) / cnt
        h_sq = np.bincount(ids, he[0, fg] ** 2, minlength=n) / cnt
        e_mean = np.bincount(ids, he[1, fg], minlength=n) / cnt
    return {
        "Hematoxylin OD mean": h_mean,
        "Hematoxylin OD std dev": np.sqrt(np.maximum(h_sq - h_mean**2, 0)),
        "Eosin OD mean": e_mean,
    }


def measure(polygons, tile_rgb: np.ndarray, mpp: float, *, score=None,
            stain_vectors: np.ndarray = RUIFROK_HE) -> dict[str, np.ndarray]:
    """Measurements of ``(N,)`` shapely polygons found in ``tile_rgb`` ``(H, W, 3)`` uint8.

    ``mpp`` converts pixel lengths to µm. ``score`` (N,), when given, is added as
    ``Detection probability``. Returns name -> (N,) float64 (see the module table).
    """
    geoms = np.asarray(polygons, dtype=object).reshape(-1)
    n = len(geoms)
    if n == 0:
        out = {k: np.empty(0) for k in NAMES}
        if score is not None:
            out["Detection probability"] = np.empty(0)
        return out
    area = shapely.area(geoms)
    perim = shapely.length(geoms)
    hull_area = shapely.area(shapely.convex_hull(geoms))
    max_cal, min_cal = calipers(geoms)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = {
            "Area µm^2": area * mpp**2,
            "Perimeter µm": perim * mpp,
            "Circularity": np.clip(4 * np.pi * area / perim**2, 0, 1),
            "Solidity": np.clip(area / hull_area, 0, 1),
            "Eccentricity": eccentricity(geoms),
            "Max caliper µm": max_cal * mpp,
            "Min caliper µm": min_cal * mpp,
        }
    out.update(stain_stats(geoms, tile_rgb, stain_vectors=stain_vectors))
    if score is not None:
        out["Detection probability"] = np.asarray(score, np.float64).reshape(-1)
    return out
