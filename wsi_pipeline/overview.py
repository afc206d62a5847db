"""Draw level-0 geometries (polygons, lines, points) onto a slide thumbnail.

Reusable by any command that writes a PNG overview. Coordinates are level-0 ``(x, y)``
pixels; ``downsample`` is level-0 pixels per thumbnail pixel.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw
from shapely.geometry.base import BaseGeometry

RGB = tuple[int, int, int]


@dataclass(frozen=True)
class Layer:
    """Geometries drawn in one style: outline ``color`` of ``width`` px, optional fill
    with ``fill_alpha`` (0..1), points as discs of ``radius`` px."""

    geometries: tuple[BaseGeometry, ...]
    color: RGB
    width: int = 2
    fill_alpha: float = 0.0
    radius: int = 3


def thumbnail_for(slide, *, max_side: int = 1600) -> tuple[np.ndarray, float]:
    """``(image (h, w, 3) uint8, downsample)``: the slide read at a size whose long side is
    at most ``max_side`` (never patient-data associated images)."""
    w0, h0 = slide.dimensions
    ds = max(1.0, max(w0, h0) / max_side)
    size = (max(1, int(round(w0 / ds))), max(1, int(round(h0 / ds))))
    level = max(i for i, d in enumerate(slide.level_downsamples) if d <= ds) if slide.level_count else 0
    lds = slide.level_downsamples[level]
    lw, lh = slide.level_dimensions[level]
    img = Image.fromarray(slide.read_region((0, 0), (lw, lh), level=level))
    img = img.resize(size, Image.Resampling.BOX if ds / lds > 1 else Image.Resampling.BILINEAR)
    return np.asarray(img), w0 / size[0]


def draw_layers(image: np.ndarray, layers: Iterable[Layer], *, downsample: float) -> np.ndarray:
    """Return a copy of ``image`` ``(h, w, 3)`` uint8 with ``layers`` drawn, in order."""
    base = Image.fromarray(np.asarray(image, np.uint8)).convert("RGBA")
    for layer in layers:
        over = Image.new("RGBA", base.size, (0, 0, 0, 0))
        draw = ImageDraw.Draw(over)
        fill = (*layer.color, int(round(255 * layer.fill_alpha))) if layer.fill_alpha > 0 else None
        line = (*layer.color, 255)
        for geom in layer.geometries:
            _draw(draw, geom, 1.0 / downsample, fill=fill, line=line, width=layer.width, radius=layer.radius)
        base = Image.alpha_composite(base, over)
    return np.asarray(base.convert("RGB"))


def _draw(draw: ImageDraw.ImageDraw, geom: BaseGeometry, s: float, *, fill, line, width: int, radius: int) -> None:
    kind = geom.geom_type
    if geom.is_empty:
        return
    if kind in ("MultiPolygon", "MultiLineString", "MultiPoint", "GeometryCollection"):
        for g in geom.geoms:
            _draw(draw, g, s, fill=fill, line=line, width=width, radius=radius)
    elif kind == "Polygon":
        rings = [geom.exterior, *geom.interiors]
        if fill is not None:
            draw.polygon(_xy(geom.exterior, s), fill=fill)
            for hole in geom.interiors:
                draw.polygon(_xy(hole, s), fill=(0, 0, 0, 0))
        for ring in rings:
            draw.line(_xy(ring, s), fill=line, width=width, joint="curve")
    elif kind in ("LineString", "LinearRing"):
        draw.line(_xy(geom, s), fill=line, width=width, joint="curve")
    elif kind == "Point":
        x, y = geom.x * s, geom.y * s
        draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=line)


def _xy(line, s: float) -> list[tuple[float, float]]:
    return [(float(x) * s, float(y) * s) for x, y in np.asarray(line.coords)[:, :2]]


def save_png(path, image: np.ndarray) -> None:
    """Write ``image`` atomically (temporary name, then rename)."""
    from wsi_pipeline.atomic import atomic_path

    with atomic_path(path) as tmp:
        Image.fromarray(image).save(tmp, format="PNG")


#: scale bar lengths (mm) to choose from
BAR_MM = (0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0)


def scale_bar_mm(width_mm: float) -> float:
    """The scale bar for a picture ``width_mm`` wide: the longest of :data:`BAR_MM` up to a
    fifth of it (the shortest when none fits)."""
    return max([v for v in BAR_MM if v <= width_mm / 5] or [BAR_MM[0]])


def _font(size: int):
    """DejaVu Sans (fontconfig has it on most systems; it has the superscript of "mm²"), or
    Pillow's own font, and whether the latter lacks that glyph."""
    from PIL import ImageFont

    try:
        return ImageFont.truetype("DejaVuSans.ttf", size=size), False
    except OSError:
        try:
            return ImageFont.load_default(size=size), True
        except TypeError:  # Pillow < 10.1: one bitmap size
            return ImageFont.load_default(), True


def draw_scale_bar(image: np.ndarray, um_per_px: float) -> np.ndarray:
    """A copy of ``image`` with a scale bar in its bottom-left corner: the longest of
    :data:`BAR_MM` up to a fifth of the picture's width (at least the shortest), black on a
    white halo, its length written above it. ``um_per_px``: µm per picture pixel along x."""
    base = Image.fromarray(np.asarray(image, np.uint8)).convert("RGBA")
    w, h = base.size
    if not um_per_px > 0 or w < 20 or h < 20:
        return np.asarray(image).copy()
    mm = scale_bar_mm(w * um_per_px / 1000)
    length = mm * 1000 / um_per_px
    size = max(11, round(max(w, h) / 70))
    font, _ = _font(size)
    over = Image.new("RGBA", base.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(over)
    thick = max(3, size // 3)
    x0, y = size, h - size
    draw.rectangle((x0 - 2, y - thick - 2, x0 + length + 2, y + 2), fill=(255, 255, 255, 230))
    draw.rectangle((x0, y - thick, x0 + length, y), fill=(0, 0, 0, 255))
    label = f"{mm:g} mm"
    tw = draw.textlength(label, font=font)
    tx, ty = x0 + length / 2 - tw / 2, y - thick - size * 1.5
    draw.rectangle((tx - 3, ty, tx + tw + 3, ty + size * 1.3), fill=(255, 255, 255, 200))
    draw.text((tx, ty), label, fill=(0, 0, 0, 255), font=font)
    return np.asarray(Image.alpha_composite(base, over).convert("RGB"))


def draw_legend(image: np.ndarray, entries: Iterable[tuple[str, RGB]], *, corner: str = "top-right") -> np.ndarray:
    """A copy of ``image`` with a legend box: one coloured square and name per entry.

    ``corner``: ``top-right`` | ``top-left`` | ``bottom-right`` | ``bottom-left``. The font
    scales with the picture (about 1/70 of its long side, at least 11 px)."""
    entries = [(str(n), tuple(int(c) for c in rgb)) for n, rgb in entries]
    if not entries:
        return np.asarray(image).copy()
    base = Image.fromarray(np.asarray(image, np.uint8)).convert("RGBA")
    size = max(11, round(max(base.size) / 70))
    font, plain = _font(size)
    if plain:  # Pillow's own font lacks the superscript
        entries = [(n.replace("²", "^2"), rgb) for n, rgb in entries]
    over = Image.new("RGBA", base.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(over)
    pad, line = size // 2, round(size * 1.4)
    text_w = max(draw.textlength(n, font=font) for n, _ in entries)
    box_w, box_h = int(pad * 3 + size + text_w), int(pad * 2 + line * len(entries))
    x0 = base.size[0] - box_w - pad if corner.endswith("right") else pad
    y0 = base.size[1] - box_h - pad if corner.startswith("bottom") else pad
    draw.rectangle((x0, y0, x0 + box_w, y0 + box_h), fill=(255, 255, 255, 215), outline=(90, 90, 90, 255))
    for i, (name, rgb) in enumerate(entries):
        y = y0 + pad + i * line
        draw.rectangle((x0 + pad, y + 1, x0 + pad + size, y + 1 + size), fill=(*rgb, 255), outline=(40, 40, 40, 255))
        draw.text((x0 + pad * 2 + size, y), name, fill=(20, 20, 20, 255), font=font)
    return np.asarray(Image.alpha_composite(base, over).convert("RGB"))
