"""Which points of a tissue edge are the epidermal surface (µm throughout).

An edge point is on the surface when the tissue map's epidermis lies right under it
(:func:`along_epidermis`). A gap in that surface, bounded by surface on both sides, uninked
and running straight on rather than round the specimen (its length at most twice the
distance between its ends), is surface too when it is short (up to ``2 * surface_um``: map
noise) or when tumour lies under most of it (within ``ulcer_depth_um``): an **ulcer**, whose
base is the surface there (AJCC: Breslow is measured from the ulcer base).
"""

from __future__ import annotations

import numpy as np
import shapely
from shapely.geometry import LineString


def inward_normals(ring: LineString, s: np.ndarray) -> np.ndarray:
    """Unit normals pointing into the polygon at perimeter positions ``s`` (µm); ``(N, 2)``."""
    length = ring.length
    h = max(min(length / 200, 10.0), 1e-6)
    a = shapely.get_coordinates(shapely.line_interpolate_point(ring, (s - h) % length))
    b = shapely.get_coordinates(shapely.line_interpolate_point(ring, (s + h) % length))
    t = b - a
    t /= np.maximum(np.linalg.norm(t, axis=1, keepdims=True), 1e-12)
    left = np.stack([-t[:, 1], t[:, 0]], axis=1)
    return left if shapely.is_ccw(ring) else -left


def along_epidermis(ring: LineString, s: np.ndarray, epidermis, *, surface_um: float) -> np.ndarray:
    """``(N,)`` bool: the epidermis lies right under the edge point at perimeter position ``s``.

    True when the nearest epidermis is within ``surface_um`` and lies inward (within 50° of
    the inward normal), or touches the edge (< 2 µm). A point beside the epidermis (at the
    rim of an ulcer, or on a lateral edge next to the epidermis' cut end) is not surface.
    """
    points = shapely.line_interpolate_point(ring, s)
    d = shapely.distance(points, epidermis)
    near = shapely.get_coordinates(shapely.shortest_line(points, epidermis))[1::2]
    v = near - shapely.get_coordinates(points)
    cos = np.einsum("ij,ij->i", v, inward_normals(ring, s)) / np.maximum(np.linalg.norm(v, axis=1), 1e-12)
    return (d < 2.0) | ((d <= surface_um) & (cos >= np.cos(np.radians(50))))


def surface_mask(ring: LineString, s: np.ndarray, epidermis, *, inked: np.ndarray, tumour=None,
                 surface_um: float, ulcer_depth_um: float) -> tuple[np.ndarray, list[np.ndarray]]:
    """``(N,)`` bool surface mask of the edge points at ``s``, and the index runs that are ulcers."""
    surface = along_epidermis(ring, s, epidermis, surface_um=surface_um)
    ulcers = []
    if not surface.any() or surface.all():
        return surface, ulcers
    n = len(s)
    xy = shapely.get_coordinates(shapely.line_interpolate_point(ring, s))
    step = ring.length / n
    under = np.zeros(n, bool)
    if tumour is not None and not tumour.is_empty:
        under = shapely.distance(shapely.points(xy), tumour) <= ulcer_depth_um
    for run in cyclic_runs(~surface):
        if inked[run].any():
            continue
        arc = (len(run) + 1) * step
        chord = float(np.hypot(*(xy[(run[-1] + 1) % n] - xy[(run[0] - 1) % n])))
        if arc > 2.0 * chord:
            continue
        if under[run].mean() >= 0.5:
            ulcers.append(run)
        elif arc > 2.0 * surface_um:
            continue
        surface[run] = True
    return surface, ulcers


def cyclic_runs(mask: np.ndarray) -> list[np.ndarray]:
    """Index arrays of the maximal runs of True in a cyclic ``(N,)`` bool array."""
    n = len(mask)
    if n == 0 or not mask.any():
        return []
    if mask.all():
        return [np.arange(n)]
    start = int(np.flatnonzero(~mask)[0])  # roll so that a run never wraps
    order = (np.arange(n) + start) % n
    m = mask[order]
    edges = np.flatnonzero(np.diff(np.concatenate([[0], m.astype(np.int8), [0]])))
    return [order[a:b] for a, b in zip(edges[::2], edges[1::2])]
