"""An ndarray-backed :class:`Slide` for tests and for plain images (one level or more)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tiling.slide import Slide, to_rgb


def area_downsample(image: np.ndarray, factor: int) -> np.ndarray:
    """Average ``factor x factor`` blocks of an ``(H, W, C)`` image (edges padded by replication)."""
    h, w = image.shape[:2]
    ph, pw = (-h) % factor, (-w) % factor
    if ph or pw:
        image = np.pad(image, ((0, ph), (0, pw), (0, 0)), mode="edge")
    H, W = image.shape[0] // factor, image.shape[1] // factor
    blocks = image.reshape(H, factor, W, factor, image.shape[2]).astype(np.float32)
    return (blocks.mean(axis=(1, 3)) + 0.5).astype(np.uint8)


class ArraySlide(Slide):
    """A slide held in memory: ``image`` is ``(H, W, 3|4)`` uint8 level 0.

    Levels below are made by 2x area averaging until the longer side is <= ``min_size``.
    """

    vendor = "array"

    def __init__(
        self,
        image: np.ndarray,
        *,
        mpp: float | tuple[float, float] | None = None,
        path: str | Path = "array",
        min_size: int = 2048,
        tile_size: int = 256,
    ) -> None:
        super().__init__(path, mpp=mpp)
        levels = [to_rgb(np.asarray(image))]
        while max(levels[-1].shape[:2]) > min_size:
            levels.append(area_downsample(levels[-1], 2))
        self._levels = levels
        self._tile = tile_size

    @property
    def level_dimensions(self) -> tuple[tuple[int, int], ...]:
        return tuple((a.shape[1], a.shape[0]) for a in self._levels)

    @property
    def level_downsamples(self) -> tuple[float, ...]:
        return tuple(float(2**i) for i in range(len(self._levels)))

    @property
    def tile_size(self) -> tuple[int, int]:
        return (self._tile, self._tile)

    def _read_level(self, level: int, x: int, y: int, width: int, height: int) -> np.ndarray:
        return self._levels[level][y : y + height, x : x + width]
