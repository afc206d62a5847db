"""The skin surface Breslow is measured from: the granular line and the ulcer bases.

All geometry in micrometres.

* **Granular line**: the upper boundary of the nucleated epidermis (the tissue map's
  ``Epidermis``), i.e. its boundary that does not touch the tissue below (Dermis, Tumor,
  Inflammation) and lies within ``surface_um`` of the tissue's outer edge.
* **Ulcer**: a stretch of the tissue's outer edge where the epidermis is absent, over
  tumour (:func:`~wsi_pipeline.report.margins.surface.surface_mask`). The ulcer base is that
  stretch of edge.
* **Reference**: the granular line plus the ulcer bases (AJCC 8: Breslow thickness is
  measured from the top of the granular layer or, over an ulcer, from the ulcer base).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import shapely
from shapely.geometry import LineString, MultiLineString

from wsi_pipeline.report.margins.edges import INK_ON_EDGE_UM, polygons_of
from wsi_pipeline.report.margins.surface import cyclic_runs, surface_mask


@dataclass(frozen=True)
class Ulcer:
    """One ulcer: the edge stretch (µm) and the piece it is on."""

    piece: int
    base: LineString

    @property
    def length_um(self) -> float:
        return float(self.base.length)


@dataclass(frozen=True)
class SkinSurface:
    """granular : the granular line (µm); ulcers : the ulcer bases; reference : both together."""

    granular: MultiLineString
    ulcers: tuple[Ulcer, ...]

    @property
    def reference(self):
        parts = list(self.granular.geoms) + [u.base for u in self.ulcers]
        return MultiLineString(parts) if parts else None

    @property
    def found(self) -> bool:
        return not self.granular.is_empty or bool(self.ulcers)


def granular_line(epidermis, below, tissue_edge, *, surface_um: float, step_um: float = 4.0,
                  touch_um: float = 6.0, ink=None, ink_distance_um: float = 150.0,
                  surface_edges=None) -> MultiLineString:
    """The upper boundary of ``epidermis`` as lines (µm).

    epidermis : the map's Epidermis; below : the tissue under it (Dermis, Tumor,
    Inflammation); tissue_edge : the tissue pieces' outer rings; ink : the ink regions. A
    boundary point is kept when it is farther than ``touch_um`` from ``below``, within
    ``surface_um`` of the tissue edge (islands of "epidermis" deep in the dermis are not the
    surface) and not beside ink (the inked edges are the surgical margins, not the skin surface);
    with ``surface_edges`` (the edge stretches found to be epidermal surface), only under them.
    """
    lines = []
    for poly in polygons_of(epidermis):
        ring = LineString(poly.exterior.coords)
        n = max(8, math.ceil(ring.length / step_um))
        s = np.arange(n) * (ring.length / n)
        pts = shapely.line_interpolate_point(ring, s)
        keep = shapely.distance(pts, tissue_edge) <= surface_um
        if below is not None and not below.is_empty:
            keep &= shapely.distance(pts, below) > touch_um
        if ink is not None and not ink.is_empty:
            keep &= shapely.distance(pts, ink) > ink_distance_um + surface_um
        if surface_edges is not None:
            keep &= shapely.distance(pts, surface_edges) <= surface_um + 10.0 if not surface_edges.is_empty else False
        lines += _runs(shapely.get_coordinates(pts), keep)
    return MultiLineString(lines)


def find_ulcers(pieces, epidermis, tumour, inks, *, surface_um: float, ulcer_depth_um: float,
                ink_distance_um: float, step_um: float = 5.0, min_ulcer_um: float = 30.0) -> tuple[Ulcer, ...]:
    """Ulcers along each piece's outer edge (see :func:`~wsi_pipeline.report.margins.surface.surface_mask`);
    gaps shorter than ``min_ulcer_um`` are not reported. µm throughout."""
    if epidermis is None or epidermis.is_empty or tumour is None or tumour.is_empty:
        return ()
    ink = shapely.union_all(list(inks.values())) if inks else None
    out = []
    for index, piece in enumerate(pieces):
        ring = LineString(piece.exterior.coords)
        n = max(16, math.ceil(ring.length / step_um))
        s = np.arange(n) * (ring.length / n)
        pts = shapely.line_interpolate_point(ring, s)
        # inked as the margin edges see it: ink on the point, not merely within its reach
        inked = np.zeros(n, bool) if ink is None else shapely.distance(pts, ink) <= min(ink_distance_um, INK_ON_EDGE_UM)
        _, runs = surface_mask(ring, s, epidermis, inked=inked, tumour=tumour, surface_um=surface_um,
                               ulcer_depth_um=ulcer_depth_um)
        xy = shapely.get_coordinates(pts)
        for run in runs:
            if len(run) >= 2 and LineString(xy[run]).length >= min_ulcer_um:
                out.append(Ulcer(index, LineString(xy[run])))
    return tuple(out)


def ulcers_seen_by_cells(ulcers: tuple[Ulcer, ...], epithelial_xy: np.ndarray, tumour_xy: np.ndarray, *,
                         within_um: float, min_ulcer_um: float, step_um: float = 5.0) -> tuple[Ulcer, ...]:
    """The parts of ``ulcers`` where the cells agree that tumour lies bare at the surface.

    The map can take a thin epidermis over a junctional tumour into its Tumor; the nuclei
    then still say epidermis. Each point of an ulcer base (every ``step_um``) is judged by its
    nearest typed nucleus within ``within_um`` (µm; centroids of Epithelial and Tumor nuclei):
    an Epithelial one covers it (epidermis present: not ulcerated there), a Tumor one or none
    leaves the map's call. Runs shorter than ``min_ulcer_um`` are dropped."""
    if not ulcers or len(epithelial_xy) == 0:
        return ulcers
    from scipy.spatial import cKDTree

    xy = np.concatenate([np.asarray(epithelial_xy, float).reshape(-1, 2), np.asarray(tumour_xy, float).reshape(-1, 2)])
    is_epithelial = np.arange(len(xy)) < len(epithelial_xy)
    tree = cKDTree(xy)
    out = []
    for ulcer in ulcers:
        n = max(2, math.ceil(ulcer.base.length / step_um) + 1)
        pts = shapely.get_coordinates(shapely.line_interpolate_point(ulcer.base, np.linspace(0, ulcer.base.length, n)))
        dist, idx = tree.query(pts, distance_upper_bound=within_um)
        found = np.isfinite(dist)
        bare = ~found | ~is_epithelial[np.where(found, idx, 0)]
        for run in _linear_runs(bare):
            if len(run) >= 2 and LineString(pts[run]).length >= min_ulcer_um:
                out.append(Ulcer(ulcer.piece, LineString(pts[run])))
    return tuple(out)


def _linear_runs(keep: np.ndarray) -> list[np.ndarray]:
    """Index arrays of the runs of True in ``keep`` (not wrapping round)."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], keep.astype(np.int8), [0]])))
    return [np.arange(a, b) for a, b in zip(edges[::2], edges[1::2])]


def _runs(xy: np.ndarray, keep: np.ndarray) -> list[LineString]:
    """Lines through consecutive kept points of a closed ring (runs across the start joined)."""
    return [LineString(xy[run]) for run in cyclic_runs(keep) if len(run) >= 2]
