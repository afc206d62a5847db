"""Per-pixel colour features for tissue detection, in torch (any device).

All functions take ``rgb`` as a ``(B, 3, H, W)`` float tensor in ``[0, 255]`` and return
``(B, H, W)`` (or ``(B, 3, H, W)``) float tensors on the same device.
"""

from __future__ import annotations

import numpy as np
import torch

#: Glass is never assumed darker than this (per channel); keeps a tile that is all tissue
#: from taking tissue for glass.
MIN_GLASS = 200.0


def to_tensor(images: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """``(B, H, W, 3)`` or ``(H, W, 3)`` uint8 -> ``(B, 3, H, W)`` float32 on ``device``."""
    arr = np.asarray(images)
    if arr.ndim == 3:
        arr = arr[None]
    t = torch.tensor(arr, device=device)
    return t.permute(0, 3, 1, 2).float()


def glass_colour(rgb: torch.Tensor, *, quantile: float = 0.9) -> torch.Tensor:
    """Estimate the colour of empty glass per image: ``(B, 3)`` in ``[MIN_GLASS, 255]``.

    The brightest pixels (brightness above its ``quantile``) are glass on any slide that has
    some glass; their per-channel median is the white point. Tiles without glass clamp to
    :data:`MIN_GLASS`..255 so they cannot pull the white point into the tissue.
    """
    b = rgb.shape[0]
    flat = rgb.reshape(b, 3, -1)
    bright = flat.mean(1)  # (B, N)
    k = max(1, int(flat.shape[-1] * (1 - quantile)))
    idx = bright.topk(k, dim=1).indices  # (B, k)
    top = torch.gather(flat, 2, idx[:, None, :].expand(b, 3, k))
    return top.median(dim=2).values.clamp(MIN_GLASS, 255.0)


def optical_density(rgb: torch.Tensor, glass: torch.Tensor) -> torch.Tensor:
    """``(B, 3, H, W)`` optical density relative to the glass colour, ``-log10(I / I_glass) >= 0``."""
    rel = (rgb + 1.0) / (glass[:, :, None, None] + 1.0)
    return (-torch.log10(rel.clamp(1.0 / 256.0, 1.0)))


def hsv(rgb: torch.Tensor, glass: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Hue (degrees, 0..360), saturation and value (0..1) of white-balanced pixels.

    White balance divides by the glass colour so a tinted background has saturation ~0.
    """
    bal = (rgb / glass[:, :, None, None]).clamp(0.0, 1.0)
    r, g, b = bal[:, 0], bal[:, 1], bal[:, 2]
    mx, _ = bal.max(1)
    mn, _ = bal.min(1)
    delta = mx - mn
    sat = torch.where(mx > 0, delta / mx.clamp_min(1e-6), torch.zeros_like(mx))
    d = delta.clamp_min(1e-6)
    hue = torch.where(
        mx == r, ((g - b) / d) % 6.0,
        torch.where(mx == g, (b - r) / d + 2.0, (r - g) / d + 4.0),
    ) * 60.0
    hue = torch.where(delta > 1e-6, hue, torch.zeros_like(hue))
    return hue, sat, mx


def tissue_score(od: torch.Tensor, sat: torch.Tensor) -> torch.Tensor:
    """``(B, H, W)`` score in ``[0, 1]``: high for stained tissue, ~0 for glass.

    The larger of the strongest channel's optical density and the saturation: dark tissue
    (nuclei, ink) has high density, pale tissue (fat septa, loose dermis) is still coloured.
    """
    return torch.maximum(od.max(1).values, sat).clamp(0.0, 1.0)
