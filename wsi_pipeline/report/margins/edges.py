"""Tissue edges: outer boundaries of the tissue pieces, split into segments by ink colour.

Only each piece's *exterior* ring is a margin; holes (follicles, vessels, tears inside the
tissue) are not. An edge point takes the colour of the nearest ink region within
``ink_distance_um``; points with no ink nearby are ``"uninked"``; points on the border of
the scanned area (the tissue continues beyond the image) are ``"scan border"``, not margins.
With a tissue map, an uninked point with the epidermis right under it (within
``surface_um`` along the inward normal) is ``"epidermal surface"``: the skin's surface, not
a surgical margin. The nearest-ink rule bridges gaps in the detected ink; a point coloured only
by that reach (no ink within :data:`INK_ON_EDGE_UM`) keeps the colour only between two inked
stretches of it (past the end of an ink it is uninked), and is surface where the epidermis is
under it.
Consecutive points of one colour form one :class:`EdgeSegment`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import shapely
from shapely.geometry import LineString, MultiPolygon, Polygon
from shapely.ops import substring

from tiling.errors import InputError
from wsi_pipeline.report.margins._io import read_features
from wsi_pipeline.report.margins._units import to_um
from wsi_pipeline.report.margins.config import SCAN_BORDER, SURFACE, UNINKED
from wsi_pipeline.report.margins.surface import cyclic_runs, inward_normals, surface_mask

INK_ON_EDGE_UM = 25.0
"""An edge point with detected ink this close is inked (on the demo's 8 µm/px tissue mask the
inked edge lies 0-13 µm from its ink); farther, its colour is only the nearest ink's."""


@dataclass(frozen=True)
class EdgeSegment:
    """A stretch of one piece's outer boundary carrying one ink colour (micrometres).

    piece : index of the tissue piece; colour : ink colour or ``"uninked"``;
    line : the stretch as a LineString in µm; start_um : its position along the piece's
    perimeter (µm from the ring's first vertex).
    """

    piece: int
    colour: str
    line: LineString
    start_um: float


def polygons_of(geometry) -> list[Polygon]:
    """The non-empty polygons inside any (multi)geometry, largest first."""
    if geometry is None or geometry.is_empty:
        return []
    if isinstance(geometry, Polygon):
        return [geometry]
    parts = [g for g in getattr(geometry, "geoms", []) for g in polygons_of(g)]
    return sorted(parts, key=lambda p: -p.area)


def load_tissue(path: str | Path, *, mpp: tuple[float, float]) -> tuple[list[Polygon], dict[str, MultiPolygon]]:
    """Read ``tissue.geojson``: tissue pieces and ink regions per colour, both in µm.

    Pieces are the polygons classified ``Tissue`` (multipolygons exploded, overlapping ones
    merged), largest first; ink regions are features classified ``Ink: <colour>`` (or
    carrying ``inkColor``). Raises :class:`InputError` when no tissue is found.
    """
    tissue, inks = [], {}
    for feat in read_features(path):
        cls = (feat.classification or "").strip()
        colour = feat.extra.get("inkColor") if isinstance(feat.extra, dict) else None
        if cls.lower().startswith("ink"):
            colour = colour or cls.split(":", 1)[-1]
        if colour:
            inks.setdefault(str(colour).strip().lower(), []).extend(polygons_of(feat.geometry))
        elif cls.lower() == "tissue":
            tissue.extend(polygons_of(feat.geometry))
    if not tissue:
        raise InputError(path, "no features classified 'Tissue' (run `wsi-pipeline tissue` first)")
    pieces = polygons_of(to_um(shapely.union_all(tissue), mpp))
    ink_um = {c: MultiPolygon(polygons_of(to_um(shapely.union_all(p), mpp))) for c, p in inks.items() if p}
    return pieces, ink_um


def split_edges(
    pieces: list[Polygon],
    inks: dict[str, MultiPolygon],
    *,
    ink_distance_um: float,
    step_um: float,
    frame: Polygon | None = None,
    epidermis=None,
    surface_um: float = 80.0,
    tumour=None,
    ulcer_depth_um: float = 100.0,
) -> list[EdgeSegment]:
    """Split every piece's exterior into :class:`EdgeSegment` by nearest ink colour.

    Edge colour is decided at points every ``step_um`` along the ring, so segment ends are
    exact to ``step_um / 2``. ``frame``: the scanned area (µm); edge points within
    ``step_um / 2`` of its border are labelled ``"scan border"``. ``epidermis``: the tissue
    map's Epidermis (µm) or ``None`` (surface not assessable: uninked edges stay uninked);
    ``tumour`` (µm): an uninked gap in the surface over it is an ulcer, which is surface too
    (:func:`~wsi_pipeline.report.margins.surface.surface_mask`).
    """
    segments: list[EdgeSegment] = []
    for index, piece in enumerate(pieces):
        ring = LineString(piece.exterior.coords)
        segments.extend(_split_ring(index, ring, inks, ink_distance_um=ink_distance_um, step_um=step_um, frame=frame,
                                    epidermis=epidermis, surface_um=surface_um, tumour=tumour,
                                    ulcer_depth_um=ulcer_depth_um))
    return segments


def _split_ring(index, ring: LineString, inks, *, ink_distance_um: float, step_um: float, frame,
                epidermis=None, surface_um: float = 80.0, tumour=None, ulcer_depth_um: float = 100.0) -> list[EdgeSegment]:
    length = ring.length
    n = max(8, math.ceil(length / step_um))
    s = np.arange(n) * (length / n)
    points = shapely.line_interpolate_point(ring, s)
    labels, dist = _colour_at(points, inks, ink_distance_um)
    on_ink = _on_ink(ring, s, points, labels, dist, inks)
    labels = _bridge_gaps_only(labels, on_ink)
    if epidermis is not None and not epidermis.is_empty:
        carried = (labels != UNINKED) & ~on_ink  # coloured only by a nearby ink's reach
        surface, _ = surface_mask(ring, s, epidermis, inked=(labels != UNINKED) & ~carried, tumour=tumour,
                                  surface_um=surface_um, ulcer_depth_um=ulcer_depth_um)
        labels[surface & ((labels == UNINKED) | carried)] = SURFACE
    if frame is not None:
        labels[shapely.distance(points, frame.exterior) <= step_um / 2] = SCAN_BORDER
    changes = np.flatnonzero(labels != np.roll(labels, 1))
    if changes.size == 0:
        return [EdgeSegment(index, labels[0], ring, 0.0)]
    half = length / n / 2
    bounds = [s[k] - half for k in changes]
    out = []
    for i, k in enumerate(changes):
        start = bounds[i]
        end = bounds[i + 1] if i + 1 < len(bounds) else bounds[0] + length
        out.append(EdgeSegment(index, labels[k], _ring_part(ring, start, end), start % length))
    return out


def _on_ink(ring: LineString, s: np.ndarray, points, labels: np.ndarray, dist: np.ndarray, inks) -> np.ndarray:
    """``(N,)`` bool: the point's ink lies on it: within :data:`INK_ON_EDGE_UM`, and touching
    (< 2 µm) or straight under or over it (within 50° of the edge's normal). Just past the end
    of an ink stretch the ink lies beside the point, along the edge: not on it."""
    on = (labels != UNINKED) & (dist <= INK_ON_EDGE_UM)
    idx = np.flatnonzero(on & (dist >= 2.0))
    if idx.size:
        normals = inward_normals(ring, s[idx])
        for colour in set(labels[idx]):
            k = idx[labels[idx] == colour]
            sub = np.flatnonzero(labels[idx] == colour)
            near = shapely.get_coordinates(shapely.shortest_line(points[k], inks[colour]))[1::2]
            v = near - shapely.get_coordinates(points[k])
            cos = np.einsum("ij,ij->i", v, normals[sub]) / np.maximum(np.linalg.norm(v, axis=1), 1e-12)
            on[k[np.abs(cos) < np.cos(np.radians(50))]] = False
    return on


def _bridge_gaps_only(labels: np.ndarray, on_ink: np.ndarray) -> np.ndarray:
    """Keep a colour carried by the ink's reach (its ink not on the point, :func:`_on_ink`)
    only on runs bridging a gap between two inked stretches of that colour; a run past the end
    of an ink stretch is uninked. A colour with no point on its ink keeps its reach everywhere
    (ink detected only inside the edge)."""
    out = labels.copy()
    for colour in set(labels) - {UNINKED}:
        mine = labels == colour
        on = mine & on_ink
        if not on.any():
            continue
        n = len(labels)
        for run in cyclic_runs(mine & ~on):
            if len(run) == n or not (on[(run[0] - 1) % n] and on[(run[-1] + 1) % n]):
                out[run] = UNINKED
    return out


def _colour_at(points: np.ndarray, inks: dict[str, MultiPolygon],
               ink_distance_um: float) -> tuple[np.ndarray, np.ndarray]:
    """Colour of the nearest ink region within the distance for each point, ``(N,)`` str, and
    the distance to it, ``(N,)`` µm (inf when uninked)."""
    labels = np.full(len(points), UNINKED, dtype=object)
    best = np.full(len(points), np.inf)
    for colour, region in sorted(inks.items()):
        d = shapely.distance(points, region)
        take = (d <= ink_distance_um) & (d < best)
        labels[take] = colour
        best[take] = d[take]
    return labels, best


def _ring_part(ring: LineString, start: float, end: float) -> LineString:
    """Part of a closed ring between perimeter positions ``start < end`` (may wrap)."""
    length = ring.length
    if start < 0:
        start, end = start + length, end + length
    if end <= length:
        return substring(ring, start, end)
    first = substring(ring, start, length)
    second = substring(ring, 0.0, end - length)
    coords = list(first.coords) + list(second.coords)[1:]
    return LineString(coords)
