"""GeoJSON geometry objects (parsed ``dict`` s) -> shapely geometries, in bulk.

Homogeneous groups (all Polygons, all Points, ...) are flattened into one coordinate
array plus offsets and built with :func:`shapely.from_ragged_array` (C speed); anything
unusual (3-D coordinates, GeometryCollection, degenerate rings) falls back to one
:func:`shapely.geometry.shape` call per object. A ring too short to be a ring (fewer than 4
positions) cannot be built as a polygon; it becomes a LineString/Point of its positions
and is counted by the caller as repaired (see :func:`geometries_from_dicts`).
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import shapely
import shapely.geometry
from shapely import GeometryType

_chain = itertools.chain.from_iterable

# nesting depth of "coordinates" and the ragged-array type
_RAGGED = {
    "Point": (0, GeometryType.POINT),
    "LineString": (1, GeometryType.LINESTRING),
    "MultiPoint": (1, GeometryType.MULTIPOINT),
    "Polygon": (2, GeometryType.POLYGON),
    "MultiLineString": (2, GeometryType.MULTILINESTRING),
    "MultiPolygon": (3, GeometryType.MULTIPOLYGON),
}


def _offsets(lengths: list[int]) -> np.ndarray:
    out = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=out[1:])
    return out


def _build_group(kind: str, coords_list: list[Any]) -> np.ndarray:
    """All ``coordinates`` of one geometry type -> (n,) shapely array (raises on odd input)."""
    depth, gtype = _RAGGED[kind]
    if depth == 0:
        xy = np.array(coords_list, dtype=np.float64)
        if xy.ndim != 2 or xy.shape[1] != 2:
            raise ValueError("not 2-D points")
        return shapely.points(xy)
    offsets = []
    level = coords_list
    for _ in range(depth - 1):
        offsets.append(_offsets([len(x) for x in level]))
        level = list(_chain(level))
    offsets.append(_offsets([len(x) for x in level]))
    positions = list(_chain(level))
    if set(map(len, positions)) != {2}:  # not a total count: [x, y, z] + [x] must not pass
        raise ValueError("positions are not all (x, y)")
    flat = np.fromiter(_chain(positions), dtype=np.float64, count=2 * len(positions))
    xy = flat.reshape(-1, 2)
    if kind in ("Polygon", "MultiPolygon"):
        ring_len = np.diff(offsets[-1])
        if (ring_len < 4).any():
            raise ValueError("ring with fewer than 4 positions")
        starts, ends = offsets[-1][:-1], offsets[-1][1:] - 1
        if not (xy[starts] == xy[ends]).all():
            raise ValueError("unclosed ring")
    return shapely.from_ragged_array(gtype, xy, tuple(reversed(offsets)))


def _one(obj: dict) -> tuple[Any, bool]:
    """Slow path for one geometry dict; returns (geometry, degenerate_repaired)."""
    try:
        return shapely.geometry.shape(obj), False
    except (shapely.errors.GEOSException, ValueError, TypeError, IndexError, KeyError):
        pass
    # a polygon whose ring is too short / unclosed: keep its positions as a line or point
    coords = obj.get("coordinates")
    pts = []

    def walk(c):
        if c and isinstance(c[0], (int, float)):
            if len(c) < 2:
                raise ValueError(f"a position with fewer than 2 numbers: {c}")
            pts.append((float(c[0]), float(c[1])))
        elif c:
            for x in c:
                walk(x)

    walk(coords)
    if obj.get("type") in ("Polygon", "MultiPolygon") and pts:
        ring = pts if pts[0] == pts[-1] else pts + pts[:1]
        if len(ring) >= 4:
            try:
                return shapely.Polygon(ring), True
            except (shapely.errors.GEOSException, ValueError):
                pass
    unique = list(dict.fromkeys(pts))
    if len(unique) >= 2:
        return shapely.LineString(pts), True
    if unique:
        return shapely.Point(unique[0]), True
    raise ValueError(f"cannot build geometry from {str(obj)[:80]}")


def geometries_from_dicts(objs: list[dict | None]) -> tuple[np.ndarray, int]:
    """(N,) list of GeoJSON geometry dicts (``None`` allowed) -> ((N,) shapely array, n_fixed).

    ``n_fixed`` counts objects that could not be built as given (e.g. a polygon ring with
    fewer than 4 positions or not closed) and were turned into the nearest valid thing.
    """
    out = np.empty(len(objs), dtype=object)
    groups: dict[str, list[int]] = {}
    for i, o in enumerate(objs):
        if o is None:
            continue
        groups.setdefault(o.get("type"), []).append(i)
    fixed = 0
    for kind, idx in groups.items():
        built = None
        if kind in _RAGGED:
            try:
                built = _build_group(kind, [objs[i]["coordinates"] for i in idx])
            except (ValueError, TypeError, KeyError, IndexError, shapely.errors.GEOSException):
                built = None
        if built is not None and len(built) == len(idx):
            out[idx] = built
            continue
        for i in idx:
            out[i], f = _one(objs[i])
            fixed += f
    return out, fixed
