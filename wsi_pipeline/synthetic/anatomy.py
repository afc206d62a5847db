"""Skin structures that make the synthetic scene less cartoonish: rete ridges and vessels.

* Rete ridges: rounded pegs of epidermis pushing down into the dermis along the
  epidermis' lower border.
* Small dermal vessels: an eosinophilic wall ring around a lumen full of red blood
  cells (anucleate: a good false-positive test for nuclei detectors), with flat
  endothelial nuclei lying along the wall.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import shapely
from scipy.spatial import cKDTree
from shapely import affinity
from shapely.geometry import LineString, Point
from shapely.geometry.base import BaseGeometry

from wsi_pipeline.synthetic.nuclei import ENDOTHELIAL, Nuclei, _sample_in


def _ellipse(cx, cy, a, b, angle_rad, n=48):
    circle = Point(0, 0).buffer(1.0, quad_segs=n // 4)
    shape = affinity.scale(circle, a, b, origin=(0, 0))
    shape = affinity.rotate(shape, angle_rad, origin=(0, 0), use_radians=True)
    return affinity.translate(shape, cx, cy)


def rete_pegs(arc: LineString, center, *, thickness_px, px, rng) -> BaseGeometry:
    """Pegs below an epidermis of ``thickness_px`` whose surface is ``arc``; ``center`` is a
    point deep in the tissue (gives the inward direction)."""
    pegs = []
    step = 140.0 * px
    pos = rng.uniform(0.3, 1.0) * step
    c = np.asarray(center, float)
    while pos < arc.length - 0.5 * step:
        p = arc.interpolate(pos)
        q = arc.interpolate(min(pos + 5 * px, arc.length))
        r = arc.interpolate(max(pos - 5 * px, 0.0))
        tangent = np.array([q.x - r.x, q.y - r.y])
        tangent /= max(np.linalg.norm(tangent), 1e-9)
        normal = np.array([-tangent[1], tangent[0]])
        if np.dot(normal, c - np.array([p.x, p.y])) < 0:
            normal = -normal
        depth = rng.uniform(35, 80) * px
        width = rng.uniform(18, 30) * px
        mid = np.array([p.x, p.y]) + normal * (thickness_px + 0.35 * depth)
        angle = math.atan2(normal[1], normal[0])
        pegs.append(_ellipse(mid[0], mid[1], depth * 0.75, width, angle))
        pos += step * rng.uniform(0.7, 1.3)
    return shapely.union_all(pegs) if pegs else shapely.Polygon()


@dataclass(frozen=True)
class Vessels:
    """Vessel walls and lumens (level-0 pixels) and their endothelial nuclei."""

    walls: BaseGeometry
    lumens: BaseGeometry
    endothelium: Nuclei
    count: int


def place_vessels(region: BaseGeometry, *, px: float, rng, density_per_mm2: float = 18.0) -> Vessels:
    """Small vessels inside ``region`` (non-overlapping), ``px`` pixels per micrometre."""
    mm2 = (1e-3 / px) ** 2
    empty = Nuclei(*(np.zeros(0) for _ in range(6)), np.zeros(0, np.int8), np.zeros(0, np.int64))
    if region is None or region.is_empty:
        return Vessels(shapely.Polygon(), shapely.Polygon(), empty, 0)
    pts = _sample_in(region, int(rng.poisson(density_per_mm2 * region.area * mm2)), rng)
    radius = rng.uniform(7, 20, len(pts)) * px
    keep = np.ones(len(pts), bool)
    if len(pts) > 1:
        for i, j in sorted(cKDTree(pts).query_pairs(2 * radius.max() + 20 * px)):
            if keep[i] and keep[j] and np.hypot(*(pts[i] - pts[j])) < radius[i] + radius[j] + 20 * px:
                keep[j] = False
    pts, radius = pts[keep], radius[keep]
    walls, lumens, cols = [], [], []
    for (x, y), r in zip(pts, radius):
        aspect = rng.uniform(1.0, 1.6)
        ang = rng.uniform(0, math.pi)
        wall = rng.uniform(3.0, 5.0) * px
        outer = _ellipse(x, y, r * aspect, r, ang)
        lumen = _ellipse(x, y, r * aspect - wall, r - wall, ang)
        walls.append(outer.difference(lumen))
        lumens.append(lumen)
        k = int(rng.integers(2, 5))
        for t in (np.arange(k) + rng.uniform(0, 1)) * (2 * math.pi / k):
            ex, ey = (r * aspect - wall / 2) * math.cos(t), (r - wall / 2) * math.sin(t)
            ca, sa = math.cos(ang), math.sin(ang)
            tx, ty = -(r * aspect) * math.sin(t), r * math.cos(t)  # tangent of the ellipse
            cols.append(
                (x + ex * ca - ey * sa, y + ex * sa + ey * ca, rng.uniform(4.0, 5.0) * px,
                 rng.uniform(1.2, 1.6) * px, math.atan2(tx * sa + ty * ca, tx * ca - ty * sa),
                 rng.uniform(1.2, 1.5), int(rng.integers(0, 2**31)))
            )  # fmt: skip
    if cols:
        arr = np.array(cols)
        endo = Nuclei(
            x=arr[:, 0], y=arr[:, 1], a=arr[:, 2], b=arr[:, 3], theta=np.mod(arr[:, 4], math.pi),
            stain=arr[:, 5], kind=np.full(len(arr), ENDOTHELIAL, np.int8), seed=arr[:, 6].astype(np.int64),
        )  # fmt: skip
    else:
        endo = empty
    return Vessels(shapely.union_all(walls), shapely.union_all(lumens), endo, len(lumens))
