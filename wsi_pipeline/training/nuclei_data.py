"""Cheap StarDist training patches: targets computed once per image, cropped and transformed.

``star_dist`` and ``edt_prob`` cost more than the crop they describe, so they are computed
once for each whole training image (at full resolution, grid (1, 1)) and every patch is cut
from them. Flips and 90° rotations move the rays: rotating the image by 90° turns ray ``k``
into ray ``k + n/4`` (stardist's ray ``k`` points at angle 2πk/n, x = cos, y = sin), a
left-right flip turns it into ``n/2 - k``, an up-down flip into ``-k``. So the transformed
distances are a permutation of the channels, not a recomputation (needs ``n_rays % 4 == 0``
for rotations; otherwise rotations are skipped and only the flips that keep rays are used).

Cropping the whole image's targets, not recomputing them on the crop, also keeps the true
extent of nuclei cut by the patch border (the rays do not stop at the crop edge).

Images can be resampled before training (``resample_pair``): training at 0.5 µm/px on
0.25 µm/px data sees four times the tissue per step.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from detectors.stardist.predict import mirror_rays


@dataclass
class FullTargets:
    """prob (H, W) float32 (``edt_prob``) and dist (H, W, R) float32 (``star_dist``, grid 1)."""

    prob: np.ndarray
    dist: np.ndarray


def full_targets(labels: np.ndarray, *, n_rays: int) -> FullTargets:
    """(H, W) int labels -> :class:`FullTargets` at every pixel."""
    from stardist.geometry import star_dist
    from stardist.utils import edt_prob

    labels = np.ascontiguousarray(labels)
    return FullTargets(edt_prob(labels).astype(np.float32), star_dist(labels, n_rays, mode="cpp").astype(np.float32))


def rot90_rays(n_rays: int, k: int) -> np.ndarray:
    """Channel order of ``dist`` after ``np.rot90(·, k)`` of the image: new[..., i] = old[..., perm[i]]."""
    if (k % 4) and n_rays % 4:
        raise ValueError(f"rotating rays by 90° needs n_rays divisible by 4, got {n_rays}")
    return (np.arange(n_rays) + (k % 4) * n_rays // 4) % n_rays


def fliplr_rays(n_rays: int) -> np.ndarray:
    """Channel order of ``dist`` after a left-right flip (``a[:, ::-1]``)."""
    return mirror_rays(n_rays, "x")


def transform_patch(img: np.ndarray, lbl: np.ndarray, prob: np.ndarray, dist: np.ndarray, *, rot: int, flip: bool):
    """Rotate by ``rot`` x 90° then optionally flip left-right: image (P, P, 3), labels (P, P),
    prob (P, P), dist (P, P, R) all together, the rays of ``dist`` permuted to match."""
    n = dist.shape[-1]
    if rot % 4:
        img, lbl, prob = np.rot90(img, rot), np.rot90(lbl, rot), np.rot90(prob, rot)
        dist = np.rot90(dist, rot)[..., rot90_rays(n, rot)]
    if flip:
        img, lbl, prob = img[:, ::-1], lbl[:, ::-1], prob[:, ::-1]
        dist = dist[:, ::-1][..., fliplr_rays(n)]
    return img, lbl, prob, dist


def crop_window(labels: np.ndarray, size: int, rng: np.random.Generator, foreground_prob: float) -> tuple[int, int]:
    """Top-left (y0, x0) of a ``size`` window: near a random object pixel with probability
    ``foreground_prob``, else uniform. ``labels`` (H, W) with H, W >= size."""
    h, w = labels.shape
    if rng.random() < foreground_prob and labels.any():
        ys, xs = np.nonzero(labels[::4, ::4])
        k = rng.integers(len(ys))
        cy, cx = ys[k] * 4, xs[k] * 4
        y0 = int(np.clip(cy - size // 2 + rng.integers(-size // 4, size // 4 + 1), 0, h - size))
        x0 = int(np.clip(cx - size // 2 + rng.integers(-size // 4, size // 4 + 1), 0, w - size))
        return y0, x0
    return int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))


def resample_pair(image: np.ndarray, labels: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Image (H, W, 3) uint8 and labels (H, W) scaled by ``scale`` (0.5: half the pixels per
    side): image by area averaging (anti-aliased), labels by nearest neighbour; tiny objects
    that vanish are simply gone."""
    if scale == 1:
        return image, labels
    from skimage.transform import resize

    h, w = labels.shape
    shape = (max(1, round(h * scale)), max(1, round(w * scale)))
    img = resize(image, shape + (image.shape[2],), order=1, anti_aliasing=scale < 1, preserve_range=True)
    lbl = resize(labels, shape, order=0, anti_aliasing=False, preserve_range=True)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8), lbl.astype(labels.dtype)
