"""openslide backend (Aperio SVS, Hamamatsu, MIRAX, Philips, Leica, Ventana, DICOM, generic tiled TIFF).

Each thread gets its own ``OpenSlide`` handle (``threading.local``) so dask threads and the
OME-Zarr writer's workers decode tiles in parallel: openslide is called through ctypes,
which releases the GIL. Regions are decoded straight into a numpy buffer (premultiplied
ARGB) and composited on white with integer arithmetic, skipping openslide-python's PIL
round trip.
"""

from __future__ import annotations

import ctypes
import threading
from pathlib import Path

import numpy as np

from tiling.errors import SlideError, first_line
from tiling.slide import Slide


def argb_to_planar(argb: np.ndarray) -> np.ndarray:
    """Premultiplied native-endian ARGB ``(h, w)`` uint32 -> ``(3, h, w)`` uint8 RGB on white."""
    bgra = argb.view(np.uint8).reshape(argb.shape[0], argb.shape[1], 4).transpose(2, 0, 1)
    if not np.little_endian:  # pragma: no cover - big-endian hosts
        bgra = bgra[::-1]
    planes = np.ascontiguousarray(bgra[2::-1])  # R, G, B planes: one copy
    alpha = bgra[3]
    if alpha.min() == 255:
        return planes
    # premultiplied: composite over white is c + (255 - a), exact in integers
    return (planes.astype(np.uint16) + (255 - alpha)[None]).clip(0, 255).astype(np.uint8)


def argb_to_rgb(argb: np.ndarray) -> np.ndarray:
    """Premultiplied native-endian ARGB ``(h, w)`` uint32 -> ``(h, w, 3)`` uint8 RGB on white."""
    return np.ascontiguousarray(argb_to_planar(argb).transpose(1, 2, 0))


class OpenSlideSlide(Slide):
    """A slide read with openslide; one handle per thread."""

    def __init__(self, path: str | Path, *, mpp=None) -> None:
        super().__init__(path, mpp=mpp)
        self._local = threading.local()
        self._handles: list = []
        self._lock = threading.Lock()
        osr = self._handle()  # opens (and validates) the file in this thread
        props = osr.properties
        self._props = {k: props[k] for k in props.keys()}
        self.vendor = self._props.get("openslide.vendor", "unknown")
        self._dims = tuple(tuple(int(v) for v in d) for d in osr.level_dimensions)
        self._downsamples = tuple(float(d) for d in osr.level_downsamples)
        self._assoc = tuple(osr.associated_images.keys())

    # -- handles ----------------------------------------------------------------------
    def _handle(self):
        osr = getattr(self._local, "osr", None)
        if osr is None:
            import openslide

            try:
                osr = openslide.OpenSlide(str(self.path))
            except (openslide.OpenSlideError, OSError, ValueError) as exc:
                raise SlideError(self.path, f"damaged or unsupported slide, openslide cannot read it ({first_line(exc)})") from None
            self._local.osr = osr
            with self._lock:
                self._handles.append(osr)
        return osr

    def validate(self) -> None:
        """Decode the last tile of level 0 and of the last level: catches truncated files."""
        for level in {0, self.level_count - 1}:
            w, h = self._dims[level]
            tw, th = self.level_tile_size(level)
            x, y = max(0, w - tw), max(0, h - th)
            self._read_level(level, x, y, min(tw, w), min(th, h))
        self._read_level(0, 0, 0, min(16, self._dims[0][0]), min(16, self._dims[0][1]))

    # -- metadata ---------------------------------------------------------------------
    @property
    def level_dimensions(self):
        return self._dims

    @property
    def level_downsamples(self):
        return self._downsamples

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
        return self._assoc

    def read_associated_image(self, name: str) -> np.ndarray:
        """Explicit access to label/macro/thumbnail. May contain patient data."""
        osr = self._handle()
        if name not in self._assoc:
            raise SlideError(self.path, f"no associated image named {name!r}")
        return np.asarray(osr.associated_images[name].convert("RGB"))

    # -- pixels -------------------------------------------------------------------------
    def _read_argb(self, level: int, x: int, y: int, width: int, height: int) -> np.ndarray:
        """``(height, width)`` uint32 premultiplied ARGB, window in *level* pixels."""
        import openslide
        from openslide import lowlevel

        osr = self._handle()
        ds = self._downsamples[level]
        x0, y0 = int(round(x * ds)), int(round(y * ds))
        buf = np.empty((height, width), np.uint32)
        try:
            raw = getattr(lowlevel, "_read_region", None)
            if raw is None:  # pragma: no cover - older/newer openslide-python
                rgba = np.asarray(osr.read_region((x0, y0), level, (width, height))).astype(np.uint32)
                a = rgba[..., 3]
                premul = (rgba[..., :3] * a[..., None] + 127) // 255
                return (a << 24) | (premul[..., 0] << 16) | (premul[..., 1] << 8) | premul[..., 2]
            raw(osr._osr, buf.ctypes.data_as(ctypes.POINTER(ctypes.c_uint32)), x0, y0, level, width, height)
        except openslide.OpenSlideError as exc:
            raise SlideError(self.path, f"cannot decode level {level} at ({x}, {y}): {first_line(exc)}") from None
        return buf

    def _read_level(self, level, x, y, width, height):
        return argb_to_rgb(self._read_argb(level, x, y, width, height))

    def read_planar(self, level: int, x: int, y: int, width: int, height: int) -> np.ndarray:
        """``(3, height, width)`` uint8 RGB of a window inside *level* (fast path for writers)."""
        return argb_to_planar(self._read_argb(level, x, y, width, height))

    def close(self) -> None:
        with self._lock:
            handles, self._handles = self._handles, []
        for osr in handles:
            osr.close()
        self._local = threading.local()
