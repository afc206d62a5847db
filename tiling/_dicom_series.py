"""Which DICOM instances make a slide: pyramid levels, label, overview, thumbnail.

Reads headers only (pydicom, no pixel data) and decides the layout the way the standard
allows, not only the way one writer does it:

* only VL Whole Slide Microscopy instances count; any other SOP class is refused by name;
* ``ImageType`` value 3 says VOLUME / LABEL / OVERVIEW / THUMBNAIL when present; when it
  is absent an instance whose one frame covers its whole matrix is a label/thumbnail
  candidate (never a level) and tiled instances are levels;
* the largest ``TotalPixelMatrix`` is level 0, the other levels follow by size (one
  instance per size; the first focal plane and optical path);
* ``TILED_FULL`` is implied when ``DimensionOrganizationType`` and per-frame positions are
  absent; ``TILED_SPARSE`` frames carry ``PlanePositionSlideSequence`` positions;
* µm per pixel from ``PixelSpacing`` in the shared functional groups, else
  ``ImagedVolumeWidth`` / ``TotalPixelMatrixColumns``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tiling.errors import SlideError

WSI_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.77.1.6"
_ASSOCIATED = {"LABEL": "label", "OVERVIEW": "macro", "THUMBNAIL": "thumbnail"}


class NotASlideError(SlideError):
    """A DICOM file of another kind (CT, MR, ...): no other reader should try it."""


@dataclass(frozen=True)
class DicomInstance:
    """One DICOM-WSI instance, described from its header. Sizes are ``(width, height)``."""

    path: Path
    series_uid: str
    flavour: str | None  # ImageType value 3 (VOLUME, LABEL, ...) or None when absent
    matrix: tuple[int, int]
    frame: tuple[int, int]
    frame_count: int
    transfer_syntax: str
    photometric: str
    samples: int
    bits_allocated: int
    planar: int
    sparse: bool
    mpp: tuple[float, float] | None
    pixel_offset: int  # file offset of the PixelData element's tag, -1 when absent
    explicit_vr: bool
    positions: tuple[tuple[int, int], ...] = ()  # sparse: 0-based (x, y) of each frame, first plane

    @property
    def single_frame(self) -> bool:
        """One frame covering the whole matrix (how labels, overviews, thumbnails are written)."""
        return self.frame_count == 1 and self.frame == self.matrix


@dataclass(frozen=True)
class DicomLayout:
    """The slide's levels (level 0 first) and its associated images by name."""

    levels: tuple[DicomInstance, ...]
    associated: dict[str, DicomInstance]

    @property
    def mpp(self) -> tuple[float, float] | None:
        return self.levels[0].mpp


def read_instance(path: Path) -> DicomInstance | str:
    """The instance at ``path``, or its SOP class UID when it is not a whole-slide image."""
    import pydicom
    from pydicom.uid import UID

    with open(path, "rb") as fh:
        ds = pydicom.dcmread(fh, stop_before_pixels=True)
        tag_at = fh.tell()
        pixel_offset = tag_at if fh.read(4) == b"\xe0\x7f\x10\x00" else -1
    sop = str(ds.get("SOPClassUID", "") or getattr(ds.get("file_meta"), "MediaStorageSOPClassUID", "") or "")
    if sop != WSI_SOP_CLASS:
        return sop or "unknown"
    syntax = UID(str(getattr(ds, "file_meta", {}).get("TransferSyntaxUID", "") or "1.2.840.10008.1.2"))
    image_type = [str(v).upper() for v in (ds.get("ImageType") or [])]
    matrix = (int(ds.get("TotalPixelMatrixColumns") or ds.get("Columns") or 0), int(ds.get("TotalPixelMatrixRows") or ds.get("Rows") or 0))
    sparse = str(ds.get("DimensionOrganizationType", "")).upper() == "TILED_SPARSE" or _has_positions(ds)
    return DicomInstance(
        path=path,
        series_uid=str(ds.get("SeriesInstanceUID", "")),
        flavour=image_type[2] if len(image_type) > 2 else None,
        matrix=matrix,
        frame=(int(ds.get("Columns") or 0), int(ds.get("Rows") or 0)),
        frame_count=int(ds.get("NumberOfFrames") or 1),
        transfer_syntax=str(syntax),
        photometric=str(ds.get("PhotometricInterpretation", "RGB")).upper(),
        samples=int(ds.get("SamplesPerPixel") or 1),
        bits_allocated=int(ds.get("BitsAllocated") or 8),
        planar=int(ds.get("PlanarConfiguration") or 0),
        sparse=sparse,
        mpp=_mpp(ds, matrix),
        pixel_offset=pixel_offset,
        explicit_vr=not getattr(syntax, "is_implicit_VR", False),
        positions=_positions(ds) if sparse else (),
    )


def _has_positions(ds) -> bool:
    frames = ds.get("PerFrameFunctionalGroupsSequence")
    return bool(frames) and "PlanePositionSlideSequence" in frames[0]


def _positions(ds) -> tuple[tuple[int, int], ...]:
    """0-based ``(x, y)`` of every frame; frames of later focal planes/optical paths are ``(-1, -1)``."""
    out, seen = [], set()
    for item in ds.get("PerFrameFunctionalGroupsSequence") or []:
        pos = item.PlanePositionSlideSequence[0]
        xy = (int(pos.ColumnPositionInTotalImagePixelMatrix) - 1, int(pos.RowPositionInTotalImagePixelMatrix) - 1)
        out.append(xy if xy not in seen else (-1, -1))
        seen.add(xy)
    return tuple(out)


def _mpp(ds, matrix: tuple[int, int]) -> tuple[float, float] | None:
    """``(x, y)`` µm per pixel: PixelSpacing (row, column spacing in mm), else imaged volume / matrix."""
    try:
        spacing = ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].PixelSpacing
        mpp = (float(spacing[1]) * 1000.0, float(spacing[0]) * 1000.0)
        if all(v > 0 for v in mpp):
            return mpp
    except (AttributeError, IndexError, KeyError, TypeError, ValueError):
        pass
    try:
        mpp = (float(ds.ImagedVolumeWidth) * 1000.0 / matrix[0], float(ds.ImagedVolumeHeight) * 1000.0 / matrix[1])
        return mpp if all(v > 0 for v in mpp) else None
    except (AttributeError, TypeError, ValueError, ZeroDivisionError):
        return None


def plan_layout(path: Path, instances: list[DicomInstance | str], files: list[Path]) -> DicomLayout:
    """Choose levels and associated images among the instances read from ``files``."""
    slides = [i for i in instances if isinstance(i, DicomInstance)]
    if not slides:
        raise NotASlideError(path, _not_a_slide(instances))
    series = _pick_series(path, slides)
    members = [i for i in slides if i.series_uid == series]
    volumes = [i for i in members if _is_level(i)]
    if not volumes:
        raise SlideError(path, "the DICOM series holds no whole-slide image level (only label, overview or thumbnail images, "
                         "or single-frame images without ImageType, which are never read as the slide)")
    by_size: dict[tuple[int, int], DicomInstance] = {}
    for inst in sorted(volumes, key=lambda i: (-i.matrix[0] * i.matrix[1], str(i.path))):
        by_size.setdefault(inst.matrix, inst)
    levels = tuple(by_size.values())
    associated: dict[str, DicomInstance] = {}
    for inst in members:
        if inst not in volumes:
            associated.setdefault(_associated_name(inst, levels[0]), inst)
    return DicomLayout(levels=levels, associated=associated)


def _is_level(inst: DicomInstance) -> bool:
    if min(*inst.matrix, *inst.frame) <= 0:
        return False
    if inst.flavour is not None:
        return inst.flavour == "VOLUME"
    return not inst.single_frame


def _associated_name(inst: DicomInstance, base: DicomInstance) -> str:
    if inst.flavour in _ASSOCIATED:
        return _ASSOCIATED[inst.flavour]
    (w, h), (bw, bh) = inst.matrix, base.matrix
    same_shape = abs(w / max(h, 1) - bw / max(bh, 1)) <= 0.02 * bw / max(bh, 1)
    return "thumbnail" if same_shape else "label"


def _pick_series(path: Path, slides: list[DicomInstance]) -> str:
    """The series of the file given, or the only series in the folder."""
    if path.is_file():
        return slides[0].series_uid
    uids = sorted({i.series_uid for i in slides})
    if len(uids) > 1:
        raise SlideError(path, f"the folder holds {len(uids)} DICOM whole-slide series; give one file of the series to open")
    return uids[0]


def _not_a_slide(instances: list[DicomInstance | str]) -> str:
    from pydicom.uid import UID

    sop = str(instances[0]) if instances else "unknown"
    name = UID(sop).name if sop != "unknown" else ""
    named = f"{sop} ({name})" if name and name != sop else sop
    return f"is a DICOM file but not a whole-slide image (SOP class {named}; expected VL Whole Slide Microscopy Image Storage {WSI_SOP_CLASS})"
