"""DICOM-WSI backend: a single file, or a folder/series of files, as labs export them.

The instances are read header-only and classified by :mod:`tiling._dicom_series` (levels,
label, overview, thumbnail). Pixels of the levels come from wsidicom when it accepts the
level files and agrees on their sizes, else from the small pydicom-located frame reader of
:mod:`tiling._dicom_frames` (files without ``ImageType``, single files of a series, ...).
Label, overview and thumbnail images are never levels; they are reachable only through
:meth:`DicomSlide.read_associated_image`. Library warnings go to the log at DEBUG
(:mod:`tiling._dicom_quiet`). One handle per slide, shared by reader threads.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from tiling._dicom_quiet import quiet_dicom
from tiling._dicom_series import DicomInstance, DicomLayout, plan_layout, read_instance
from tiling.errors import SlideError, first_line
from tiling.slide import Slide

log = logging.getLogger("tiling.dicom")


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
    with quiet_dicom(path):
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
    """A DICOM-WSI slide: levels by size from the series, associated images kept private."""

    vendor = "dicom"

    def __init__(self, path: str | Path, *, mpp=None, reader: str = "auto") -> None:
        """``reader``: ``"auto"`` (wsidicom when it accepts the levels, else frames),
        ``"wsidicom"`` or ``"frames"`` (to compare the two on one series)."""
        if reader not in ("auto", "wsidicom", "frames"):
            raise ValueError(f"reader must be 'auto', 'wsidicom' or 'frames', got {reader!r}")
        super().__init__(path, mpp=mpp)
        with quiet_dicom(self.path):
            files = dicom_files(self.path)
            if not files:
                raise SlideError(self.path, "no DICOM files found")
            self._layout = plan_layout(self.path, [_read_header(p) for p in files], files)
            self._backend = _open_levels(self.path, self._layout, reader=reader)
        log.debug("%s: %d DICOM level(s) read with %s", self.path, len(self._layout.levels), self._backend.name)

    @property
    def backend(self) -> str:
        """``"wsidicom"`` or ``"frames"`` (the pydicom-located frame reader)."""
        return self._backend.name

    @property
    def level_dimensions(self):
        return tuple(inst.matrix for inst in self._layout.levels)

    @property
    def file_mpp(self):
        return self._layout.mpp

    @property
    def tile_size(self):
        return self._layout.levels[0].frame

    def level_tile_size(self, level: int) -> tuple[int, int]:
        return self._layout.levels[level].frame

    @property
    def associated_image_names(self):
        return tuple(sorted(self._layout.associated))

    def read_associated_image(self, name: str) -> np.ndarray:
        """Explicit access to label/macro/thumbnail. May contain patient data."""
        from tiling._dicom_frames import FrameReader

        inst = self._layout.associated.get(name)
        if inst is None:
            raise SlideError(self.path, f"no associated image named {name!r}")
        reader = FrameReader(inst)
        try:
            return reader.read(0, 0, *inst.matrix)
        finally:
            reader.close()

    def _read_level(self, level, x, y, width, height):
        return self._backend.read(level, x, y, width, height)

    def close(self) -> None:
        self._backend.close()


def _read_header(path: Path) -> DicomInstance | str:
    try:
        return read_instance(path)
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types on broken headers
        raise SlideError(path, f"cannot read the DICOM header ({first_line(exc)})") from None


def _open_levels(path: Path, layout: DicomLayout, *, reader: str):
    """wsidicom when it accepts the level files and sees the same levels; else the frame reader."""
    if reader == "frames":
        return _FrameLevels(layout)
    try:
        return _WsidicomLevels(layout)
    except Exception as exc:  # noqa: BLE001 - wsidicom raises many types for series it refuses
        if reader == "wsidicom":
            raise SlideError(path, f"wsidicom does not read this DICOM series ({first_line(exc)})") from None
        log.debug("%s: wsidicom does not read this series (%s); using the frame reader", path, first_line(exc))
    return _FrameLevels(layout)


class _WsidicomLevels:
    name = "wsidicom"

    def __init__(self, layout: DicomLayout) -> None:
        from wsidicom import WsiDicom

        self._path = layout.levels[0].path
        self._wsi = WsiDicom.open([inst.path for inst in layout.levels])
        sizes = [(int(lvl.size.width), int(lvl.size.height)) for lvl in self._wsi.levels]
        wanted = [inst.matrix for inst in layout.levels]
        if sizes != wanted:
            self._wsi.close()
            raise ValueError(f"wsidicom sees levels {sizes}, the series holds {wanted}")
        self._levels = [lvl.level for lvl in self._wsi.levels]
        try:  # wsidicom accepts some series it cannot read (no DimensionOrganizationType): try one tile per level
            for i, inst in enumerate(layout.levels):
                (w, h), (tw, th) = inst.matrix, inst.frame
                self._wsi.read_region((max(0, w - tw), max(0, h - th)), self._levels[i], (min(tw, w), min(th, h)))
        except Exception:
            self._wsi.close()
            raise

    def read(self, level: int, x: int, y: int, width: int, height: int) -> np.ndarray:
        try:
            region = self._wsi.read_region((x, y), self._levels[level], (width, height))
        except Exception as exc:  # noqa: BLE001 - decoder errors come in many types
            raise SlideError(self._path, f"cannot decode level {level} at ({x}, {y}): {first_line(exc)}") from None
        return np.asarray(region.convert("RGB"))

    def close(self) -> None:
        self._wsi.close()


class _FrameLevels:
    name = "frames"

    def __init__(self, layout: DicomLayout) -> None:
        from tiling._dicom_frames import FrameReader

        self._readers: list = []
        try:
            for inst in layout.levels:
                self._readers.append(FrameReader(inst))
        except Exception:
            self.close()
            raise

    def read(self, level: int, x: int, y: int, width: int, height: int) -> np.ndarray:
        return self._readers[level].read(x, y, width, height)

    def close(self) -> None:
        for reader in self._readers:
            reader.close()
