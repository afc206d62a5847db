"""Geometry of a synthetic skin excision: the ground truth the renderer paints.

All coordinates are ``(x, y)`` level-0 pixels (pixel ``i`` spans ``[i, i+1)``); physical
sizes are given in micrometres and converted with ``mpp``. Everything is drawn from one
``numpy.random.Generator`` seeded by ``seed``, so the same arguments give the same scene.

Layout (one piece; two pieces side by side with ``pieces=2``): an elliptical excision,
long axis horizontal, epidermis (with a keratin layer on top) along the upper arc, dermis
below, a tumour nest in the dermis with a thin retraction cleft, surgical inks painted on
arcs of the lower/lateral edge, and optionally a marker-pen stroke on the glass.
Angles of arcs are the ellipse parameter in degrees with y pointing down: 90 is the
bottom, 270 the top, 0 the right end.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import shapely
from shapely.geometry import LineString, Polygon
from shapely.geometry.base import BaseGeometry

from wsi_pipeline.synthetic import inflammation as infl
from wsi_pipeline.synthetic import melanoma as mel
from wsi_pipeline.synthetic.anatomy import place_vessels, rete_pegs
from wsi_pipeline.synthetic.nuclei import Nuclei, place_nuclei

LESIONS = ("nest", "melanoma")
INK_COLORS = ("black", "blue", "green", "red", "yellow", "orange", "purple")
DEFAULT_INKS = (("blue", 35.0, 145.0), ("black", 150.0, 200.0))
EPIDERMIS_ARC = (200.0, 340.0)


@dataclass(frozen=True)
class Ink:
    """One inked stretch of the tissue edge: ``region`` is the painted band (inside tissue)."""

    color: str
    region: BaseGeometry
    edge: LineString  # the tissue boundary under the ink


@dataclass(frozen=True)
class Scene:
    """Everything the renderer draws and the ground truth records (level-0 pixels)."""

    width: int
    height: int
    mpp: float
    seed: int
    pieces: tuple[Polygon, ...]
    tissue: BaseGeometry
    epidermis: BaseGeometry  # living epidermis + keratin layer
    keratin: BaseGeometry
    tumor: BaseGeometry | None
    cleft: BaseGeometry | None  # retraction artefact around the nest (rendered, not truth)
    inks: tuple[Ink, ...]
    marker: BaseGeometry | None
    marker_color: str
    nuclei: Nuclei
    tumor_ink_distance_um: float | None = None  # tumour polygon -> tissue edge under ``tumor_ink_color`` ink
    tumor_ink_color: str = "blue"
    vessel_walls: BaseGeometry | None = None
    vessel_lumens: BaseGeometry | None = None
    inflammation: BaseGeometry | None = None  # the dense lymphoid aggregate (Inflammation truth)
    lesion: str = "nest"  # "nest" (a basaloid dermal nest) | "melanoma" (junctional, see melanoma.py)
    melanoma: mel.Melanoma | None = None

    def um(self, px: float) -> float:
        return float(px) * self.mpp


def _perturbed_ellipse(cx, cy, a, b, *, tilt, rng, n=2048, wobble=0.025):
    """Boundary points ``(n, 2)`` and their parameter angles (radians) of a wobbly ellipse."""
    t = np.linspace(0.0, 2 * np.pi, n, endpoint=False)
    r = np.ones_like(t)
    for k in range(2, 7):
        r += rng.uniform(-wobble, wobble) / (k - 1) ** 0.5 * np.cos(k * t + rng.uniform(0, 2 * np.pi))
    ex, ey = a * r * np.cos(t), b * r * np.sin(t)
    ca, sa = math.cos(tilt), math.sin(tilt)
    pts = np.stack([cx + ex * ca - ey * sa, cy + ex * sa + ey * ca], axis=1)
    return pts, t


def _arc_mask(t: np.ndarray, start_deg: float, end_deg: float) -> np.ndarray:
    d = np.degrees(t) % 360.0
    s, e = start_deg % 360.0, end_deg % 360.0
    return (d >= s) & (d <= e) if s <= e else (d >= s) | (d <= e)


def _arc_line(pts, t, start_deg, end_deg) -> LineString:
    mask = _arc_mask(t, start_deg, end_deg)
    idx = np.flatnonzero(mask)
    if len(idx) < 2:
        raise ValueError(f"arc {start_deg}-{end_deg} degrees selects no edge")
    # unwrap an arc crossing 0 degrees so the points run in order
    if not mask[0] or mask.all():
        order = idx
    else:
        gap = np.flatnonzero(np.diff(idx) > 1)
        order = np.concatenate([idx[gap[0] + 1 :], idx[: gap[0] + 1]]) if len(gap) else idx
    return LineString(pts[order])


def _wedge(center, pts, t, start_deg, end_deg) -> Polygon:
    line = _arc_line(pts, t, start_deg, end_deg)
    c = np.asarray(center)
    far = c + 3.0 * (np.asarray(line.coords) - c)
    return Polygon(np.vstack([c[None], far]))


def _blob(cx, cy, radius, *, rng, n=256) -> Polygon:
    t = np.linspace(0.0, 2 * np.pi, n, endpoint=False)
    r = radius * (1 + 0.12 * np.cos(3 * t + rng.uniform(0, 6.3)) + 0.07 * np.cos(5 * t + rng.uniform(0, 6.3)))
    return Polygon(np.stack([cx + r * np.cos(t), cy + 0.85 * r * np.sin(t)], axis=1))


def _layout(width, height, pieces):
    if pieces == 1:
        return [(width * 0.5, height * 0.5, width * 0.40, height * 0.34)]
    if pieces == 2:
        return [
            (width * 0.27, height * 0.50, width * 0.21, height * 0.34),
            (width * 0.74, height * 0.52, width * 0.19, height * 0.30),
        ]
    raise ValueError("pieces must be 1 or 2")


def _place_tumor(shape_at, allowed, edge, center, distance_px):
    """Slide a nest along the inward normal of the inked edge's midpoint until its distance
    to that edge (the tissue boundary under the ink) equals ``distance_px`` (bisection);
    ``shape_at(x, y)`` builds the nest."""
    mid = edge.interpolate(0.5, normalized=True)
    p = np.array([mid.x, mid.y])
    inward = np.asarray(center) - p
    inward /= np.linalg.norm(inward)

    def nest(s):
        q = p + inward * s
        return shape_at(q[0], q[1]).intersection(allowed)

    if distance_px <= 0:  # touching: the nest reaches through the ink to the edge
        probe = shape_at(0.0, 0.0)
        r = math.sqrt(probe.area / math.pi)
        return nest(0.6 * r)
    lo, hi = 0.0, float(np.linalg.norm(np.asarray(center) - p)) * 1.6
    if nest(hi).distance(edge) < distance_px:
        raise ValueError(f"a tumour {distance_px:.0f} px from the ink does not fit in the tissue")
    for _ in range(60):
        mid_s = 0.5 * (lo + hi)
        if nest(mid_s).distance(edge) < distance_px:
            lo = mid_s
        else:
            hi = mid_s
    out = nest(hi)
    if abs(out.area - shape_at(0.0, 0.0).area) > 1e-6 * out.area:
        raise ValueError(f"a tumour {distance_px:.0f} px from the ink does not fit in the tissue")
    return out


def _nest(layout, allowed, inks, *, radius_px, center, ink_distance_px, ink_color, rng) -> BaseGeometry:
    """The basaloid nest in the dermis: ``ink_distance_px`` from the ``ink_color`` inked edge,
    else at ``center`` or a default spot."""
    cx, cy, a, b = layout
    radius = radius_px
    nest_rng_seed = int(rng.integers(2**31))

    def shape_at(x, y):
        return _blob(x, y, radius, rng=np.random.default_rng(nest_rng_seed))

    if ink_distance_px is not None:
        matching = [ink for ink in inks if ink.color == ink_color]
        if not matching:
            raise ValueError(f"no {ink_color} ink to place the tumour against")
        return _place_tumor(shape_at, allowed, matching[0].edge, (cx, cy), ink_distance_px)
    tx, ty = center if center is not None else (cx - 0.2 * a, cy + 0.25 * b)
    return shape_at(tx, ty).intersection(allowed)


def build_scene(
    width: int,
    height: int,
    *,
    mpp: float = 0.25,
    seed: int = 0,
    pieces: int = 1,
    epidermis_um: float = 70.0,
    rete: bool = True,
    vessels: bool = True,
    keratin_um: float = 18.0,
    tumor: bool = True,
    tumor_radius_um: float | None = None,
    tumor_center: tuple[float, float] | None = None,
    tumor_ink_distance_um: float | None = None,
    tumor_ink_color: str = "blue",
    inks: tuple[tuple[str, float, float], ...] = DEFAULT_INKS,
    ink_depth_um: float = 100.0,
    marker: bool = True,
    marker_color: str = "green",
    n_mitoses: int | None = None,
    nuclei_density: float = 1.0,
    inflammation: bool = True,
    inflammation_um: float = infl.DEFAULT_SIZE_UM,
    lesion: str = "nest",
    breslow_um: float = 500.0,
    ulceration_um: float = 0.0,
    til: str = "non-brisk",
) -> Scene:
    """Draw the scene for a ``width`` x ``height`` slide at ``mpp`` micrometres per pixel.

    ``tumor_ink_distance_um`` places the nest so that the distance from the tumour polygon
    to the inked tissue edge (the boundary under the ``tumor_ink_color`` ink: the surgical
    margin) is exactly that (0 = touching); otherwise ``tumor_center`` (level-0 pixels) or a
    default spot in the dermis. Inks are bands ``ink_depth_um`` deep inside the edge.

    ``inflammation`` adds a dense lymphoid aggregate (long axis ``inflammation_um``, shrunk
    to fit) in the dermis of the first piece, clear of epidermis, tumour and edge; it draws
    from its own generator, so the rest of the scene is the same with or without it.

    ``lesion="melanoma"`` replaces the nest by a junctional melanoma-like tumour hanging from
    the epidermis of the first piece (:mod:`wsi_pipeline.synthetic.melanoma`): Breslow
    thickness exactly ``breslow_um``, an ulcer ``ulceration_um`` long (0 = none) over it, TILs
    graded ``til`` (absent | non-brisk | brisk); ``tumor_radius_um`` is then its half-width
    and ``tumor_center`` the surface point it hangs from (``tumor_ink_distance_um`` does not
    apply: the thickness places it).
    """
    if lesion not in LESIONS:
        raise ValueError(f"unknown lesion {lesion!r}; use one of {', '.join(LESIONS)}")
    if lesion == "melanoma" and tumor_ink_distance_um is not None:
        raise ValueError("tumor_ink_distance_um does not apply to a melanoma (its Breslow thickness places it)")
    if til not in mel.TIL_GRADES:
        raise ValueError(f"unknown TIL grade {til!r}; use one of {', '.join(mel.TIL_GRADES)}")
    rng = np.random.default_rng(seed)
    px = 1.0 / mpp  # pixels per micrometre
    piece_polys, boundaries = [], []
    for cx, cy, a, b in _layout(width, height, pieces):
        pts, t = _perturbed_ellipse(cx, cy, a, b, tilt=rng.uniform(-0.06, 0.06), rng=rng)
        piece_polys.append(shapely.make_valid(Polygon(pts)))
        boundaries.append((pts, t, (cx, cy)))
    tissue = shapely.union_all(piece_polys)

    epid_parts, ker_parts, wedges = [], [], []
    for poly, (pts, t, center) in zip(piece_polys, boundaries):
        wedge = _wedge(center, pts, t, *EPIDERMIS_ARC)
        wedges.append(wedge)
        band = poly.difference(poly.buffer(-epidermis_um * px))
        if rete:
            inner = _wedge(center, pts, t, EPIDERMIS_ARC[0] + 4, EPIDERMIS_ARC[1] - 4)
            arc = _arc_line(pts, t, *EPIDERMIS_ARC)
            pegs = rete_pegs(arc, center, thickness_px=epidermis_um * px, px=px, rng=rng).intersection(inner)
            band = band.union(pegs.intersection(poly))
        epid_parts.append(band.intersection(wedge))
        ker_parts.append(poly.difference(poly.buffer(-keratin_um * px)).intersection(wedge))
    melanoma = None
    if tumor and lesion == "melanoma":
        melanoma = mel.build_melanoma(
            piece_polys[0], wedge=wedges[0], epidermis=epid_parts[0], keratin=ker_parts[0],
            epidermis_um=epidermis_um, keratin_um=keratin_um, breslow_um=breslow_um, ulcer_um=ulceration_um,
            half_width_um=tumor_radius_um, anchor=tumor_center, px=px, rng=rng,
        )  # fmt: skip
        piece_polys[0], epid_parts[0], ker_parts[0] = melanoma.piece, melanoma.epidermis, melanoma.keratin
        tissue = shapely.union_all(piece_polys)
    epidermis = shapely.union_all(epid_parts)
    keratin = shapely.union_all(ker_parts)

    ink_list = []
    for color, start, end in inks:
        if color not in INK_COLORS:
            raise ValueError(f"unknown ink colour {color!r}; use one of {', '.join(INK_COLORS)}")
        pts, t, _ = boundaries[0]
        edge = _arc_line(pts, t, start, end)
        # flat caps: the painted band ends where its arc ends, so the truth distances (to the
        # arc) are distances to the edge that is painted
        region = piece_polys[0].intersection(edge.buffer(ink_depth_um * px, cap_style="flat"))
        ink_list.append(Ink(color, region, edge))

    tumor_geom = cleft = None
    distance_um = None
    melanoma_truth = None
    til_nuclei = None
    if melanoma is not None:
        tumor_geom = melanoma.tumor  # no retraction cleft: that is a basal cell carcinoma's
        region = mel.til_region(melanoma.truth.invasive, til, px=px, rng=rng)
        til_nuclei = mel.til_lymphocytes(region, px=px, rng=rng)
        melanoma_truth = replace(melanoma.truth, til_grade=til, til_region=region)
    elif tumor:
        layout = _layout(width, height, pieces)[0]
        tumor_geom = _nest(
            layout, piece_polys[0].difference(epidermis.buffer(10 * px)), ink_list,
            radius_px=tumor_radius_um * px if tumor_radius_um else min(300.0 * px, 0.30 * layout[3]), center=tumor_center,
            ink_distance_px=None if tumor_ink_distance_um is None else tumor_ink_distance_um * px,
            ink_color=tumor_ink_color, rng=rng,
        )  # fmt: skip
        cleft = tumor_geom.buffer(4.0 * px).difference(tumor_geom).intersection(tissue)
    if tumor_geom is not None:
        same = [ink.edge for ink in ink_list if ink.color == tumor_ink_color]
        if same:
            distance_um = float(tumor_geom.distance(shapely.union_all(same))) * mpp

    marker_geom = None
    if marker:
        xs = np.linspace(0.04 * width, 0.40 * width, 64)
        ys = 0.955 * height + 0.012 * height * np.sin(xs / width * 14 + rng.uniform(0, 6.3))
        stroke = LineString(np.stack([xs, ys], axis=1)).buffer(0.012 * height)
        marker_geom = stroke.difference(tissue.buffer(50 * px))
        if marker_geom.is_empty:
            marker_geom = None

    vessel_set = None
    if vessels:
        away = [epidermis.buffer(20 * px)] + ([tumor_geom.buffer(30 * px)] if tumor_geom is not None else [])
        vessel_set = place_vessels(tissue.difference(shapely.union_all(away)).buffer(-25 * px), px=px, rng=rng)
    blocked = [keratin, cleft] + ([vessel_set.walls.union(vessel_set.lumens).buffer(px)] if vessel_set else [])
    placed = [vessel_set.endothelium] if vessel_set else []
    if til_nuclei is not None:
        placed.append(til_nuclei)
    focus = None
    if inflammation:
        focus_rng = infl.rng_for(seed)
        focus = infl.place_focus(
            piece_polys[0], epidermis=epidermis, tumor=tumor_geom, px=px, rng=focus_rng, size_um=inflammation_um
        )
        if focus is not None:
            keep_out = shapely.union_all([g for g in blocked if g is not None])
            placed.append(infl.focus_lymphocytes(focus, px=px, rng=focus_rng, keep_out=keep_out))
    nuclei = place_nuclei(
        rng,
        mpp=mpp,
        tissue=tissue,
        epidermis=epidermis.difference(keratin),
        tumor=tumor_geom,
        keep_out=shapely.union_all([g for g in blocked if g is not None]),
        n_mitoses=n_mitoses,
        density=nuclei_density,
        placed=Nuclei.concatenate(placed) if placed else None,
        palisade=melanoma is None,
    )
    return Scene(
        width=int(width),
        height=int(height),
        mpp=float(mpp),
        seed=int(seed),
        pieces=tuple(piece_polys),
        tissue=tissue,
        epidermis=epidermis,
        keratin=keratin,
        tumor=tumor_geom,
        cleft=cleft,
        inks=tuple(ink_list),
        marker=marker_geom,
        marker_color=marker_color,
        nuclei=nuclei,
        tumor_ink_distance_um=distance_um,
        tumor_ink_color=tumor_ink_color,
        vessel_walls=vessel_set.walls if vessel_set else None,
        vessel_lumens=vessel_set.lumens if vessel_set else None,
        inflammation=focus,
        lesion=lesion if melanoma is not None else "nest",
        melanoma=melanoma_truth,
    )
