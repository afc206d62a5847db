"""DICOM-WSI backend (wsidicom) for files and folders openslide cannot open.

A DICOM-WSI slide is a series of instances (one per pyramid level, plus label and
overview). ``path`` may be the folder holding them or one file of the series (its
sibling ``.dcm`` files are then read too). One ``WsiDicom`` handle per thread.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from tiling.errors import SlideError, first_line
from tiling.slide import Slide


def is_dicom_file(path: Path) -> bool:
    """True when ``path`` carries the DICOM preamble magic ``DICM`` at byte 128."""
    try:
        with open(path, "rb") as fh:
            fh.seek(128)
            return fh.read(4) == b"DICM"
    except OSError:
        return False


def dicom_files(path: Path) -> list[Path]:
    """The DICOM files of the series at ``path`` (a folder, or one file and its siblings)."""
    folder = path if path.is_dir() else path.parent
    files = sorted(p for p in folder.iterdir() if p.is_file() and is_dicom_file(p))
    if path.is_dir():
        return files
    series = _series_uid(path)
    same = [p for p in files if p != path and series is not None and _series_uid(p) == series]
    return [path, *same]


def _series_uid(path: Path) -> str | None:
    import pydicom

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SeriesInstanceUID"])
    except Exception:  # noqa: BLE001 - unreadable header: not part of the series
        return None
    return str(ds.get("SeriesInstanceUID", "")) or None


class DicomSlide(Slide):
    """A DICOM-WSI series read with wsidicom."""

    vendor = "dicom"

    def __init__(self, path: str | Path, *, mpp=None) -> None:
        super().__init__(path, mpp=mpp)
        self._local = threading.local()
        self._handles: list = []
        self._lock = threading.Lock()
        self._files = dicom_files(self.path)
        if not self._files:
            raise SlideError(self.path, "no DICOM files found")
        wsi = self._handle()
        levels = list(wsi.levels)
        if not levels:
            raise SlideError(self.path, "the DICOM series has no whole-slide image levels")
        self._levels = [lvl.level for lvl in levels]
        self._dims = tuple((int(lvl.size.width), int(lvl.size.height)) for lvl in levels)
        t = levels[0].tile_size
        self._tile = (int(t.width), int(t.height))
        try:
            m = levels[0].mpp
            self._mpp = (float(m.width), float(m.height)) if m and m.width > 0 else None
        except Exception:  # mpp missing or malformed in the dataset
            self._mpp = None
        names = []
        for name, attr in (("label", "labels"), ("macro", "overviews")):
            try:
                if getattr(wsi, attr, None):
                    names.append(name)
            except Exception:  # noqa: BLE001 - optional metadata
                pass
        self._assoc = tuple(names)

    def _handle(self):
        wsi = getattr(self._local, "wsi", None)
        if wsi is None:
            from wsidicom import WsiDicom

            try:
                wsi = WsiDicom.open(self._files)
            except Exception as exc:  # wsidicom raises many types for unusable series
                raise SlideError(self.path, f"no usable DICOM whole-slide image ({first_line(exc)})") from None
            self._local.wsi = wsi
            with self._lock:
                self._handles.append(wsi)
        return wsi

    @property
    def level_dimensions(self):
        return self._dims

    @property
    def file_mpp(self):
        return self._mpp

    @property
    def tile_size(self):
        return self._tile

    @property
    def associated_image_names(self):
        return self._assoc

    def read_associated_image(self, name: str) -> np.ndarray:
        """Explicit access to label/overview. May contain patient data."""
        wsi = self._handle()
        if name == "label" and name in self._assoc:
            return np.asarray(wsi.read_label().convert("RGB"))
        if name == "macro" and name in self._assoc:
            return np.asarray(wsi.read_overview().convert("RGB"))
        raise SlideError(self.path, f"no associated image named {name!r}")

    def _read_level(self, level, x, y, width, height):
        wsi = self._handle()
        try:
            region = wsi.read_region((x, y), self._levels[level], (width, height))
        except Exception as exc:
            raise SlideError(self.path, f"cannot decode level {level} at ({x}, {y}): {first_line(exc)}") from None
        return np.asarray(region.convert("RGB"))

    def close(self) -> None:
        with self._lock:
            handles, self._handles = self._handles, []
        for wsi in handles:
            wsi.close()
        self._local = threading.local()
