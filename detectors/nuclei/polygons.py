"""Star-convex polygons from a label image, in torch.

For every object a centre is chosen (its most interior pixel: the maximum of the distance
transform inside it), and ``n_rays`` rays at equal angles are marched outwards in
half-pixel steps until they first leave the object. The polygon joins the exit points,
which makes it star-convex around the centre (as StarDist's) and always simple.

Coordinates follow the pixel-edge convention: pixel ``(r, c)`` covers
``[c, c+1] x [r, r+1]`` in ``(x, y)``, so its centre is ``(c + 0.5, r + 0.5)``.
"""

from __future__ import annotations

import math

import numpy as np
import shapely
import torch


def interior_points(labels: torch.Tensor, depth: torch.Tensor, n: int) -> torch.Tensor:
    """(n, 2) long (row, col) of each object's deepest pixel (ties: first in raster order).

    labels : (H, W) long, ids 1..n; depth : (H, W) float, e.g. distance to background.
    """
    h, w = labels.shape
    flat_l = labels.reshape(-1)
    flat_d = depth.reshape(-1).float()
    fg = flat_l > 0
    ids = flat_l[fg] - 1
    vals = flat_d[fg]
    best = torch.full((n,), -1.0, device=labels.device).scatter_reduce(0, ids, vals, "amax")
    is_best = vals >= best[ids]
    pos = torch.nonzero(fg).reshape(-1)
    big = torch.full((n,), h * w, device=labels.device, dtype=torch.long)
    first = big.scatter_reduce(0, ids[is_best], pos[is_best], "amin")
    return torch.stack([first // w, first % w], dim=1)


def ray_distances(labels: torch.Tensor, centres: torch.Tensor, *, n_rays: int = 32,
                  max_radius: float = 40.0, step: float = 0.5) -> torch.Tensor:
    """(n, n_rays) distances from pixel centres ``centres`` (row, col) to the object edge.

    Object ``i`` has id ``i + 1``. Each distance is the last inside sample plus half a
    pixel (the edge of that pixel), at least 0.5.
    """
    h, w = labels.shape
    n = centres.shape[0]
    dev = labels.device
    theta = torch.arange(n_rays, device=dev, dtype=torch.float32) * (2 * math.pi / n_rays)
    steps = torch.arange(0, max_radius + step, step, device=dev, dtype=torch.float32)
    dy = torch.sin(theta)[:, None] * steps[None, :]  # (R, S)
    dx = torch.cos(theta)[:, None] * steps[None, :]
    rows = torch.floor(centres[:, 0, None, None].float() + dy[None] + 0.5).long()  # (n, R, S)
    cols = torch.floor(centres[:, 1, None, None].float() + dx[None] + 0.5).long()
    inside_img = (rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)
    vals = labels[rows.clamp(0, h - 1), cols.clamp(0, w - 1)]
    ids = torch.arange(1, n + 1, device=dev)[:, None, None]
    inside = inside_img & (vals == ids)
    # index of the first sample that is outside (S when the ray never leaves)
    outside = ~inside
    first_out = torch.where(outside.any(-1), outside.float().argmax(-1), torch.full_like(outside[..., 0], len(steps), dtype=torch.long))
    last_in = (first_out - 1).clamp(min=0)
    return steps[last_in] + 0.5


def star_polygons(centres: np.ndarray, dists: np.ndarray, *, width: int, height: int) -> np.ndarray:
    """(n,) shapely Polygons from (n, 2) (row, col) centres and (n, R) ray distances.

    Vertices are clipped to the tile ``[0, width] x [0, height]``.
    """
    n, r = dists.shape
    if n == 0:
        return np.empty(0, object)
    theta = np.arange(r) * (2 * np.pi / r)
    x = centres[:, 1, None] + 0.5 + dists * np.cos(theta)[None]
    y = centres[:, 0, None] + 0.5 + dists * np.sin(theta)[None]
    xy = np.stack([np.clip(x, 0, width), np.clip(y, 0, height)], axis=-1)
    polys = shapely.polygons(xy)
    bad = ~shapely.is_valid(polys)
    if bad.any():
        polys[bad] = shapely.make_valid(polys[bad])
        polys[bad] = [_largest_polygon(g) for g in polys[bad]]
    return polys


def _largest_polygon(geom):
    parts = [g for g in getattr(geom, "geoms", [geom]) if isinstance(g, shapely.Polygon)]
    return max(parts, key=lambda g: g.area) if parts else geom.buffer(0.5)


def rasterise(geoms: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``(H, W)`` int32 label image: pixel ``(r, c)`` gets ``i + 1`` when its centre
    ``(c + 0.5, r + 0.5)`` lies inside ``geoms[i]`` (later objects win overlaps).

    Cost is bounded by the objects' bounding boxes (one vectorised point-in-polygon test
    per bounding-box pixel), not by the image size.
    """
    h, w = shape
    labels = np.zeros((h, w), np.int32)
    geoms = np.asarray(geoms, dtype=object)
    if geoms.size == 0:
        return labels
    b = shapely.bounds(geoms)
    ok = np.isfinite(b).all(axis=1)
    c0 = np.clip(np.floor(b[:, 0] - 0.5), 0, w).astype(np.int64)
    r0 = np.clip(np.floor(b[:, 1] - 0.5), 0, h).astype(np.int64)
    c1 = np.clip(np.ceil(b[:, 2] + 0.5), 0, w).astype(np.int64)
    r1 = np.clip(np.ceil(b[:, 3] + 0.5), 0, h).astype(np.int64)
    bw, bh = np.where(ok, c1 - c0, 0), np.where(ok, r1 - r0, 0)
    count = bw * bh
    total = int(count.sum())
    if total == 0:
        return labels
    obj = np.repeat(np.arange(len(geoms)), count)
    k = np.arange(total) - np.repeat(np.cumsum(count) - count, count)
    rows = r0[obj] + k // bw[obj]
    cols = c0[obj] + k % bw[obj]
    shapely.prepare(geoms)
    inside = shapely.contains_xy(geoms[obj], cols + 0.5, rows + 0.5)
    labels[rows[inside], cols[inside]] = obj[inside] + 1  # numpy assigns in order: later wins
    return labels
