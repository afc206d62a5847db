"""tifffile backend: OME-TIFF and other (pyramidal or plain) TIFFs that openslide refuses.

Pyramid levels come from tifffile's series levels (SubIFDs or reduced pages). Pixels are
read through tifffile's zarr view of each level, one ``TiffFile`` handle per thread.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
from pathlib import Path

import numpy as np

from tiling.errors import SlideError, first_line
from tiling.slide import Slide

_UNIT_TO_UM = {"µm": 1.0, "um": 1.0, "micron": 1.0, "nm": 1e-3, "mm": 1e3, "cm": 1e4, "m": 1e6, "Å": 1e-4}
_PLAUSIBLE_MPP = (0.01, 100.0)  # µm/px; 72 or 96 dpi screen resolutions fall outside


def _selector(axes: str, shape: tuple[int, ...]) -> tuple[list, list[str]]:
    """Index template over ``axes`` keeping Y, X and one colour axis; other axes at 0."""
    index: list = []
    kept: list[str] = []
    colour_taken = False
    for ax, n in zip(axes, shape, strict=True):
        if ax in "YX":
            index.append(ax)
            kept.append(ax)
        elif ax in "SC" and n in (3, 4) and not colour_taken:
            index.append(slice(None))
            kept.append("S")
            colour_taken = True
        elif n == 1 or ax in "TZQIR":
            index.append(0)
        else:
            raise ValueError(f"unsupported TIFF layout: axes {axes} shape {shape} (not RGB brightfield)")
    if "Y" not in kept or "X" not in kept:
        raise ValueError(f"unsupported TIFF layout: axes {axes} has no Y/X plane")
    return index, kept


def _mpp_from_ome(xml: str) -> tuple[float, float] | None:
    pixels = re.search(r"<Pixels\b[^>]*>", xml)
    if not pixels:
        return None
    tag = pixels.group(0)
    vals = []
    for ax in "XY":
        m = re.search(rf'PhysicalSize{ax}="([0-9.eE+-]+)"', tag)
        if not m:
            return None
        unit = re.search(rf'PhysicalSize{ax}Unit="([^"]+)"', tag)
        vals.append(float(m.group(1)) * _UNIT_TO_UM.get(unit.group(1) if unit else "µm", 1.0))
    return (vals[0], vals[1])


def _mpp_from_tags(page) -> tuple[float, float] | None:
    desc = page.description or ""
    m = re.search(r"\|\s*MPP\s*=\s*([0-9.]+)", desc)
    if m:
        return (float(m.group(1)), float(m.group(1)))
    tags = page.tags
    unit = tags.get("ResolutionUnit")
    xr, yr = tags.get("XResolution"), tags.get("YResolution")
    if unit is None or xr is None or yr is None or int(unit.value) not in (2, 3):
        return None
    per = 25400.0 if int(unit.value) == 2 else 10000.0  # µm per inch / per cm
    try:
        mx = per * xr.value[1] / xr.value[0]
        my = per * yr.value[1] / yr.value[0]
    except (ZeroDivisionError, TypeError, IndexError):
        return None
    lo, hi = _PLAUSIBLE_MPP
    return (mx, my) if lo < mx < hi and lo < my < hi else None


@contextlib.contextmanager
def _quiet_tifffile():
    """tifffile logs damaged-file warnings; we report one clear error instead."""
    logger = logging.getLogger("tifffile")
    old = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(old)


class TiffSlide(Slide):
    """A TIFF read with tifffile (OME-TIFF pyramids, SubIFD pyramids, plain TIFF images)."""

    def __init__(self, path: str | Path, *, mpp=None) -> None:
        super().__init__(path, mpp=mpp)
        import tifffile

        self._local = threading.local()
        self._files: list = []
        self._lock = threading.Lock()
        try:
            with _quiet_tifffile():
                tif = tifffile.TiffFile(str(self.path))
                series = tif.series[0]
                levels = list(series.levels)
                self._index, self._kept = _selector(series.axes, series.shape)
                dtype = series.dtype
        except ValueError as exc:
            raise SlideError(self.path, first_line(exc)) from None
        except Exception as exc:  # tifffile raises many types for damaged files
            raise SlideError(self.path, f"damaged or truncated TIFF, tifffile cannot read it ({first_line(exc)})") from None
        if dtype != np.uint8:
            tif.close()
            raise SlideError(self.path, f"unsupported pixel type {dtype} (8-bit RGB or grey expected)")
        self._axes = series.axes
        dims = []
        for lvl in levels:
            shape = dict(zip(series.axes, lvl.shape, strict=True))
            dims.append((int(shape["X"]), int(shape["Y"])))
        self._dims = tuple(dims)
        page = series.keyframe
        self._tile = (int(page.tilewidth), int(page.tilelength)) if page.is_tiled else (256, 256)
        self._mpp = _mpp_from_ome(tif.ome_metadata) if tif.is_ome and tif.ome_metadata else None
        if self._mpp is None:
            self._mpp = _mpp_from_tags(page)
        mag = re.search(r'NominalMagnification="([0-9.]+)"', tif.ome_metadata or "") if tif.is_ome else None
        if mag is None:
            mag = re.search(r"\|\s*AppMag\s*=\s*([0-9.]+)", page.description or "")
        self._objective = float(mag.group(1)) if mag else None
        self.vendor = "ome-tiff" if tif.is_ome else "tiff"
        self._local.state = (tif, {})
        self._files.append(tif)

    # -- handles ------------------------------------------------------------------------
    def _level_array(self, level: int):
        import tifffile
        import zarr

        state = getattr(self._local, "state", None)
        if state is None:
            tif = tifffile.TiffFile(str(self.path))
            state = (tif, {})
            self._local.state = state
            with self._lock:
                self._files.append(tif)
        tif, arrays = state
        if level not in arrays:
            arrays[level] = zarr.open(tif.series[0].aszarr(level=level), mode="r")
        return arrays[level]

    # -- metadata -----------------------------------------------------------------------
    @property
    def level_dimensions(self):
        return self._dims

    @property
    def file_mpp(self):
        return self._mpp

    @property
    def objective_power(self):
        return self._objective

    @property
    def tile_size(self):
        return self._tile

    # -- pixels -------------------------------------------------------------------------
    def _read_level(self, level, x, y, width, height):
        arr = self._level_array(level)
        index = tuple(
            slice(y, y + height) if i == "Y" else slice(x, x + width) if i == "X" else i for i in self._index
        )
        try:
            window = np.asarray(arr[index])
        except Exception as exc:
            raise SlideError(self.path, f"cannot decode level {level} at ({x}, {y}): {first_line(exc)}") from None
        order = [self._kept.index(a) for a in ("Y", "X", "S") if a in self._kept]
        return window.transpose(order)

    def close(self) -> None:
        with self._lock:
            files, self._files = self._files, []
        for tif in files:
            tif.close()
        self._local = threading.local()
