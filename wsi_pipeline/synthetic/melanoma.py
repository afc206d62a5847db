"""Melanoma-like excisions: a junctional tumour of known Breslow thickness, ulceration and TILs.

Geometry (level-0 pixels, ``px`` pixels per micrometre):

* Granular line: the upper boundary of the nucleated epidermis, i.e. the bottom of the
  keratin layer (the tissue outline moved ``keratin_um`` inwards, along the epidermis arc).
* Tumour: a wobbly, slightly asymmetric bulb hanging from the epidermis at a surface point:
  its top is the middle of the nucleated epidermis (junctional: it replaces the lower
  epidermis and the rete ridges over its width), its depth is solved by bisection so that
  the Breslow thickness is exactly the one asked.
* Ulceration (``ulcer_um > 0``): over a stretch of the tumour the epidermis and keratin are
  absent (cut out of the tissue); the ulcer base is the tumour surface left exposed, a line
  of exactly ``ulcer_um`` along the tumour's top.
* Breslow thickness: the largest distance from a tumour point to the *reference surface*,
  which is the granular line, with the stretch over the ulcer replaced by the ulcer base
  (AJCC: "from the top of the granular layer, or the ulcer base, to the deepest point").
  The distance from a point to a curve is taken at the curve's nearest point, where the
  measuring line stands perpendicular to the local surface. The measuring line runs from
  that foot to the deepest tumour point.
* TILs (Clark): ``absent`` none among the tumour cells; ``non-brisk`` lymphocytes in a
  few foci of the invasive component; ``brisk`` lymphocytes throughout the invasive
  component (tumour below the original epidermis), at :data:`TIL_PER_MM2`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

import numpy as np
import shapely
from shapely.geometry import LineString, Point, Polygon
from shapely.geometry.base import BaseGeometry
from shapely.ops import substring

from wsi_pipeline.synthetic.nuclei import LYMPHOCYTE, Nuclei, _make, _sample_in

TIL_GRADES = ("absent", "non-brisk", "brisk")
TIL_PER_MM2 = 2500.0  # lymphocytes among the tumour cells where they infiltrate
TIL_FOCI = 2  # non-brisk: this many foci
TIL_FOCUS_UM = (25.0, 60.0)  # non-brisk focus radius range


@dataclass(frozen=True)
class Melanoma:
    """The truth of a melanoma-like scene (geometries in level-0 pixels)."""

    breslow_um: float
    breslow_line: LineString  # reference surface (foot) -> deepest tumour point
    reference: BaseGeometry  # granular line, the ulcer stretch replaced by the ulcer base
    ulcer_base: LineString | None
    ulcer_length_um: float
    til_grade: str
    invasive: BaseGeometry  # tumour below the original epidermis
    til_region: BaseGeometry | None  # where TILs were placed (None when absent)

    @property
    def ulcerated(self) -> bool:
        return self.ulcer_base is not None

    def pt(self) -> str:
        return ajcc_pt(self.breslow_um / 1000.0, ulcerated=self.ulcerated)


@dataclass(frozen=True)
class MelanomaGeometry:
    """What :func:`build_melanoma` changes in the scene."""

    tumor: BaseGeometry
    piece: Polygon  # the tissue piece, less the ulcer
    epidermis: BaseGeometry  # living epidermis + keratin, less tumour and ulcer
    keratin: BaseGeometry
    truth: Melanoma


def breslow_rounded_mm(breslow_mm: float) -> float:
    """Thickness to the nearest 0.1 mm, halves up (AJCC 8: 0.75-0.84 mm is recorded 0.8)."""
    return float(Decimal(repr(float(breslow_mm))).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP))


def ajcc_pt(breslow_mm: float, *, ulcerated: bool) -> str:
    """AJCC 8th edition pT of a melanoma from its thickness (mm, rounded to 0.1 mm first) and
    ulceration: T1a < 0.8 mm without ulceration; T1b < 0.8 mm with ulceration or 0.8-1.0 mm;
    T2 > 1.0-2.0; T3 > 2.0-4.0; T4 > 4.0 mm, each ``a`` without and ``b`` with ulceration."""
    t = breslow_rounded_mm(breslow_mm)
    if t < 0.8:
        return "pT1b" if ulcerated else "pT1a"
    if t <= 1.0:
        return "pT1b"
    stage = 2 if t <= 2.0 else 3 if t <= 4.0 else 4
    return f"pT{stage}{'b' if ulcerated else 'a'}"


def _largest(geom: BaseGeometry) -> Polygon:
    geom = shapely.make_valid(geom)
    polys = [g for g in getattr(geom, "geoms", [geom]) if g.geom_type == "Polygon"]
    if not polys:
        raise ValueError("the tissue has no polygon left")
    return max(polys, key=lambda p: p.area)


def _normal_at(line: LineString, s: float, inside: BaseGeometry, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """Unit tangent and inward normal (pointing into ``inside``) of ``line`` at arc length ``s``."""
    q = line.interpolate(min(s + eps, line.length))
    r = line.interpolate(max(s - eps, 0.0))
    tangent = np.array([q.x - r.x, q.y - r.y])
    tangent /= max(np.linalg.norm(tangent), 1e-12)
    normal = np.array([-tangent[1], tangent[0]])
    p = line.interpolate(s)
    if not inside.contains(Point(p.x + normal[0] * 4 * eps, p.y + normal[1] * 4 * eps)):
        normal = -normal
    return tangent, normal


def _stretch(ring, at: Point, length: float) -> LineString:
    """The piece of closed ``ring`` of ``length`` centred on the ring point nearest ``at``."""
    coords = np.asarray(ring.coords)[:-1]
    line = LineString(np.vstack([coords, coords[:1]]))
    s = line.project(at)
    if s - length / 2 < 0 or s + length / 2 > line.length:  # restart the ring half a turn away
        seg = np.hypot(*np.diff(np.vstack([coords, coords[:1]]), axis=0).T)
        cum = np.concatenate([[0.0], np.cumsum(seg)])[:-1]
        k = int(np.argmin(np.abs(cum - (s + line.length / 2) % line.length)))
        line = LineString(np.vstack([coords[k:], coords[: k + 1]]))
        s = line.project(at)
    if length >= line.length:
        raise ValueError("the ulcer is longer than the tissue surface")
    return substring(line, s - length / 2, s + length / 2)


def _bulb(centre, tangent, normal, half_width, depth, phases, n=384) -> Polygon:
    """A rounded-box outline (superellipse, exponent 3: a broad base rather than a V) with a
    deeper lobe in the middle of its base (one clear deepest point), wobbly and a little
    asymmetric, centred on the tumour's top."""
    t = np.linspace(0.0, 2 * np.pi, n, endpoint=False)
    r = 1 + 0.07 * np.cos(3 * t + phases[0]) + 0.04 * np.cos(5 * t + phases[1]) + 0.05 * np.cos(t + phases[2])
    c, s = np.cos(t), np.sin(t)
    u = half_width * r * np.sign(c) * np.abs(c) ** (2 / 3)
    v = depth * r * np.sign(s) * np.abs(s) ** (2 / 3)
    v = v * (1 + 0.15 * np.exp(-((u / (0.3 * half_width)) ** 2)) * (s > 0))  # a deeper, leading lobe
    pts = np.asarray(centre)[None] + u[:, None] * tangent[None] + v[:, None] * normal[None]
    return shapely.make_valid(Polygon(pts))


def _deepest(tumor: BaseGeometry, reference: BaseGeometry, step: float) -> tuple[float, np.ndarray]:
    """Largest distance from ``tumor``'s outline to ``reference`` (to within ``step / 2``) and
    the point where it is reached. The distance is 1-Lipschitz, so along an outline segment
    it exceeds its ends' by at most half the segment: only segments that could beat the best
    vertex are sampled every ``step``."""
    rings = [r for p in getattr(tumor, "geoms", [tumor]) if p.geom_type == "Polygon" for r in (p.exterior, *p.interiors)]
    best, where = -1.0, None
    for ring in rings:
        pts = np.asarray(ring.coords)
        d = shapely.distance(shapely.points(pts), reference)
        i = int(np.argmax(d))
        if d[i] > best:
            best, where = float(d[i]), pts[i]
        seg = np.hypot(*np.diff(pts, axis=0).T)
        bound = np.maximum(d[:-1], d[1:]) + seg / 2
        for k in np.flatnonzero((bound > best) & (seg > step)):
            m = int(np.ceil(seg[k] / step))
            f = (np.arange(1, m) / m)[:, None]
            sub = pts[k][None] * (1 - f) + pts[k + 1][None] * f
            ds = shapely.distance(shapely.points(sub), reference)
            j = int(np.argmax(ds))
            if ds[j] > best:
                best, where = float(ds[j]), sub[j]
    return best, where


def _solve(tumour, reference, target, bracket, px) -> tuple[Polygon, np.ndarray, float]:
    """Bisect the depth parameter of ``tumour(depth)`` within ``bracket`` until its deepest
    point lies ``target`` from ``reference``; returns the tumour, that point and the depth."""
    step = 0.5 * px
    lo, hi = bracket
    if _deepest(tumour(hi), reference, step)[0] < target:
        raise ValueError(f"a melanoma {target / px:.0f} um thick does not fit in the tissue")
    if lo > 0 and _deepest(tumour(lo), reference, step)[0] >= target:
        lo = 0.0
    while hi - lo > 1e-3 * px:
        mid = 0.5 * (lo + hi)
        if _deepest(tumour(mid), reference, step)[0] < target:
            lo = mid
        else:
            hi = mid
    tumor = _largest(tumour(hi))
    return tumor, _deepest(tumor, reference, step)[1], hi


def _ulcer(piece, below, granular, at: Point, length: float, tangent) -> tuple[LineString, BaseGeometry, BaseGeometry]:
    """Ulcer base (``length`` of the tumour-top line ``below``'s outline, centred nearest
    ``at``), the removed epidermis+keratin (walls sloping apart at about 45 degrees) and the
    reference surface (granular line outside the ulcer, the base inside)."""
    base = _stretch(below.exterior, at, length)
    ends = [np.asarray(base.coords[0]), np.asarray(base.coords[-1])]
    way = np.sign(np.dot(ends[1] - ends[0], tangent)) or 1.0
    outer = []
    for e, side in zip(ends, (-way, way)):  # out through the surface, away from the other end
        q = shapely.get_coordinates(shapely.shortest_line(Point(e), piece.exterior))[1]
        outer.append(e + 3.0 * (q - e) + side * tangent * 3.0 * np.linalg.norm(q - e))
    cut = shapely.make_valid(Polygon(np.vstack([np.asarray(base.coords), outer[1][None], outer[0][None]])))
    void = cut.intersection(piece).difference(below)
    reference = shapely.union_all([granular.difference(cut), base])
    return base, void, reference


def build_melanoma(
    piece: Polygon,
    *,
    wedge: Polygon,
    epidermis: BaseGeometry,
    keratin: BaseGeometry,
    epidermis_um: float,
    keratin_um: float,
    breslow_um: float,
    ulcer_um: float,
    half_width_um: float | None,
    anchor: tuple[float, float] | None,
    px: float,
    rng: np.random.Generator,
) -> MelanomaGeometry:
    """Tumour, ulcer and the changed piece/epidermis/keratin of a melanoma-like scene.

    ``wedge`` is the epidermis' sector of ``piece``; ``anchor`` (level-0 px) picks the
    surface point the tumour hangs from (the nearest point of the granular line; default
    just right of the middle). ``half_width_um`` defaults to ``max(200, 0.75 * breslow)``.
    """
    if not breslow_um > 0:
        raise ValueError(f"breslow_um must be positive, got {breslow_um}")
    if ulcer_um < 0:
        raise ValueError(f"ulceration_um must be >= 0, got {ulcer_um}")
    granular = shapely.line_merge(piece.buffer(-keratin_um * px).exterior.intersection(wedge))
    if granular.geom_type != "LineString":
        granular = max(granular.geoms, key=lambda g: g.length)
    top_px = (keratin_um + 0.5 * (epidermis_um - keratin_um)) * px  # tumour top: mid-epidermis
    below = _largest(piece.buffer(-top_px))
    s = granular.project(Point(anchor)) if anchor is not None else 0.55 * granular.length
    tangent, normal = _normal_at(granular, s, below, eps=5 * px)
    foot = granular.interpolate(s)
    centre = np.array([foot.x, foot.y]) + normal * (top_px - keratin_um * px)
    half_width = (half_width_um if half_width_um else max(200.0, 0.75 * breslow_um)) * px
    phases = rng.uniform(0, 2 * np.pi, 3)

    target = breslow_um * px

    def tumour(depth):
        return _bulb(centre, tangent, normal, half_width, depth, phases).intersection(below)

    reach = 4.0 * max(piece.bounds[2] - piece.bounds[0], piece.bounds[3] - piece.bounds[1])
    tumor, deepest, depth = _solve(tumour, granular, target, (0.0, reach), px)
    ulcer_base, void, reference = None, None, granular
    if ulcer_um > 0:
        # the ulcer overlies the deepest point (re-centred if the deepest point moves away)
        for _ in range(4):
            at = shapely.get_coordinates(shapely.shortest_line(Point(deepest), granular))[1]
            ulcer_base, void, reference = _ulcer(piece, below, granular, Point(at), ulcer_um * px, tangent)
            tumor, deepest, depth = _solve(tumour, reference, target, (depth, min(1.2 * depth + 100 * px, reach)), px)
            if ulcer_base.distance(Point(deepest)) <= reference.distance(Point(deepest)) + 1e-9:
                break
        if ulcer_base.difference(tumor.buffer(0.5 * px)).length > px:
            raise ValueError(f"an ulcer {ulcer_um:.0f} um long is wider than the tumour")
    depth_px, deepest = _deepest(tumor, reference, 0.5 * px)
    foot_pt = shapely.get_coordinates(shapely.shortest_line(Point(deepest), reference))[1]

    new_piece = _largest(piece.difference(void)) if void is not None else piece
    cut_away = tumor if void is None else shapely.union_all([tumor, void])
    truth = Melanoma(
        breslow_um=depth_px / px,
        breslow_line=LineString([foot_pt, deepest]),
        reference=reference,
        ulcer_base=ulcer_base,
        ulcer_length_um=0.0 if ulcer_base is None else ulcer_base.length / px,
        til_grade="absent",
        invasive=tumor.difference(epidermis),
        til_region=None,
    )
    return MelanomaGeometry(
        tumor=tumor,
        piece=new_piece,
        epidermis=epidermis.difference(cut_away),
        keratin=keratin.difference(cut_away),
        truth=truth,
    )


def til_region(invasive: BaseGeometry, grade: str, *, px: float, rng: np.random.Generator) -> BaseGeometry | None:
    """Where TILs go: nowhere (``absent``), a few foci (``non-brisk``) or the whole invasive
    component (``brisk``)."""
    if grade not in TIL_GRADES:
        raise ValueError(f"unknown TIL grade {grade!r}; use one of {', '.join(TIL_GRADES)}")
    if grade == "absent" or invasive.is_empty:
        return None
    if grade == "brisk":
        return invasive
    radius = float(np.clip(0.25 * math.sqrt(invasive.area / math.pi) / px, *TIL_FOCUS_UM)) * px
    room = invasive.buffer(-0.5 * radius)
    if room.is_empty:
        room = invasive
    centres = _sample_in(room, TIL_FOCI, rng)
    return shapely.union_all([Point(c).buffer(radius) for c in centres]).intersection(invasive)


def til_lymphocytes(region: BaseGeometry | None, *, px: float, rng: np.random.Generator) -> Nuclei:
    """Lymphocytes at :data:`TIL_PER_MM2` inside ``region`` (placed before the tumour cells, so
    the non-overlap thinning keeps them)."""
    if region is None or region.is_empty:
        return _make(LYMPHOCYTE, np.zeros((0, 2)), rng, px)
    inner = region.buffer(-3.0 * px)
    n = int(round(TIL_PER_MM2 * inner.area * (1e-3 / px) ** 2))
    return _make(LYMPHOCYTE, _sample_in(inner, n, rng), rng, px)
