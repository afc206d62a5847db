"""Raster masks to shapely polygons (holes kept), in ``(x, y)`` pixel-edge coordinates.

Pixel ``(row r, col c)`` covers ``[c, c+1) x [r, r+1)``. Outlines run along the iso-line
halfway between inside and outside pixel centres (marching squares), i.e. on the pixel
edges, with corners cut diagonally. Outlines never cross or touch, so nesting (holes,
islands in holes) follows from counting how many outlines enclose each one: an even count
is an outer boundary, an odd count a hole of its smallest enclosing outline.
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
        ring = shapely.Polygon(np.column_stack([c[:, 1] - 0.5, c[:, 0] - 0.5]))  # undo pad, centre -> edge
        if ring.area > 0:
            rings.append(ring)
    return _nest(rings)


def _nest(rings: list[Polygon]) -> list[Polygon]:
    """Assemble non-crossing closed outlines into polygons with holes."""
    if not rings:
        return []
    arr = np.asarray(rings, dtype=object)
    tree = shapely.STRtree(arr)
    probes = shapely.points([r.exterior.coords[0] for r in rings])
    inner, outer = tree.query(probes, predicate="within")  # probe of ring `inner` lies inside ring `outer`
    depth = np.bincount(inner, minlength=len(rings))
    areas = shapely.area(arr)
    parent = np.full(len(rings), -1)
    for i, o in zip(inner, outer):  # the smallest enclosing ring is the immediate parent
        if parent[i] < 0 or areas[o] < areas[parent[i]]:
            parent[i] = o
    holes: dict[int, list] = {}
    for i in np.flatnonzero(depth % 2 == 1):
        holes.setdefault(int(parent[i]), []).append(rings[i].exterior.coords)
    out = []
    for i in np.flatnonzero(depth % 2 == 0):
        poly = Polygon(rings[i].exterior.coords, holes.get(int(i), []))
        out.extend(_polygons(poly if poly.is_valid else shapely.make_valid(poly)))
    return out


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
