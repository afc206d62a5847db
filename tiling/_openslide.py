"""openslide backend (SVS, NDPI, MRXS, Philips TIFF, generic tiled TIFF, ...).

Minimal first version; the foundation issue extends it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tiling.errors import SlideError
from tiling.slide import Slide


class OpenSlideSlide(Slide):
    def __init__(self, path: str | Path, *, mpp=None) -> None:
        import openslide

        super().__init__(path, mpp=mpp)
        try:
            self._osr = openslide.OpenSlide(str(path))
        except openslide.OpenSlideError as exc:  # unsupported or corrupt
            raise SlideError(path, f"openslide cannot read it ({exc})") from None
        props = self._osr.properties
        self.vendor = props.get("openslide.vendor", "unknown")
        self._props = props

    @property
    def level_dimensions(self):
        return tuple(self._osr.level_dimensions)

    @property
    def level_downsamples(self):
        return tuple(float(d) for d in self._osr.level_downsamples)

    @property
    def file_mpp(self):
        try:
            x = float(self._props["openslide.mpp-x"])
            y = float(self._props["openslide.mpp-y"])
        except (KeyError, ValueError):
            return None
        return (x, y) if x > 0 and y > 0 else None

    @property
    def objective_power(self):
        try:
            return float(self._props["openslide.objective-power"])
        except (KeyError, ValueError):
            return None

    @property
    def bounds(self):
        w, h = self.dimensions
        get = self._props.get
        return (
            int(get("openslide.bounds-x", 0)),
            int(get("openslide.bounds-y", 0)),
            int(get("openslide.bounds-width", w)),
            int(get("openslide.bounds-height", h)),
        )

    @property
    def tile_size(self):
        return self.level_tile_size(0)

    def level_tile_size(self, level: int):
        w = self._props.get(f"openslide.level[{level}].tile-width")
        h = self._props.get(f"openslide.level[{level}].tile-height")
        return (int(w), int(h)) if w and h else (256, 256)

    @property
    def associated_image_names(self):
        return tuple(self._osr.associated_images.keys())

    def read_associated_image(self, name: str) -> np.ndarray:
        if name not in self._osr.associated_images:
            raise SlideError(self.path, f"no associated image named {name!r}")
        return np.asarray(self._osr.associated_images[name].convert("RGB"))

    def _read_level(self, level, x, y, width, height):
        ds = self.level_downsamples[level]
        loc = (int(round(x * ds)), int(round(y * ds)))
        return np.asarray(self._osr.read_region(loc, level, (width, height)))

    def close(self) -> None:
        self._osr.close()
