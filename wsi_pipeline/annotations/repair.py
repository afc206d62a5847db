"""Invalid geometry is repaired, counted and logged: never silently dropped.

Polygons (self-intersecting "bow-ties", spikes, rings touching themselves) go through
:func:`shapely.make_valid`; for polygonal input only the polygonal parts of the result are
kept (a bow-tie becomes a MultiPolygon of two triangles). If nothing polygonal remains
(a polygon of zero area) the make_valid result is kept as is (a line or point), so the
object survives and can still be seen and deleted by a person.
"""

from __future__ import annotations

import logging

import numpy as np
import shapely

log = logging.getLogger(__name__)

_POLYGONAL = ("Polygon", "MultiPolygon")


def _polygonal_part(fixed):
    if fixed.geom_type in _POLYGONAL:
        return fixed
    if fixed.geom_type == "GeometryCollection":
        polys = [p for p in shapely.get_parts(fixed) if p.geom_type in _POLYGONAL and not p.is_empty]
        if len(polys) == 1:
            return polys[0]
        if polys:
            parts = [q for p in polys for q in shapely.get_parts(p)]
            return shapely.MultiPolygon(parts)
    return fixed


def repair_geometries(geoms: np.ndarray) -> tuple[np.ndarray, int]:
    """Repair invalid entries of ``geoms`` ((N,) object array; ``None`` allowed).

    Returns the (N,) array (a copy only when something changed) and the number repaired.
    """
    geoms = np.asarray(geoms, dtype=object)
    if geoms.size == 0:
        return geoms, 0
    valid = shapely.is_valid(geoms)
    bad = np.flatnonzero(~valid & ~shapely.is_missing(geoms))
    if bad.size == 0:
        return geoms, 0
    out = geoms.copy()
    fixed = shapely.make_valid(geoms[bad])
    for i, g_in, g_fix in zip(bad, geoms[bad], fixed):
        out[i] = _polygonal_part(g_fix) if g_in.geom_type in _POLYGONAL else g_fix
    return out, int(bad.size)


def repair_geometry(geom):
    """One geometry; returns ``(geometry, was_repaired)``."""
    out, n = repair_geometries(np.array([geom], dtype=object))
    return out[0], bool(n)


def log_repaired(n: int, *, where: str) -> None:
    if n:
        log.warning("%s: repaired %d invalid geometr%s (shapely.make_valid)", where, n, "y" if n == 1 else "ies")
