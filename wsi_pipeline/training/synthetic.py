"""Synthetic H&E-like fields with known nuclei, for smoke tests, demos and test fixtures."""

from __future__ import annotations

import numpy as np
from skimage.draw import ellipse


def synthetic_nuclei(
    shape: tuple[int, int] = (256, 256),
    *,
    seed: int = 0,
    density: float = 1 / 700,
    radius: tuple[float, float] = (4.0, 9.0),
) -> tuple[np.ndarray, np.ndarray]:
    """Pink stroma with dark purple, non-overlapping elliptical nuclei.

    Returns image (H, W, 3) uint8 RGB and labels (H, W) int32 (0 = background, 1..N).
    """
    rng = np.random.default_rng(seed)
    h, w = shape
    stroma = np.array((236, 188, 214), np.float32) * rng.uniform(0.95, 1.05, 3)
    img = np.empty((h, w, 3), np.float32)
    img[:] = stroma
    img += rng.normal(0, 7, img.shape)
    labels = np.zeros((h, w), np.int32)
    n = 0
    for _ in range(int(h * w * density)):
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        ry, rx = rng.uniform(*radius, 2)
        rr, cc = ellipse(cy, cx, ry, rx, shape=(h, w), rotation=rng.uniform(0, np.pi))
        if len(rr) < 12 or labels[rr, cc].any():
            continue
        n += 1
        labels[rr, cc] = n
        colour = np.array((88, 58, 140)) * rng.uniform(0.8, 1.2)
        img[rr, cc] = colour + rng.normal(0, 12, (len(rr), 3))
    return np.clip(img, 0, 255).astype(np.uint8), labels
