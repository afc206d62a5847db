"""The one place converting between GeoJSON ``(x, y)`` and numpy/napari ``(row, col)``.

GeoJSON coordinates in this project are ``(x, y)`` in level-0 pixels of the slide as
openslide reports it. numpy images and napari layers index ``(row, col)`` = ``(y, x)``.
Optionally a ``scale`` (level-0 pixels per array pixel, i.e. the level's downsample) and an
``offset`` (level-0 ``(x, y)`` of the array's top-left pixel) are applied:

    x = col * scale + offset_x        y = row * scale + offset_y
"""

from __future__ import annotations

import numpy as np
import shapely


def xy_to_rc(xy: np.ndarray, *, scale: float = 1.0, offset: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """``(..., 2)`` level-0 ``(x, y)`` -> ``(..., 2)`` array ``(row, col)`` (float64)."""
    xy = np.asarray(xy, dtype=np.float64)
    if xy.shape[-1] != 2:
        raise ValueError(f"expected (..., 2) coordinates, got shape {xy.shape}")
    return (xy[..., ::-1] - np.asarray(offset, dtype=np.float64)[::-1]) / scale


def rc_to_xy(rc: np.ndarray, *, scale: float = 1.0, offset: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """``(..., 2)`` array ``(row, col)`` -> ``(..., 2)`` level-0 ``(x, y)`` (float64)."""
    rc = np.asarray(rc, dtype=np.float64)
    if rc.shape[-1] != 2:
        raise ValueError(f"expected (..., 2) coordinates, got shape {rc.shape}")
    return rc[..., ::-1] * scale + np.asarray(offset, dtype=np.float64)


def geometry_to_rc(geom, *, scale: float = 1.0, offset: tuple[float, float] = (0.0, 0.0)):
    """Shapely geometry (or array of them) in level-0 ``(x, y)`` -> same type whose
    coordinates are ``(row, col)`` in array pixels (first coordinate = row)."""
    return shapely.transform(geom, lambda c: xy_to_rc(c, scale=scale, offset=offset))


def geometry_to_xy(geom, *, scale: float = 1.0, offset: tuple[float, float] = (0.0, 0.0)):
    """Inverse of :func:`geometry_to_rc`: shapely geometry in ``(row, col)`` -> level-0 ``(x, y)``."""
    return shapely.transform(geom, lambda c: rc_to_xy(c, scale=scale, offset=offset))


def polygon_rc_vertices(geom, *, scale: float = 1.0, offset: tuple[float, float] = (0.0, 0.0)) -> list[np.ndarray]:
    """Exterior rings of a (Multi)Polygon as ``(n, 2)`` ``(row, col)`` arrays, closing vertex
    dropped (the form napari Shapes layers take). Holes are not representable there."""
    parts = shapely.get_parts(geom)
    out = []
    for p in parts:
        if p.geom_type != "Polygon" or p.is_empty:
            continue
        xy = np.asarray(p.exterior.coords)[:-1]
        out.append(xy_to_rc(xy, scale=scale, offset=offset))
    return out


def bounds_properties(bounds: tuple[float, float, float, float] | None) -> dict:
    """FeatureCollection properties recording the slide's bounds ``(x, y, w, h)`` offsets.

    Coordinates in the file stay level-0 pixels of the full slide (as openslide reports
    them); the offsets tell a reader where the scanned region starts.
    """
    if bounds is None:
        return {}
    x, y, w, h = bounds
    return {
        "openslide.bounds-x": int(x),
        "openslide.bounds-y": int(y),
        "openslide.bounds-width": int(w),
        "openslide.bounds-height": int(h),
    }
