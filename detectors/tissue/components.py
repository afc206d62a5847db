"""Connected-component operations on small masks (CPU, scipy): labelling is sequential
work that a GPU does not speed up at tissue-mask sizes (~1-4 Mpx).

Masks are ``(H, W)`` bool numpy arrays.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

_EIGHT = np.ones((3, 3), bool)


def remove_small_objects(mask: np.ndarray, min_pixels: float) -> np.ndarray:
    """Drop 8-connected components with fewer than ``min_pixels`` pixels."""
    if min_pixels <= 1 or not mask.any():
        return mask.copy()
    lab, n = ndi.label(mask, structure=_EIGHT)
    sizes = np.bincount(lab.ravel(), minlength=n + 1)
    keep = sizes >= min_pixels
    keep[0] = False
    return keep[lab]


def fill_small_holes(mask: np.ndarray, max_pixels: float) -> np.ndarray:
    """Fill holes (background not 4-connected to the image border) smaller than ``max_pixels``.

    Background reaching the border is glass, never a hole. Larger holes (lumina, fat,
    tears) are kept.
    """
    if max_pixels <= 0 or mask.all():
        return mask.copy()
    lab, n = ndi.label(~mask)
    sizes = np.bincount(lab.ravel(), minlength=n + 1)
    border = np.unique(np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]]))
    fill = sizes < max_pixels
    fill[0] = False
    fill[border] = False
    return mask | fill[lab]


def label(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """8-connected labels ``(H, W)`` int32 and their count."""
    lab, n = ndi.label(mask, structure=_EIGHT)
    return lab.astype(np.int32, copy=False), int(n)
