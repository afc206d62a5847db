"""The :class:`Slide` contract: one opened whole-slide image, read lazily.

Vocabulary (as in tiatoolbox's ``read_rect``): a resolution is either a pyramid
``level`` or a physical ``mpp`` (micrometres per pixel). Locations are always
``(x, y)`` in level-0 pixels, sizes ``(width, height)`` in output pixels; arrays come
back as ``(height, width, 3)`` RGB ``uint8`` with transparent pixels composited on white.

Associated images (label, macro, thumbnail) may carry patient data. They are reachable
only through :meth:`Slide.read_associated_image`, never through any other method, and
no output writer in this project calls it.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from tiling.errors import MissingMppError, SlideError


@dataclass(frozen=True)
class SlideInfo:
    """Serialisable, PHI-free description of a slide (what ``wsi-pipeline info`` prints)."""

    name: str
    vendor: str
    level_dimensions: tuple[tuple[int, int], ...]
    level_downsamples: tuple[float, ...]
    mpp: tuple[float, float] | None
    objective_power: float | None
    bounds: tuple[int, int, int, int]
    tile_size: tuple[int, int]
    associated_images: tuple[str, ...]

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "vendor": self.vendor,
            "level_count": len(self.level_dimensions),
            "level_dimensions": [list(d) for d in self.level_dimensions],
            "level_downsamples": list(self.level_downsamples),
            "mpp": None if self.mpp is None else list(self.mpp),
            "objective_power": self.objective_power,
            "bounds": list(self.bounds),
            "tile_size": list(self.tile_size),
            "associated_images": list(self.associated_images),
        }


class Slide(ABC):
    """An opened slide. Subclasses implement :meth:`_read_level` and the metadata."""

    def __init__(self, path: str | Path, *, mpp: float | tuple[float, float] | None = None) -> None:
        self.path = Path(path)
        if mpp is not None and not isinstance(mpp, tuple):
            mpp = (float(mpp), float(mpp))
        self._mpp_override = mpp

    # -- metadata every backend provides ---------------------------------------------
    vendor: str = "unknown"

    @property
    @abstractmethod
    def level_dimensions(self) -> tuple[tuple[int, int], ...]:
        """``(width, height)`` of each level, level 0 first."""

    @property
    def level_downsamples(self) -> tuple[float, ...]:
        w0, h0 = self.level_dimensions[0]
        return tuple((w0 / w + h0 / h) / 2 for w, h in self.level_dimensions)

    @property
    def level_count(self) -> int:
        return len(self.level_dimensions)

    @property
    def dimensions(self) -> tuple[int, int]:
        return self.level_dimensions[0]

    @property
    def file_mpp(self) -> tuple[float, float] | None:
        """mpp recorded in the file, ``None`` when absent. Backends override."""
        return None

    @property
    def mpp_or_none(self) -> tuple[float, float] | None:
        return self._mpp_override or self.file_mpp

    @property
    def mpp(self) -> tuple[float, float]:
        """``(mpp_x, mpp_y)`` at level 0; the ``--mpp`` override wins over the file."""
        mpp = self.mpp_or_none
        if mpp is None:
            raise MissingMppError(self.path)
        return mpp

    @property
    def objective_power(self) -> float | None:
        return None

    @property
    def bounds(self) -> tuple[int, int, int, int]:
        """``(x, y, width, height)`` of the non-empty region (openslide bounds-*)."""
        w, h = self.dimensions
        return (0, 0, w, h)

    @property
    def tile_size(self) -> tuple[int, int]:
        """Native tile ``(width, height)`` of level 0 (chunks of the lazy pyramid)."""
        return (256, 256)

    def level_tile_size(self, level: int) -> tuple[int, int]:
        return self.tile_size

    @property
    def associated_image_names(self) -> tuple[str, ...]:
        return ()

    def read_associated_image(self, name: str) -> np.ndarray:
        """Explicit access to label/macro/thumbnail. May contain patient data."""
        raise SlideError(self.path, f"no associated image named {name!r}")

    @property
    def info(self) -> SlideInfo:
        return SlideInfo(
            name=self.path.name,
            vendor=self.vendor,
            level_dimensions=tuple(self.level_dimensions),
            level_downsamples=tuple(float(d) for d in self.level_downsamples),
            mpp=self.mpp_or_none,
            objective_power=self.objective_power,
            bounds=self.bounds,
            tile_size=self.tile_size,
            associated_images=self.associated_image_names,
        )

    # -- reading ------------------------------------------------------------------
    @abstractmethod
    def _read_level(self, level: int, x: int, y: int, width: int, height: int) -> np.ndarray:
        """Read a window in *level* pixels; return ``(h, w, 3|4)`` uint8 (RGBA allowed)."""

    def read_region(
        self,
        location: tuple[int, int],
        size: tuple[int, int],
        *,
        level: int | None = None,
        mpp: float | None = None,
    ) -> np.ndarray:
        """Read ``size`` pixels at ``level`` (or at ``mpp``) from level-0 ``location``.

        Returns ``(height, width, 3)`` uint8. Windows reaching outside the image are
        filled with white.
        """
        if (level is None) == (mpp is None):
            raise ValueError("give exactly one of level= or mpp=")
        if mpp is not None:
            return self._read_at_mpp(location, size, float(mpp))
        if not 0 <= level < self.level_count:
            raise SlideError(self.path, f"level {level} out of range 0..{self.level_count - 1}")
        ds = self.level_downsamples[level]
        x = int(math.floor(location[0] / ds))
        y = int(math.floor(location[1] / ds))
        return self._read_padded(level, x, y, int(size[0]), int(size[1]))

    def level_for_mpp(self, mpp: float) -> int:
        """The coarsest level whose resolution is at least as fine as ``mpp``."""
        base = self.mpp[0]
        best = 0
        for i, ds in enumerate(self.level_downsamples):
            if base * ds <= mpp * 1.001:
                best = i
        return best

    def _read_at_mpp(self, location: tuple[int, int], size: tuple[int, int], mpp: float) -> np.ndarray:
        level = self.level_for_mpp(mpp)
        ds = self.level_downsamples[level]
        scale = mpp / (self.mpp[0] * ds)  # level pixels per output pixel
        w_out, h_out = int(size[0]), int(size[1])
        if abs(scale - 1.0) < 1e-3:
            return self.read_region(location, size, level=level)
        w_in = max(1, int(round(w_out * scale)))
        h_in = max(1, int(round(h_out * scale)))
        x = int(math.floor(location[0] / ds))
        y = int(math.floor(location[1] / ds))
        window = self._read_padded(level, x, y, w_in, h_in)
        resample = Image.Resampling.BOX if scale > 1 else Image.Resampling.BILINEAR
        return np.asarray(Image.fromarray(window).resize((w_out, h_out), resample))

    def _read_padded(self, level: int, x: int, y: int, width: int, height: int) -> np.ndarray:
        lw, lh = self.level_dimensions[level]
        out = np.full((height, width, 3), 255, np.uint8)
        x0, y0 = max(x, 0), max(y, 0)
        x1, y1 = min(x + width, lw), min(y + height, lh)
        if x1 <= x0 or y1 <= y0:
            return out
        window = self._read_level(level, x0, y0, x1 - x0, y1 - y0)
        out[y0 - y : y1 - y, x0 - x : x1 - x] = to_rgb(window)
        return out

    # -- lifecycle ----------------------------------------------------------------
    def close(self) -> None:
        """Release file handles. Backends override."""

    def __enter__(self) -> "Slide":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.path.name!r}, levels={self.level_dimensions})"


def to_rgb(window: np.ndarray) -> np.ndarray:
    """Composite RGBA on white (premultiplied or not: transparent -> white); pass RGB through."""
    if window.ndim == 2:
        return np.repeat(window[..., None], 3, axis=2).astype(np.uint8)
    if window.shape[2] == 3:
        return window.astype(np.uint8, copy=False)
    rgb = window[..., :3].astype(np.float32)
    alpha = window[..., 3:4].astype(np.float32) / 255.0
    out = rgb * alpha + 255.0 * (1.0 - alpha)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)
