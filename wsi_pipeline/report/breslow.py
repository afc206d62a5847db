"""Breslow thickness and ulceration (AJCC 8th edition), from the lesion and the tissue map.

Breslow thickness: the largest distance from a tumour point to the reference surface (the
granular line, or over an ulcer the ulcer base; :mod:`.skin_surface`). The distance from a
point to a line is taken at the line's nearest point, where the measuring line stands
perpendicular to the local surface; the measuring line runs from that foot to the deepest
tumour point. Reported in mm to 0.1 mm (halves up: 0.75-0.84 mm is 0.8 mm). Only tumour and
surface of the same tissue piece are paired.

A tumour whose deepest point lies on a cut edge of the specimen (an inked margin or an
uninked edge, not the epidermal surface) goes on beyond it: the measured thickness is a
minimum, reported as "at least" (:func:`transected_at`), and pT is not drafted from it.

Ulceration: present when an ulcer (a stretch of surface without epidermis over the tumour)
is found; its length is the length of the ulcer base(s).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

import numpy as np
import shapely
from shapely.geometry import LineString

from wsi_pipeline.report.findings import Finding, not_assessed
from wsi_pipeline.report.margins.config import SURFACE, UNINKED
from wsi_pipeline.report.skin_surface import SkinSurface

BRESLOW = "Breslow thickness"
ULCERATION = "Ulceration"


@dataclass(frozen=True)
class Breslow:
    """thickness_um : the measured thickness; line : foot on the reference -> deepest tumour
    point (µm); from_ulcer : the foot lies on an ulcer base; piece : tissue piece index;
    transected : the cut edge the deepest tumour point lies on (e.g. "black ink (deep)"),
    None when it lies inside the tissue: with an edge, the thickness is a minimum."""

    thickness_um: float
    line: LineString
    from_ulcer: bool
    piece: int
    transected: str | None = None

    @property
    def thickness_mm(self) -> float:
        """Rounded to 0.1 mm, halves up (AJCC 8), from the thickness taken to 0.1 µm first (far
        finer than any pixel), so float noise cannot tip 750.0 µm to 0.7 mm."""
        return round_tenth_mm(round(self.thickness_um, 1) / 1000.0)


def round_tenth_mm(mm: float) -> float:
    """``mm`` to the nearest 0.1, halves up (0.75 -> 0.8; Python's round would give 0.8 or 0.7)."""
    return float(Decimal(repr(float(mm))).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP))


def measure_breslow(pieces, lesion_foci, surface: SkinSurface, *, surface_um: float,
                    step_um: float = 2.0) -> Breslow | None:
    """The deepest tumour point's distance to the reference surface of its piece (µm);
    ``None`` when no piece has both tumour and surface. A measuring line that leaves the
    tissue (more than 5% of it outside) does not stand on the skin above the tumour (the
    map found epidermis elsewhere only): :class:`ValueError` says so."""
    reference = surface.reference
    if reference is None or not lesion_foci:
        return None
    lesion = shapely.union_all(list(lesion_foci))
    best = None
    for index, piece in enumerate(pieces):
        ref = reference.intersection(piece.buffer(surface_um))
        tumour = lesion.intersection(piece)
        if ref.is_empty or tumour.is_empty or tumour.area <= 0:
            continue
        pts = shapely.get_coordinates(shapely.segmentize(tumour.boundary, step_um))
        d = shapely.distance(shapely.points(pts), ref)
        i = int(np.argmax(d))
        if best is None or d[i] > best[0]:
            foot = shapely.get_coordinates(shapely.shortest_line(shapely.Point(pts[i]), ref))[1]
            best = (float(d[i]), LineString([foot, pts[i]]), index)
    if best is None:
        return None
    d, line, index = best
    outside = line.difference(pieces[index].buffer(10.0)).length
    if line.length > 0 and outside > 0.05 * line.length:
        raise ValueError("the measuring line would leave the tissue: no epidermal surface found above the tumour")
    foot = shapely.Point(line.coords[0])
    from_ulcer = any(u.piece == index and u.base.distance(foot) < 1e-6 + 1.0 for u in surface.ulcers)
    return Breslow(d, line, from_ulcer, index)


#: the deepest tumour point lies on a cut edge when it is this close to it (µm): a few map pixels
TRANSECTED_UM = 10.0


def transected_at(breslow: Breslow, segments, names: dict[str, str], *,
                  within_um: float = TRANSECTED_UM) -> str | None:
    """The cut edge the deepest tumour point of ``breslow`` lies on, or None.

    segments : the pieces' edge stretches (``.piece``, ``.colour``, ``.line`` in µm; the
    epidermal surface is never a cut); names : ink colour -> margin name. An
    edge within ``within_um`` of the point counts: the tumour goes on beyond the specimen
    there, deeper or wider, so its thickness is a minimum."""
    deep = shapely.Point(breslow.line.coords[-1])
    near = [(s.line.distance(deep), s.colour) for s in segments
            if s.piece == breslow.piece and s.colour != SURFACE]
    near = [n for n in near if n[0] <= within_um]
    if not near:
        return None
    colour = min(near)[1]
    return "an uninked edge" if colour == UNINKED else f"{colour} ink ({names.get(colour, colour)})"


def breslow_finding(breslow: Breslow | None, *, source: str, reason: str | None = None) -> Finding:
    """The Breslow line of the draft (``reason`` when it could not be measured); a tumour
    transected at a cut edge is "at least" its measured thickness."""
    if breslow is None:
        return not_assessed(BRESLOW, reason or "no tumour under an identified epidermal surface", source=source)
    ref = "the ulcer base" if breslow.from_ulcer else "the top of the granular layer"
    details = {"measured_um": round(breslow.thickness_um, 1), "from": ref, "piece": breslow.piece + 1}
    if breslow.transected is None:
        return Finding(BRESLOW, breslow.thickness_mm, f"{breslow.thickness_mm:.1f} mm", source, details=details)
    return Finding(BRESLOW, breslow.thickness_mm,
                   f"at least {breslow.thickness_mm:.1f} mm (tumour transected at {breslow.transected})", source,
                   f"the deepest tumour lies on {breslow.transected}: the thickness is a minimum",
                   details={**details, "at_least": True, "transected_at": breslow.transected})


def ulceration_finding(surface: SkinSurface | None, *, source: str, reason: str | None = None) -> Finding:
    """Present / absent with the length (mm) of the ulcer base(s)."""
    if surface is None:
        return not_assessed(ULCERATION, reason or "no epidermis identified", source=source)
    if not surface.ulcers:
        return Finding(ULCERATION, False, "absent", source, details={"length_mm": 0.0})
    length = sum(u.length_um for u in surface.ulcers) / 1000.0
    return Finding(ULCERATION, True, f"present, {length:.2f} mm", source,
                   details={"length_mm": round(length, 3), "stretches": len(surface.ulcers)})
