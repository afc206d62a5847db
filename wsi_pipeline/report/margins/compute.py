"""Lesion-to-edge clearance per ink colour (named margin), per focus and overall, in µm.

For each tissue piece the lesion is clipped to the piece (a lesion crossing the outline
touches it: distance 0, ``involved``); distances are shapely distances between micrometre
geometries. Margins are grouped by ink colour across pieces; pieces without lesion are
reported as such.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import shapely
from shapely.geometry import LineString, Point, Polygon
from shapely.ops import nearest_points

from wsi_pipeline.report.margins._units import point_px
from wsi_pipeline.report.margins.config import SCAN_BORDER, SURFACE, UNINKED, MarginConfig
from wsi_pipeline.report.margins.edges import EdgeSegment
from wsi_pipeline.report.margins.lesion import Lesion
from wsi_pipeline.report.margins.profile import ProfileSegment, clearance_profile

INVOLVED, CLOSE, CLEAR, NOT_ASSESSED = "involved", "close", "clear", "no lesion in piece"
NO_LESION = "no lesion found"
_TOUCH_UM = 1e-3  # distances below this count as touching


@dataclass(frozen=True)
class Approach:
    """Closest approach between the lesion and one edge: the two points (µm) and distance."""

    distance_um: float
    lesion_point: tuple[float, float]
    edge_point: tuple[float, float]
    piece: int

    @property
    def line(self) -> LineString:
        return LineString([self.lesion_point, self.edge_point])

    def to_dict(self, mpp) -> dict:
        return {
            "distance_um": round(self.distance_um, 2),
            "distance_mm": round(self.distance_um / 1000, 3),
            "piece": self.piece + 1,
            "lesion_point_px": point_px(self.lesion_point, mpp),
            "edge_point_px": point_px(self.edge_point, mpp),
        }


@dataclass(frozen=True)
class MarginResult:
    """One named margin (one ink colour): its closest approach and status."""

    colour: str
    name: str
    status: str
    approach: Approach | None
    edge_length_um: float
    involved: tuple = ()  # shapely geometries (µm) where the lesion meets this edge

    @property
    def clearance_mm(self) -> float | None:
        return None if self.approach is None else self.approach.distance_um / 1000

    @property
    def involved_length_um(self) -> float:
        return float(sum(g.length for g in self.involved))

    def label(self) -> str:
        """E.g. ``"1.5 mm to blue (12 o'clock peripheral)"``."""
        where = self.name if self.colour in (UNINKED, SURFACE) else f"{self.colour} ({self.name})"
        if self.status == INVOLVED:
            return f"involved: {where}"
        return f"{format_mm(self.clearance_mm)} to {where}"

    def to_dict(self, mpp) -> dict:
        return {
            "colour": self.colour,
            "name": self.name,
            "status": self.status,
            "clearance_mm": None if self.clearance_mm is None else round(self.clearance_mm, 3),
            "closest": None if self.approach is None else self.approach.to_dict(mpp),
            "edge_length_mm": round(self.edge_length_um / 1000, 3),
            "involved_length_mm": round(self.involved_length_um / 1000, 3),
            "label": self.label() if self.approach else None,
        }


@dataclass(frozen=True)
class FocusResult:
    """One lesion focus (connected region) within one piece and its nearest margin."""

    focus: int
    piece: int | None
    area_mm2: float
    nearest: MarginResult | None

    def to_dict(self, mpp) -> dict:
        return {
            "focus": self.focus + 1,
            "piece": None if self.piece is None else self.piece + 1,
            "area_mm2": round(self.area_mm2, 4),
            "nearest_margin": None if self.nearest is None else self.nearest.to_dict(mpp),
        }


@dataclass(frozen=True)
class MarginAssessment:
    """Everything the report shows; geometry in µm, ``to_dict`` adds pixel coordinates."""

    status: str  # "ok" | "no lesion found"
    lesion: Lesion
    pieces: tuple[Polygon, ...]
    segments: tuple[EdgeSegment, ...]
    margins: tuple[MarginResult, ...]  # closest first; not-assessed last
    foci: tuple[FocusResult, ...]
    lesion_by_piece: dict = field(default_factory=dict)
    profile: tuple[ProfileSegment, ...] = ()
    close_mm: float = 1.0
    surface_known: bool = False  # the tissue map said where the epidermis is
    surface_from: str = "no tissue map"

    @property
    def closest(self) -> MarginResult | None:
        """The margin for the headline: the closest assessed inked margin (the grossing person
        inks the surgical margins); an uninked edge only when no inked margin is assessed
        (it may be the epidermal surface where the tissue map missed the epidermis)."""
        assessed = [m for m in self.margins if m.approach is not None]
        inked = [m for m in assessed if m.colour != UNINKED]  # the surface is listed only when a lab makes it a margin
        assessed = inked or assessed
        return assessed[0] if assessed else None

    @property
    def surface(self) -> tuple[EdgeSegment, ...]:
        """Edge stretches that are the epidermal surface (not margins unless configured)."""
        return tuple(s for s in self.segments if s.colour == SURFACE)

    def to_dict(self, mpp: tuple[float, float]) -> dict:
        closest = self.closest
        return {
            "status": self.status,
            "mpp": list(mpp),
            "lesion": {
                "source": self.lesion.source,
                "label": self.lesion.label,
                "foci": len(self.lesion.foci),
                "area_mm2": round(sum(f.area for f in self.lesion.foci) / 1e6, 4),
            },
            "close_threshold_mm": self.close_mm,
            "epidermal_surface": {
                "identified": self.surface_known,
                "from": self.surface_from,
                "length_mm": round(sum(s.line.length for s in self.surface) / 1000, 3),
                "is_margin": any(m.colour == SURFACE for m in self.margins),
            },
            "closest": None if closest is None else closest.to_dict(mpp),
            "margins": [m.to_dict(mpp) for m in self.margins],
            "foci": [f.to_dict(mpp) for f in self.foci],
            "pieces": [
                {
                    "piece": i + 1,
                    "area_mm2": round(p.area / 1e6, 4),
                    "perimeter_mm": round(p.exterior.length / 1000, 3),
                    "has_lesion": i in self.lesion_by_piece,
                }
                for i, p in enumerate(self.pieces)
            ],
            "profile": [p.to_dict() for p in self.profile],
        }


def format_mm(mm: float | None) -> str:
    """Clearance in mm to 0.1 (``"<0.1 mm (40 µm)"`` for small non-zero values)."""
    if mm is None:
        return "n/a"
    if mm == 0:
        return "0 mm"
    if mm < 0.05:
        return f"<0.1 mm ({mm * 1000:.0f} µm)"
    return f"{mm:.1f} mm"


def status_of(distance_um: float, *, close_mm: float) -> str:
    if distance_um <= _TOUCH_UM:
        return INVOLVED
    return CLOSE if distance_um < close_mm * 1000 else CLEAR


def compute_margins(
    pieces: list[Polygon],
    segments: list[EdgeSegment],
    lesion: Lesion,
    *,
    config: MarginConfig,
    surface_known: bool = False,
    surface_from: str = "no tissue map",
) -> MarginAssessment:
    """Clearances of the lesion from every named margin (all inputs in µm).

    Scan-border edges are never margins; epidermal-surface edges only when
    ``config.surface_is_margin``."""
    lesion_by_piece = _lesion_by_piece(pieces, lesion)
    not_margins = {SCAN_BORDER} | (set() if config.surface_is_margin else {SURFACE})
    margins_only = [seg for seg in segments if seg.colour not in not_margins]
    per_segment = [(seg, _approach(seg, lesion_by_piece.get(seg.piece))) for seg in margins_only]
    margins = _group_by_colour(per_segment, config)
    foci = _foci(pieces, margins_only, lesion, config)
    profile = clearance_profile(
        margins_only,
        lesion_by_piece,
        step_um=config.profile_step_um,
        perimeters={i: p.exterior.length for i, p in enumerate(pieces)},
    )
    return MarginAssessment(
        status="ok" if lesion_by_piece else NO_LESION,
        lesion=lesion,
        pieces=tuple(pieces),
        segments=tuple(segments),
        margins=tuple(margins),
        foci=tuple(foci),
        lesion_by_piece=lesion_by_piece,
        profile=tuple(profile),
        close_mm=config.close_mm,
        surface_known=surface_known,
        surface_from=surface_from,
    )


def _lesion_by_piece(pieces: list[Polygon], lesion: Lesion) -> dict:
    if not lesion.found:
        return {}
    whole = shapely.union_all(list(lesion.foci))
    out = {}
    for i, piece in enumerate(pieces):
        part = whole.intersection(piece)
        if not part.is_empty and part.area > 0:
            out[i] = part
    return out


def _approach(seg: EdgeSegment, lesion) -> tuple[Approach, tuple] | None:
    if lesion is None:
        return None
    a, b = nearest_points(lesion, seg.line)
    distance = float(lesion.distance(seg.line))
    involved = ()
    if distance <= _TOUCH_UM:
        meet = seg.line.intersection(lesion.buffer(_TOUCH_UM))
        involved = tuple(g for g in getattr(meet, "geoms", [meet]) if not g.is_empty)
    return Approach(distance, (a.x, a.y), (b.x, b.y), seg.piece), involved


def _group_by_colour(per_segment, config: MarginConfig) -> list[MarginResult]:
    out = []
    for colour in sorted({seg.colour for seg, _ in per_segment}):
        mine = [(s, r) for s, r in per_segment if s.colour == colour]
        length = sum(s.line.length for s, _ in mine)
        found = [r for _, r in mine if r is not None]
        name = config.margin_name(colour)
        if not found:
            out.append(MarginResult(colour, name, NOT_ASSESSED, None, length))
            continue
        best = min(found, key=lambda r: r[0].distance_um)[0]
        involved = tuple(g for _, inv in found for g in inv)
        status = status_of(best.distance_um, close_mm=config.close_mm)
        out.append(MarginResult(colour, name, status, best, length, involved))
    return sorted(out, key=lambda m: (m.approach is None, m.approach.distance_um if m.approach else 0))


def _foci(pieces, segments, lesion: Lesion, config: MarginConfig) -> list[FocusResult]:
    out = []
    for k, focus in enumerate(lesion.foci):
        hits = [(i, focus.intersection(p)) for i, p in enumerate(pieces)]
        hits = [(i, part) for i, part in hits if not part.is_empty and part.area > 0]
        if not hits:
            out.append(FocusResult(k, None, focus.area / 1e6, None))
        for i, part in hits:
            found = [(s, _approach(s, part)) for s in segments if s.piece == i]
            margins = _group_by_colour(found, config)
            out.append(FocusResult(k, i, part.area / 1e6, margins[0] if margins else None))
    return out


def closest_lines(assessment: MarginAssessment) -> list[tuple[MarginResult, LineString | Point]]:
    """Per assessed margin, the closest-approach line (a Point when it has zero length)."""
    out = []
    for m in assessment.margins:
        if m.approach is None:
            continue
        line = m.approach.line
        out.append((m, line if line.length > 0 else Point(m.approach.edge_point)))
    return out
