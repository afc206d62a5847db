"""Raster masks to shapely polygons (holes kept), in ``(x, y)`` pixel-edge coordinates.

Pixel ``(row r, col c)`` covers ``[c, c+1) x [r, r+1)``. Outlines run along the iso-line
halfway between inside and outside pixel centres (marching squares), i.e. on the pixel
edges, with corners cut diagonally. Nesting (holes, islands in holes) is resolved by the
symmetric difference of all closed outlines: a point is inside when an odd number of
outlines enclose it.
"""

from __future__ import annotations

import numpy as np
import shapely
from shapely.geometry import MultiPolygon, Polygon
from skimage.measure import find_contours


def mask_to_polygons(mask: np.ndarray) -> list[Polygon]:
    """Polygons of the ``(H, W)`` bool ``mask``, one per connected part, holes kept."""
    m = np.asarray(mask, dtype=bool)
    if not m.any():
        return []
    padded = np.pad(m, 1).astype(np.float32)
    rings = []
    for c in find_contours(padded, 0.5):
        if len(c) < 4:
            continue
        xy = np.column_stack([c[:, 1] - 0.5, c[:, 0] - 0.5])  # undo pad, centre -> edge frame
        poly = Polygon(xy)
        if poly.area > 0:
            rings.append(poly if poly.is_valid else shapely.make_valid(poly))
    if not rings:
        return []
    merged = shapely.symmetric_difference_all(np.asarray(rings, dtype=object))
    return _polygons(merged)


def _polygons(geom) -> list[Polygon]:
    if geom.is_empty:
        return []
    if isinstance(geom, Polygon):
        return [geom]
    if isinstance(geom, MultiPolygon):
        return list(geom.geoms)
    return [g for part in getattr(geom, "geoms", []) for g in _polygons(part)]


def labels_to_polygons(labels: np.ndarray, ids: np.ndarray | None = None) -> dict[int, list[Polygon]]:
    """Polygons of each labelled region of an ``(H, W)`` int image (0 = background)."""
    lab = np.asarray(labels)
    ids = np.unique(lab[lab > 0]) if ids is None else np.asarray(ids)
    out = {}
    for i in ids:
        ys, xs = np.nonzero(lab == i)
        if len(ys) == 0:
            continue
        y0, x0 = ys.min(), xs.min()
        sub = lab[y0 : ys.max() + 1, x0 : xs.max() + 1] == i
        out[int(i)] = [shapely.transform(p, lambda c, d=np.array([x0, y0]): c + d) for p in mask_to_polygons(sub)]
    return out
