"""Class colours: QuPath's defaults where QuPath defines the class, ours elsewhere.

Colours are ``(r, g, b)`` tuples of ints in ``[0, 255]``. QuPath (and older exports) also
store colours as one packed Java ``int`` (``0xAARRGGBB``, often negative because of the alpha
byte); :func:`unpack_rgb` / :func:`pack_rgb` convert.
"""

from __future__ import annotations

import zlib

RGB = tuple[int, int, int]

#: Ink colour names the tissue detector reports (``"Ink: <colour>"`` classes).
INK_COLORS: dict[str, RGB] = {
    "black": (30, 30, 30),
    "blue": (40, 80, 220),
    "green": (40, 170, 60),
    "red": (220, 40, 40),
    "yellow": (235, 210, 40),
    "orange": (245, 140, 30),
    "purple": (140, 60, 170),
}

#: Default class colours. Tumor, Stroma, Immune cells, Necrosis, Other, Region*, Ignore*,
#: Positive, Negative and Image are QuPath's standard classes with QuPath's colours.
DEFAULT_CLASS_COLORS: dict[str, RGB] = {
    "Tumor": (200, 0, 0),
    "Stroma": (150, 200, 150),
    "Immune cells": (160, 90, 160),
    "Necrosis": (50, 50, 50),
    "Other": (255, 200, 0),
    "Region*": (0, 0, 180),
    "Ignore*": (180, 180, 180),
    "Positive": (200, 50, 50),
    "Negative": (112, 112, 225),
    "Image": (128, 128, 128),
    # ours
    "Tissue": (80, 160, 80),
    "Nucleus": (0, 120, 220),
    "Mitosis": (255, 0, 255),
    "Mitosis candidate (unvalidated)": (255, 150, 255),
    "Mitotic hotspot": (255, 90, 0),
    "Margin": (0, 200, 200),
    # cell types (detectors.cells); Tumor and Other are QuPath's above
    "Lymphocyte": (160, 90, 160),
    "Epithelial": (0, 140, 230),
    "Stromal": (90, 180, 90),
    **{f"Ink: {name}": rgb for name, rgb in INK_COLORS.items()},
}


def class_color(name: str | None) -> RGB | None:
    """Colour for class ``name``: the table above, else a stable colour derived from the name.

    ``None`` (unclassified) gives ``None``.
    """
    if name is None:
        return None
    if name in DEFAULT_CLASS_COLORS:
        return DEFAULT_CLASS_COLORS[name]
    h = zlib.crc32(name.encode("utf-8"))
    # keep it away from very dark / very light so it is visible on H&E and on glass
    return (40 + (h & 0xFF) % 180, 40 + ((h >> 8) & 0xFF) % 180, 40 + ((h >> 16) & 0xFF) % 180)


def unpack_rgb(value: int) -> RGB:
    """Packed (A)RGB int, possibly negative (Java signed int), -> ``(r, g, b)``."""
    v = int(value) & 0xFFFFFFFF
    return ((v >> 16) & 0xFF, (v >> 8) & 0xFF, v & 0xFF)


def pack_rgb(rgb: RGB) -> int:
    """``(r, g, b)`` -> Java signed int with opaque alpha (as QuPath's ``colorRGB``)."""
    r, g, b = (int(c) & 0xFF for c in rgb)
    v = (0xFF << 24) | (r << 16) | (g << 8) | b
    return v - (1 << 32)
