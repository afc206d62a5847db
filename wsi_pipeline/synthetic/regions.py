"""Tissue-region truth of a synthetic scene: a partition of the tissue into classes.

Classes and label values follow the region map's contract: 0 background, 1 Epidermis
(the nucleated epidermis; keratin is not epidermis), 2 Dermis (tissue minus the others),
3 Tumor, 4 Inflammation (the lymphoid aggregate), 5 Other (the keratin layer). Where
geometries overlap the order Tumor > Inflammation > Other > Epidermis wins, so the five
regions are disjoint and their union is the tissue.
"""

from __future__ import annotations

import numpy as np
import shapely
from shapely.geometry import MultiPolygon, Polygon
from shapely.geometry.base import BaseGeometry

REGION_LABELS = {"Epidermis": 1, "Dermis": 2, "Tumor": 3, "Inflammation": 4, "Other": 5}


def polygonal(geom: BaseGeometry | None) -> MultiPolygon:
    """The polygonal part of ``geom`` (slivers of lines/points dropped) as a MultiPolygon."""
    if geom is None or geom.is_empty:
        return MultiPolygon()
    geom = shapely.make_valid(geom)
    polys: list[Polygon] = []
    stack = [geom]
    while stack:
        g = stack.pop()
        if g.geom_type == "Polygon":
            if g.area > 0:
                polys.append(g)
        elif hasattr(g, "geoms"):
            stack.extend(g.geoms)
    return MultiPolygon(sorted(polys, key=lambda p: (p.bounds[0], p.bounds[1])))


def region_geometries(scene) -> dict[str, MultiPolygon]:
    """``{class: MultiPolygon}`` (level-0 px) for every class of :data:`REGION_LABELS`, in
    that order; a class absent from the scene maps to an empty MultiPolygon."""
    tissue = scene.tissue
    tumor = polygonal(None if scene.tumor is None else scene.tumor.intersection(tissue))
    infl = polygonal(None if scene.inflammation is None else scene.inflammation.intersection(tissue).difference(tumor))
    taken = shapely.union_all([tumor, infl])
    other = polygonal(scene.keratin.intersection(tissue).difference(taken))
    taken = shapely.union_all([taken, other])
    epid = polygonal(scene.epidermis.intersection(tissue).difference(taken))
    taken = shapely.union_all([taken, epid])
    dermis = polygonal(tissue.difference(taken))
    return {"Epidermis": epid, "Dermis": dermis, "Tumor": tumor, "Inflammation": infl, "Other": other}


def region_label_map(scene, *, downsample: float) -> np.ndarray:
    """Truth label raster ``(ceil(H / downsample), ceil(W / downsample))`` uint8 (values of
    :data:`REGION_LABELS`, 0 = no tissue); pixel ``(r, c)`` covers level-0
    ``[c * downsample, (c + 1) * downsample)`` and takes the class at its centre."""
    w = int(np.ceil(scene.width / downsample))
    h = int(np.ceil(scene.height / downsample))
    xs = (np.arange(w) + 0.5) * downsample
    ys = (np.arange(h) + 0.5) * downsample
    gx, gy = np.meshgrid(xs, ys)
    out = np.zeros((h, w), np.uint8)
    for name, geom in region_geometries(scene).items():
        if geom.is_empty:
            continue
        x0, y0, x1, y1 = geom.bounds
        win = (gx >= x0) & (gx <= x1) & (gy >= y0) & (gy <= y1)
        inside = np.zeros((h, w), bool)
        inside[win] = shapely.contains_xy(geom, gx[win], gy[win])
        out[inside] = REGION_LABELS[name]
    return out
