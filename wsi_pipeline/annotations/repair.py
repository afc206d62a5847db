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


def star_simple_rings(xy: np.ndarray, ring_offsets: np.ndarray, *, margin: float = 1e-9) -> np.ndarray:
    """Which closed rings are certainly simple, without GEOS: those that go once around the
    mean of their vertices with the polar angle strictly monotone (a star-shaped ring, as
    nuclei outlines are). Each edge then lies in its own wedge (< pi) around that point, so
    no two edges cross. ``margin`` (radians) keeps float rounding from deciding anything.

    xy : (P, 2) float64 positions, every ring closed (last position == first).
    ring_offsets : (R + 1,) int offsets of the rings into ``xy``; every ring >= 4 positions.
    Returns (R,) bool: True = simple for sure; False = unknown (ask GEOS).
    """
    n = np.diff(ring_offsets)
    if n.size == 0:
        return np.zeros(0, dtype=bool)
    starts, last = ring_offsets[:-1], ring_offsets[1:] - 1
    centre = (np.add.reduceat(xy, starts, axis=0) - xy[last]) / (n - 1)[:, None]
    rel = xy - np.repeat(centre, n, axis=0)
    ang = np.arctan2(rel[:, 1], rel[:, 0])
    step = np.zeros(len(xy))
    np.subtract(ang[1:], ang[:-1], out=step[:-1])
    step = (step + np.pi) % (2 * np.pi) - np.pi  # wrapped into [-pi, pi)
    step[last] = 0.0  # not an edge: from one ring's closing position to the next ring
    up = (step > margin) & (step < np.pi - margin)
    down = (step < -margin) & (step > margin - np.pi)
    edges = n - 1
    turn = np.add.reduceat(step, starts)
    once = np.abs(np.abs(turn) - 2 * np.pi) < 1e-6
    ok = once & ((np.add.reduceat(up, starts) == edges) | (np.add.reduceat(down, starts) == edges))
    finite = np.add.reduceat(np.isfinite(rel).all(axis=1) & (rel != 0).any(axis=1), starts) == n
    return ok & finite


def repair_geometries(geoms: np.ndarray, *, known_valid: np.ndarray | None = None) -> tuple[np.ndarray, int]:
    """Repair invalid entries of ``geoms`` ((N,) object array; ``None`` allowed).

    known_valid : optional (N,) bool; entries marked True are not checked again.
    Returns the (N,) array (a copy only when something changed) and the number repaired.
    """
    geoms = np.asarray(geoms, dtype=object)
    if geoms.size == 0:
        return geoms, 0
    if known_valid is None:
        bad = np.flatnonzero(~shapely.is_valid(geoms) & ~shapely.is_missing(geoms))
    else:
        ask = np.flatnonzero(~known_valid)
        sub = geoms[ask]
        bad = ask[~shapely.is_valid(sub) & ~shapely.is_missing(sub)]
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
