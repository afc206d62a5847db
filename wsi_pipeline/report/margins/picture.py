"""The overview picture: slide thumbnail, tissue outline, lesion, ink segments, closest lines.

Drawn with matplotlib in millimetres from the top-left of the tissue's bounding box, so
anisotropic pixels are shown at their true shape. Only ``slide.read_region`` is used: no
label, macro or other associated image ever reaches the picture.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import shapely
from shapely.geometry import Point
from matplotlib import patheffects
from matplotlib.patches import PathPatch
from matplotlib.path import Path as MplPath

from wsi_pipeline.overview import scale_bar_mm
from wsi_pipeline.report.margins.compute import INVOLVED, MarginAssessment, closest_lines, format_mm

INK_RGB = {
    "black": "#111111",
    "blue": "#1d4ed8",
    "green": "#15803d",
    "red": "#dc2626",
    "yellow": "#facc15",
    "orange": "#f97316",
    "purple": "#9333ea",
    "uninked": "#8a8a8a",
    "scan border": "#555555",
    "epidermal surface": "#7c3aed",
}
LESION_EDGE = "#a3006b"
LESION_FACE = (0.85, 0.0, 0.55, 0.30)
_HALO = [patheffects.withStroke(linewidth=4, foreground="white")]


def ink_colour(colour: str) -> str:
    """Matplotlib colour for an ink name (unknown names fall back to grey)."""
    return INK_RGB.get(colour, "#555555")


@dataclass(frozen=True)
class Thumbnail:
    """``image``: ``(H, W, 3)`` uint8; ``origin_um``: µm of its top-left corner;
    ``size_um``: ``(width, height)`` it covers in µm."""

    image: np.ndarray | None
    origin_um: tuple[float, float]
    size_um: tuple[float, float]


def read_thumbnail(slide, assessment: MarginAssessment, *, mpp: tuple[float, float], max_px: int = 1600, pad: float = 0.06) -> Thumbnail:
    """Read the tissue's bounding box (padded) at a low resolution with ``slide.read_region``."""
    x0, y0, x1, y1 = shapely.union_all(list(assessment.pieces)).bounds
    side = max(x1 - x0, y1 - y0)
    x0, y0, x1, y1 = x0 - side * pad, y0 - side * pad, x1 + side * pad, y1 + side * 2.2 * pad  # room for the scale bar
    if slide is None:
        return Thumbnail(None, (x0, y0), (x1 - x0, y1 - y0))
    out_mpp = max(max(x1 - x0, y1 - y0) / max_px, mpp[0])
    w_out = max(1, math.ceil((x1 - x0) / out_mpp))
    h_out = max(1, math.ceil((y1 - y0) / mpp[1] * mpp[0] / out_mpp))
    loc = (int(round(x0 / mpp[0])), int(round(y0 / mpp[1])))
    image = slide.read_region(loc, (w_out, h_out), mpp=out_mpp)
    size_um = (w_out * out_mpp, h_out * out_mpp / mpp[0] * mpp[1])
    return Thumbnail(image, (loc[0] * mpp[0], loc[1] * mpp[1]), size_um)


def draw_overview(ax, assessment: MarginAssessment, thumb: Thumbnail) -> None:
    """Draw the whole overview into ``ax`` (axes in mm from the thumbnail's corner)."""
    ox, oy = thumb.origin_um
    w, h = thumb.size_um[0] / 1000, thumb.size_um[1] / 1000
    mm = _to_mm(ox, oy)
    if thumb.image is not None:
        ax.imshow(thumb.image, extent=(0, w, h, 0), interpolation="lanczos", zorder=0)
    for piece in assessment.pieces:
        _polygon(ax, mm(piece), facecolor="none", edgecolor="#333333", linewidth=0.8, zorder=2)
    for part in assessment.lesion_by_piece.values():
        _polygon(ax, mm(part), facecolor=LESION_FACE, edgecolor="none", zorder=3)
        _polygon(ax, mm(part), facecolor="none", edgecolor="white", linewidth=3.2, zorder=3)
        _polygon(ax, mm(part), facecolor="none", edgecolor=LESION_EDGE, linewidth=1.8, hatch="////", zorder=3)
    for seg in assessment.segments:
        _edge(ax, mm(seg.line), seg.colour)
    for m in assessment.margins:  # one "involved" label per margin (at its longest involved stretch)
        parts = [mm(g) for g in m.involved]
        longest = max(range(len(parts)), key=lambda i: parts[i].length, default=None)
        for i, g in enumerate(parts):
            _involved(ax, g, label=i == longest)
    _margin_names(ax, assessment, mm)
    _closest(ax, assessment, mm, view=max(w, h))
    if len(assessment.pieces) > 1:
        for i, piece in enumerate(assessment.pieces):
            px0, _, _, py1 = mm(piece).bounds
            ax.text(px0, py1 + 0.01 * max(w, h), f"piece {i + 1}", ha="left", va="top", fontsize=9,
                    fontweight="bold", color="#222222", path_effects=_HALO, zorder=4)
    _scale_bar(ax, w, h)
    ax.set_xlim(0, w)
    ax.set_ylim(h, 0)
    ax.set_aspect("equal")
    ax.set_axis_off()


def draw_profile(ax, assessment: MarginAssessment, *, cap_mm: float = 5.0) -> None:
    """Clearance (mm, capped at ``cap_mm``) along each piece's perimeter, coloured by ink."""
    offset = 0.0
    for i, piece in enumerate(assessment.pieces):
        segs = [p for p in assessment.profile if p.piece == i]
        for p in segs:
            x = (offset + p.position_um) / 1000
            y = np.minimum(p.clearance_um / 1000, cap_mm)
            wrap = np.flatnonzero(np.diff(x) < 0) + 1  # a segment crossing the ring's start
            x, y = np.insert(x, wrap, np.nan), np.insert(y, wrap, np.nan)
            ax.plot(x, y, color=ink_colour(p.colour), linewidth=1.6,
                    linestyle="--" if p.colour == "uninked" else "-")
        if i and segs:
            ax.axvline(offset / 1000, color="#999999", linewidth=0.6)
        offset += piece.exterior.length if segs else 0
    ax.axhline(assessment.close_mm, color="#dc2626", linewidth=0.8, linestyle=":")
    ax.text(0, assessment.close_mm, f" close < {assessment.close_mm:g} mm", color="#dc2626", fontsize=7, va="bottom")
    seen = max((float(np.max(p.clearance_um)) for p in assessment.profile), default=0.0) / 1000
    ax.set_ylim(0, min(cap_mm, max(2 * assessment.close_mm, 1.05 * seen)))
    ax.set_xlim(left=0)
    ax.set_xlabel("position along the tissue edge (mm)", fontsize=8)
    ax.set_ylabel("clearance (mm)", fontsize=7)
    ax.tick_params(labelsize=7)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def _to_mm(ox: float, oy: float):
    def convert(geometry):
        return shapely.transform(geometry, lambda xy: (xy - (ox, oy)) / 1000.0)

    return convert


def _polygon(ax, geometry, **style) -> None:
    for poly in getattr(geometry, "geoms", [geometry]):
        if poly.geom_type != "Polygon" or poly.is_empty:
            continue
        rings = [np.asarray(poly.exterior.coords)] + [np.asarray(r.coords) for r in poly.interiors]
        verts = np.concatenate(rings)
        codes = np.concatenate([[MplPath.MOVETO] + [MplPath.LINETO] * (len(r) - 2) + [MplPath.CLOSEPOLY] for r in rings])
        ax.add_patch(PathPatch(MplPath(verts, codes), **style))


def _edge(ax, line, colour: str) -> None:
    xy = np.asarray(line.coords)
    if colour in ("uninked", "scan border"):
        style = (0, (4, 2)) if colour == "uninked" else (0, (1, 2))
        ax.plot(xy[:, 0], xy[:, 1], color=ink_colour(colour), linewidth=1.4, linestyle=style, zorder=5)
        return
    if colour == "epidermal surface":  # the skin's surface: a thin dash-dot line, never an ink band
        ax.plot(xy[:, 0], xy[:, 1], color=ink_colour(colour), linewidth=1.6, linestyle=(0, (6, 2, 1, 2)), zorder=5)
        return
    ax.plot(xy[:, 0], xy[:, 1], color="white", linewidth=6.5, solid_capstyle="butt", zorder=5)
    ax.plot(xy[:, 0], xy[:, 1], color=ink_colour(colour), linewidth=4.5, solid_capstyle="butt", zorder=6)


def _involved(ax, geometry, *, label: bool = True) -> None:
    """Red dashes along the involved edge and a red X (with "involved" when ``label``) at its middle."""
    mid = geometry if geometry.geom_type == "Point" else geometry.interpolate(0.5, normalized=True)
    ax.plot([mid.x], [mid.y], marker="X", markersize=13, color="#dc2626", markeredgecolor="white", zorder=13)
    if label:
        ax.annotate("involved", xy=(mid.x, mid.y), xytext=(9, 11), textcoords="offset points", fontsize=9,
                    fontweight="bold", color="#b91c1c", path_effects=_HALO, zorder=14)  # over the X marks
    if geometry.geom_type == "Point":
        return
    for part in getattr(geometry, "geoms", [geometry]):
        xy = np.asarray(part.coords)
        ax.plot(xy[:, 0], xy[:, 1], color="#dc2626", linewidth=3, linestyle=(0, (2, 1.5)), zorder=9,
                path_effects=[patheffects.withStroke(linewidth=6, foreground="white")])


def _margin_names(ax, assessment: MarginAssessment, mm) -> None:
    """Write each ink's margin name along its longest stretch, just outside the tissue.

    The label sits at a quarter or three quarters of the stretch (whichever is farther from
    the closest-approach point), rotated along the edge.
    """
    names = {m.colour: m.name for m in assessment.margins}
    near = [Point(m.approach.edge_point) for m in assessment.margins if m.approach is not None]
    x0, y0, x1, y1 = mm(shapely.union_all(list(assessment.pieces))).bounds
    off = 0.015 * max(x1 - x0, y1 - y0)
    for colour in sorted({s.colour for s in assessment.segments} - {"uninked", "scan border"}):
        seg = max((s for s in assessment.segments if s.colour == colour), key=lambda s: s.line.length)
        spots = [seg.line.interpolate(f, normalized=True) for f in (0.25, 0.5, 0.75)]
        at = max(spots, key=lambda p: min((p.distance(q) for q in near), default=0.0))
        t = seg.line.project(at)
        half = max(1.0, 0.05 * seg.line.length)  # µm; a wide window smooths jagged outlines
        a = mm(seg.line.interpolate(max(t - half, 0)))
        b = mm(seg.line.interpolate(min(t + half, seg.line.length)))
        p = mm(at)
        tangent = np.array([b.x - a.x, b.y - a.y])
        tangent /= np.linalg.norm(tangent) or 1.0
        normal = np.array([tangent[1], -tangent[0]])
        tissue = mm(shapely.union_all(list(assessment.pieces)))
        for reach in (1.0, 2.0, 3.0, 4.0):  # the nearest spot off the tissue, either side of the edge
            outside = [tissue.distance(Point(p.x + k * normal[0] * off * reach, p.y + k * normal[1] * off * reach))
                       for k in (1, -1)]
            if max(outside) > 0:
                break
        normal = (normal if outside[0] >= outside[1] else -normal) * reach
        angle = -np.degrees(np.arctan2(tangent[1], tangent[0]))  # y axis points down
        angle = (angle + 90) % 180 - 90  # keep text upright
        theta = np.radians(angle)
        text_up = np.array([-np.sin(theta), -np.cos(theta)])  # in data coordinates (y down)
        va = "bottom" if float(normal @ text_up) > 0 else "top"  # the text body lies off the tissue
        ax.text(p.x + normal[0] * off, p.y + normal[1] * off, names.get(colour, colour), rotation=angle,
                rotation_mode="anchor", ha="center", va=va, fontsize=8, fontweight="bold",
                color=ink_colour(colour) if colour != "yellow" else "#8a6d00", path_effects=_HALO, zorder=10)


def _closest(ax, assessment: MarginAssessment, mm, *, view: float) -> None:
    overall = assessment.closest
    for margin, line in closest_lines(assessment):
        geom = mm(line)
        bold = margin is overall
        if margin.status == INVOLVED:
            continue
        xy = np.asarray(geom.coords)
        ax.plot(xy[:, 0], xy[:, 1], color="black", linewidth=2.4 if bold else 1.2, zorder=11,
                marker="o", markersize=4 if bold else 2.5, path_effects=[patheffects.withStroke(linewidth=4.5 if bold else 3, foreground="white")])
        mid = geom.interpolate(0.5, normalized=True)
        ax.text(mid.x, mid.y, format_mm(margin.clearance_mm), fontsize=10 if bold else 8,
                fontweight="bold" if bold else "normal", ha="left", va="center", zorder=12,
                bbox=dict(boxstyle="round,pad=0.25", facecolor="white", edgecolor=ink_colour(margin.colour),
                          linewidth=1.8 if bold else 1.0))


def _scale_bar(ax, w: float, h: float) -> None:
    length = scale_bar_mm(w)
    x0, y0 = 0.03 * w, 0.975 * h
    ax.plot([x0, x0 + length], [y0, y0], color="black", linewidth=4, solid_capstyle="butt", zorder=12,
            path_effects=[patheffects.withStroke(linewidth=7, foreground="white")])
    ax.text(x0 + length / 2, y0 - 0.015 * h, f"{length:g} mm", ha="center", va="bottom", fontsize=8,
            path_effects=_HALO, zorder=12)
