"""Pixel <-> micrometre conversion of shapely geometries (anisotropic mpp handled).

All distances in this package are computed on geometries scaled to micrometres, so a slide
whose pixels are not square (``mpp_x != mpp_y``) still gives true physical distances.
"""

from __future__ import annotations

import numpy as np
import shapely


def to_um(geometry, mpp: tuple[float, float]):
    """Level-0 pixel ``(x, y)`` geometry -> micrometres."""
    scale = np.asarray(mpp, dtype=float)
    return shapely.transform(geometry, lambda xy: xy * scale)


def to_px(geometry, mpp: tuple[float, float]):
    """Micrometre geometry -> level-0 pixel ``(x, y)``."""
    scale = np.asarray(mpp, dtype=float)
    return shapely.transform(geometry, lambda xy: xy / scale)


def point_px(point_um: tuple[float, float], mpp: tuple[float, float]) -> list[float]:
    """One ``(x, y)`` micrometre point -> level-0 pixels, as a JSON-ready list."""
    return [round(point_um[0] / mpp[0], 2), round(point_um[1] / mpp[1], 2)]
