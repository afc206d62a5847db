"""The region map's fine features computed in strips equal the whole image at once."""

from __future__ import annotations

import numpy as np
import torch

from detectors.regions.features import SUB, fine_features, fine_tint, stain_features


def _fine_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    base = ndimage.gaussian_filter(rng.random((h, w, 3)), (3, 3, 0))
    img = (255 * (0.35 + 0.6 * (base - base.min()) / np.ptp(base))).astype(np.uint8)
    img[: h // 5] = 250  # glass
    img[rng.random((h, w)) > 0.97] = (60, 40, 120)  # dark nuclear specks
    return img


def test_strips_equal_whole_image():
    fine = _fine_image(37 * SUB, 23 * SUB)
    with torch.inference_mode():
        rgb = torch.from_numpy(fine)
        whole_stain, whole_tint = stain_features(rgb), fine_tint(rgb)
        for strip_px in (1, 23 * SUB * SUB * 5, 1 << 22):  # one grid row per strip, 5 rows, all at once
            stain, tint = fine_features(fine, "cpu", strip_px=strip_px)
            assert stain.shape == whole_stain.shape and tint.shape == whole_tint.shape
            assert torch.allclose(stain, whole_stain, atol=1e-5), strip_px
            assert torch.allclose(tint.float(), whole_tint.float(), atol=2e-3), strip_px
