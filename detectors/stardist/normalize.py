"""Percentile normalisation as stardist/csbdeep do it, with percentiles fixed per slide.

stardist normalises every image with its own 1st / 99.8th percentiles
(``(x - p_low) / (p_high - p_low + 1e-20)``, no clipping). Done per tile, two neighbouring
tiles of one slide get different scalings, so a nucleus on their border can come out
differently in each. Here the percentiles are computed once (from a low-resolution view of
the whole slide, see :func:`slide_percentiles`) and every tile is scaled with them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

EPS = 1e-20


@dataclass(frozen=True)
class Percentiles:
    """Intensity range mapped to [0, 1]: scalars (joint over channels) or one per channel."""

    low: tuple[float, ...]
    high: tuple[float, ...]

    def to_dict(self) -> dict:
        return {"low": list(self.low), "high": list(self.high)}

    @classmethod
    def from_dict(cls, d: dict) -> "Percentiles":
        return cls(tuple(float(v) for v in d["low"]), tuple(float(v) for v in d["high"]))


def compute_percentiles(
    image: np.ndarray,
    *,
    low: float = 1.0,
    high: float = 99.8,
    per_channel: bool = False,
    mask: np.ndarray | None = None,
) -> Percentiles:
    """Percentiles of ``image`` (H, W, C), optionally only over ``mask`` (H, W) bool pixels.

    ``per_channel=False`` pools all channels, like ``csbdeep.utils.normalize(img, 1, 99.8)``.
    """
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[..., None]
    pixels = image.reshape(-1, image.shape[-1]) if mask is None else image[np.asarray(mask, bool)]
    if len(pixels) == 0:
        pixels = image.reshape(-1, image.shape[-1])
    if per_channel:
        lo = np.percentile(pixels, low, axis=0)
        hi = np.percentile(pixels, high, axis=0)
        return Percentiles(tuple(map(float, lo)), tuple(map(float, hi)))
    return Percentiles((float(np.percentile(pixels, low)),), (float(np.percentile(pixels, high)),))


def slide_percentiles(
    slide,
    *,
    max_side: int = 2048,
    low: float = 1.0,
    high: float = 99.8,
    per_channel: bool = False,
    mask_fn=None,
) -> Percentiles:
    """Percentiles of a whole :class:`tiling.slide.Slide`, read once at low resolution.

    Reads the slide's bounds at about ``max_side`` pixels on the longer side (at a coarser
    mpp when the slide knows its mpp, else from the coarsest level that is at least that
    large). ``mask_fn(rgb) -> (h, w) bool`` may restrict the statistics to tissue.
    """
    x, y, w, h = slide.bounds
    scale = max(w, h) / max_side
    mpp = slide.mpp_or_none
    if mpp is not None and scale > 1:
        size = (max(1, round(w / scale)), max(1, round(h / scale)))
        thumb = slide.read_region((x, y), size, mpp=mpp[0] * scale)
    else:
        level = 0
        for i, ds in enumerate(slide.level_downsamples):
            if max(w, h) / ds >= min(max_side, max(w, h)):
                level = i
        ds = slide.level_downsamples[level]
        thumb = slide.read_region((x, y), (max(1, int(w / ds)), max(1, int(h / ds))), level=level)
    mask = None if mask_fn is None else mask_fn(thumb)
    return compute_percentiles(thumb, low=low, high=high, per_channel=per_channel, mask=mask)


def normalize_numpy(image: np.ndarray, percentiles: Percentiles) -> np.ndarray:
    """(H, W, C) any dtype -> (H, W, C) float32, ``(x - low) / (high - low + 1e-20)``."""
    x = np.asarray(image).astype(np.float32, copy=False)
    lo = np.asarray(percentiles.low, np.float32)
    hi = np.asarray(percentiles.high, np.float32)
    return (x - lo) / (hi - lo + np.float32(EPS))


def normalize_torch(tiles: torch.Tensor, percentiles: Percentiles) -> torch.Tensor:
    """(B, C, H, W) tensor -> float32 normalised tensor on the same device."""
    x = tiles.to(torch.float32)
    lo = torch.tensor(percentiles.low, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
    hi = torch.tensor(percentiles.high, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
    return (x - lo) / (hi - lo + EPS)
