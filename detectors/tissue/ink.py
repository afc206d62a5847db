"""Surgical ink: which pixels are strongly coloured and not H&E, and what colour they are.

Rules on white-balanced hue (degrees), saturation and value (see :mod:`.features`):

* black: dark and grey (value < ``BLACK_VALUE``, saturation < ``BLACK_MAX_SAT``);
* otherwise a hue band with its own minimum saturation. Bands where H&E lives (haematoxylin
  ~250°, eosin ~330°) need more saturation than H&E reaches; the magenta band 300-345° is
  eosin's and is never ink.

Position (ink lies on the tissue edge) is decided by the caller (:mod:`.segment`).
"""

from __future__ import annotations

import torch

#: colour names in the order of their class ids (0 = not ink)
INK_COLOURS = ("black", "blue", "green", "red", "yellow", "orange", "purple")

#: RGB used to draw each ink colour
INK_RGB = {
    "black": (20, 20, 20),
    "blue": (30, 80, 230),
    "green": (20, 170, 60),
    "red": (220, 30, 30),
    "yellow": (235, 210, 20),
    "orange": (245, 130, 20),
    "purple": (140, 40, 190),
}

BLACK_VALUE = 0.36
BLACK_MAX_SAT = 0.5

# (name, hue from, hue to, minimum saturation); hue ranges are half-open, may wrap 360
HUE_BANDS = (
    ("red", 345.0, 15.0, 0.58),
    ("orange", 15.0, 40.0, 0.62),
    ("yellow", 40.0, 75.0, 0.45),
    ("green", 75.0, 195.0, 0.3),  # includes teal, as green margin ink often looks
    ("blue", 195.0, 255.0, 0.4),  # blue ink over eosin drifts towards 240-250°
    ("purple", 265.0, 300.0, 0.58),
)


#: hues no H&E (or IHC) stain takes: coloured pixels here are never H&E tissue
NEVER_HE = (60.0, 195.0)


def never_he(hue: torch.Tensor, sat: torch.Tensor, *, min_sat: float = 0.08) -> torch.Tensor:
    """``(B, H, W)`` bool: visibly coloured pixels in a hue no tissue stain has (greens, cyans)."""
    return _in_band(hue, *NEVER_HE) & (sat >= min_sat)


def _in_band(hue: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    return (hue >= lo) & (hue < hi) if lo < hi else (hue >= lo) | (hue < hi)


def classify_ink(hue: torch.Tensor, sat: torch.Tensor, val: torch.Tensor) -> torch.Tensor:
    """Ink colour class per pixel: ``(B, H, W)`` uint8, 0 = not ink, ``i`` = ``INK_COLOURS[i-1]``.

    hue in degrees, sat and val in ``[0, 1]``; all ``(B, H, W)``.
    """
    out = torch.zeros(hue.shape, dtype=torch.uint8, device=hue.device)
    for name, lo, hi, min_sat in HUE_BANDS:
        hit = _in_band(hue, lo, hi) & (sat >= min_sat)
        out = torch.where(hit, torch.full_like(out, INK_COLOURS.index(name) + 1), out)
    black = (val < BLACK_VALUE) & (sat < BLACK_MAX_SAT)
    return torch.where(black, torch.full_like(out, 1), out)
