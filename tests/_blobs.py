"""Test helpers: an image of dark discs with known centres and a trivial detector for it."""

from __future__ import annotations

import numpy as np
import shapely
from skimage.measure import find_contours, label, regionprops

from detectors.base import Detector, DetectorSpec, Instances
from tiling.grid import Tile, tile_grid


def blob_image(width: int, height: int, *, n: int, radius: int = 6, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """White RGB image with ``n`` non-touching dark discs; returns (image, centres (n, 2) x, y)."""
    rng = np.random.default_rng(seed)
    img = np.full((height, width, 3), 245, np.uint8)
    centres: list[tuple[int, int]] = []
    yy, xx = np.mgrid[0:height, 0:width]
    tries = 0
    while len(centres) < n and tries < n * 50:
        tries += 1
        x, y = rng.integers(0, width), rng.integers(0, height)
        if any((x - cx) ** 2 + (y - cy) ** 2 < (3 * radius) ** 2 for cx, cy in centres):
            continue
        centres.append((int(x), int(y)))
        img[(xx - x) ** 2 + (yy - y) ** 2 <= radius**2] = (60, 40, 120)
    return img, np.array(centres, float)


class BlobDetector(Detector):
    """Dark connected components fully inside the tile -> polygons (for pipeline tests)."""

    def __init__(self, *, tile_size: int = 128, halo: int = 16, mpp: float = 0.5, device: str = "cpu",
                 oom_above: int | None = None) -> None:
        super().__init__(device=device)
        self.spec = DetectorSpec("blobs", mpp, tile_size, halo, max_object_size=halo, classes=("Blob",))
        self.oom_above = oom_above
        self.calls: list[int] = []

    def _predict_batch(self, tiles: np.ndarray) -> list[Instances]:
        self.calls.append(len(tiles))
        if self.oom_above is not None and len(tiles) > self.oom_above:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return [self._one(t) for t in tiles]

    def _one(self, tile: np.ndarray) -> Instances:
        mask = tile.mean(axis=2) < 128
        lab = label(mask)
        h, w = mask.shape
        geoms, scores = [], []
        for r in regionprops(lab):
            y0, x0, y1, x1 = r.bbox
            if y0 == 0 or x0 == 0 or y1 == h or x1 == w:
                continue  # cut by the tile border: not seen whole
            contour = find_contours(np.pad(r.image, 1), 0.5)[0]
            poly = shapely.Polygon(contour[:, ::-1] - 1 + [x0, y0]).buffer(0)
            geoms.append(poly)
            scores.append(1.0)
        return Instances(np.array(geoms, dtype=object), scores, ["Blob"] * len(geoms))


def simple_tasks(width: int, height: int, spec: DetectorSpec, *, slide_mpp: float) -> list[Tile]:
    """The whole-image grid for a detector spec (no tissue mask)."""
    return tile_grid((width, height), slide_mpp=slide_mpp, working_mpp=spec.mpp, tile_size=spec.tile_size,
                     halo=spec.halo, max_object=spec.max_object_size)
