"""Write small DICOM-WSI instances with pydicom (for tests, demos and bug reports).

Each call writes one instance (one pyramid level, or one label/overview image) the way
different writers do: tiled full with or without ``DimensionOrganizationType``, tiled
sparse with per-frame ``PlanePositionSlideSequence``, with or without ``ImageType``,
JPEG baseline, JPEG 2000 or uncompressed frames. Nothing here is used at run time.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

WSI_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.77.1.6"  # VL Whole Slide Microscopy Image Storage
CT_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.2"  # CT Image Storage

_SYNTAX = {
    "none": "1.2.840.10008.1.2.1",  # explicit VR little endian
    "jpeg": "1.2.840.10008.1.2.4.50",  # JPEG baseline
    "jpeg2000": "1.2.840.10008.1.2.4.91",  # JPEG 2000 (lossy allowed)
}


@dataclass(frozen=True)
class SeriesIds:
    """UIDs shared by every instance of one slide (study, series, frame of reference)."""

    study: str
    series: str
    frame_of_reference: str

    @classmethod
    def new(cls) -> "SeriesIds":
        from pydicom.uid import generate_uid

        return cls(generate_uid(), generate_uid(), generate_uid())


def write_wsi_instance(
    path: str | Path,
    image: np.ndarray,
    *,
    ids: SeriesIds,
    mpp: tuple[float, float] = (0.25, 0.25),
    tile: tuple[int, int] = (256, 256),
    codec: str = "jpeg",
    organization: str | None = None,
    image_type: tuple[str, ...] | None = ("ORIGINAL", "PRIMARY", "VOLUME", "NONE"),
    photometric: str | None = None,
    pixel_spacing: bool = True,
    long_uid: bool = False,
    sop_class: str = WSI_SOP_CLASS,
    drop_frames: tuple[int, ...] = (),
) -> Path:
    """Write ``image`` ``(height, width, 3)`` uint8 as one DICOM instance at ``path``.

    ``organization``: ``None`` (tiled full implied: no ``DimensionOrganizationType``, no
    per-frame groups), ``"TILED_FULL"`` or ``"TILED_SPARSE"`` (per-frame positions, frames
    listed in reverse order, and ``drop_frames`` left out as empty glass). ``mpp`` is
    ``(x, y)``; ``pixel_spacing=False`` leaves ``PixelSpacing`` out so readers must use
    ``ImagedVolumeWidth``. ``tile`` is ``(width, height)``; a tile equal to the image size
    writes a single frame (as labels and overviews are written). ``long_uid`` makes the
    SOP instance and series UIDs 65 characters, one more than the standard allows.
    """
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence
    from pydicom.uid import generate_uid

    height, width = image.shape[:2]
    tw, th = tile
    positions = [(x, y) for y in range(0, height, th) for x in range(0, width, tw)]
    if organization == "TILED_SPARSE":
        positions = [p for i, p in enumerate(positions) if i not in set(drop_frames)][::-1]
    frames = [_frame(image, x, y, tw, th) for x, y in positions]
    photometric = photometric or ("YBR_FULL_422" if codec == "jpeg" else "RGB")
    if codec == "jpeg2000" and photometric == "RGB":
        photometric = "YBR_ICT"

    sop_uid = generate_uid()
    if long_uid:
        sop_uid = (sop_uid + "1" * 65)[:65]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the long UID, when asked for
        ds = _base_dataset(sop_class, sop_uid, codec=codec, ids=ids)
        if long_uid:
            ds.SeriesInstanceUID = (ids.series + "1" * 65)[:65]
    if image_type is not None:
        ds.ImageType = list(image_type)
    ds.Rows, ds.Columns = th, tw
    ds.NumberOfFrames = len(frames)
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = photometric
    ds.PlanarConfiguration = 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.TotalPixelMatrixColumns, ds.TotalPixelMatrixRows = width, height
    ds.TotalPixelMatrixFocalPlanes, ds.NumberOfOpticalPaths = 1, 1
    ds.ImagedVolumeWidth = round(width * mpp[0] / 1000, 6)
    ds.ImagedVolumeHeight = round(height * mpp[1] / 1000, 6)
    ds.ImagedVolumeDepth = 0.001
    origin = Dataset()
    origin.XOffsetInSlideCoordinateSystem, origin.YOffsetInSlideCoordinateSystem = 20.0, 40.0
    ds.TotalPixelMatrixOriginSequence = Sequence([origin])
    ds.OpticalPathSequence = Sequence([_optical_path()])
    shared = Dataset()
    if pixel_spacing:
        measures = Dataset()
        measures.PixelSpacing = [round(mpp[1] / 1000, 9), round(mpp[0] / 1000, 9)]  # (row, column) in mm
        measures.SliceThickness = 0.001
        shared.PixelMeasuresSequence = Sequence([measures])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    if organization is not None:
        ds.DimensionOrganizationType = organization
    if organization == "TILED_SPARSE":
        ds.PerFrameFunctionalGroupsSequence = Sequence([_plane_position(x, y, mpp) for x, y in positions])
    _set_pixels(ds, frames, codec=codec, photometric=photometric)
    path = Path(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the long UID, when asked for
        ds.save_as(path, enforce_file_format=True)
    return path


def _base_dataset(sop_class: str, sop_uid: str, *, codec: str, ids: SeriesIds):
    from pydicom.dataset import Dataset, FileMetaDataset

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = _SYNTAX[codec]
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, sop_uid
    ds.StudyInstanceUID, ds.SeriesInstanceUID = ids.study, ids.series
    ds.FrameOfReferenceUID = ids.frame_of_reference
    ds.Modality = "SM" if sop_class == WSI_SOP_CLASS else "CT"
    ds.PatientName, ds.PatientID = "DOE^JANE", "PID-0001"  # fake PHI: must never reach outputs
    ds.ContainerIdentifier = "S-0001"
    ds.SeriesNumber, ds.InstanceNumber = 1, 1
    return ds


def write_not_a_slide(path: str | Path) -> Path:
    """A tiny CT image (SOP class CT Image Storage) with real pixel data."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CT_SOP_CLASS
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = _SYNTAX["none"]
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = CT_SOP_CLASS, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality, ds.PatientName = "CT", "DOE^JANE"
    ds.Rows, ds.Columns, ds.SamplesPerPixel = 16, 16, 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = np.arange(256, dtype=np.uint16).tobytes()
    path = Path(path)
    ds.save_as(path, enforce_file_format=True)
    return path


def _frame(image: np.ndarray, x: int, y: int, tw: int, th: int) -> np.ndarray:
    """One ``(th, tw, 3)`` frame; the part outside the image is white, as scanners pad it."""
    out = np.full((th, tw, 3), 255, np.uint8)
    part = image[y : y + th, x : x + tw]
    out[: part.shape[0], : part.shape[1]] = part
    return out


def _optical_path():
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    illumination = Dataset()
    illumination.CodeValue, illumination.CodingSchemeDesignator = "111744", "DCM"
    illumination.CodeMeaning = "Brightfield illumination"
    color = Dataset()
    color.CodeValue, color.CodingSchemeDesignator, color.CodeMeaning = "414298005", "SCT", "Full Spectrum"
    path = Dataset()
    path.OpticalPathIdentifier = "1"
    path.IlluminationTypeCodeSequence = Sequence([illumination])
    path.IlluminationColorCodeSequence = Sequence([color])
    return path


def _plane_position(x: int, y: int, mpp: tuple[float, float]):
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    pos = Dataset()
    pos.ColumnPositionInTotalImagePixelMatrix = x + 1  # 1-based
    pos.RowPositionInTotalImagePixelMatrix = y + 1
    pos.XOffsetInSlideCoordinateSystem = round(20.0 + x * mpp[0] / 1000, 6)
    pos.YOffsetInSlideCoordinateSystem = round(40.0 + y * mpp[1] / 1000, 6)
    pos.ZOffsetInSlideCoordinateSystem = 0.0
    item = Dataset()
    item.PlanePositionSlideSequence = Sequence([pos])
    return item


def _set_pixels(ds, frames: list[np.ndarray], *, codec: str, photometric: str) -> None:
    if codec == "none":
        ds.PixelData = b"".join(f.tobytes() for f in frames)
        return
    from pydicom.encaps import encapsulate

    encode = _encode_jpeg if codec == "jpeg" else _encode_jpeg2000
    ds.PixelData = encapsulate([encode(f, photometric=photometric) for f in frames])
    ds["PixelData"].VR = "OB"
    ds.LossyImageCompression = "01"


def _encode_jpeg(frame: np.ndarray, *, photometric: str) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="JPEG", quality=95, subsampling="4:2:2" if photometric == "YBR_FULL_422" else "4:4:4")
    return buf.getvalue()


def _encode_jpeg2000(frame: np.ndarray, *, photometric: str) -> bytes:
    import imagecodecs

    return imagecodecs.jpeg2k_encode(frame, level=90, codecformat="j2k", mct=photometric == "YBR_ICT")


EXAMPLES = ("implied-full", "sparse", "pyramid", "uncompressed", "jpeg2000")


def write_example(folder: str | Path, kind: str, image: np.ndarray, *, mpp: tuple[float, float] = (0.5, 0.5)) -> Path:
    """Write ``image`` ``(h, w, 3)`` as one of :data:`EXAMPLES` in ``folder``; return what to open.

    * ``implied-full``: one file, no ``ImageType``, no ``DimensionOrganizationType``, JPEG
      frames with ``PhotometricInterpretation`` RGB, 65-character UIDs (as the file in issue 21);
    * ``sparse``: one file, ``TILED_SPARSE``, frames in reverse order, the second tile left out;
    * ``pyramid``: a folder with three levels (JPEG), a LABEL image and a one-frame thumbnail
      without ``ImageType``; returns the folder;
    * ``uncompressed`` / ``jpeg2000``: one file, ``TILED_FULL``.
    """
    from tiling.pyramid import downsample2

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    ids = SeriesIds.new()
    if kind == "implied-full":
        return write_wsi_instance(folder / "slide.dcm", image, ids=ids, mpp=mpp, tile=(200, 200), codec="jpeg",
                                  organization=None, image_type=None, photometric="RGB", long_uid=True)
    if kind == "sparse":
        return write_wsi_instance(folder / "slide.dcm", image, ids=ids, mpp=mpp, tile=(128, 128), codec="jpeg",
                                  organization="TILED_SPARSE", drop_frames=(1,))
    if kind in ("uncompressed", "jpeg2000"):
        codec = "none" if kind == "uncompressed" else "jpeg2000"
        return write_wsi_instance(folder / "slide.dcm", image, ids=ids, mpp=mpp, tile=(128, 128), codec=codec,
                                  organization="TILED_FULL")
    if kind != "pyramid":
        raise ValueError(f"kind must be one of {EXAMPLES}, got {kind!r}")
    level = image
    for i in range(3):
        flavour = ("ORIGINAL", "PRIMARY", "VOLUME", "NONE") if i == 0 else ("DERIVED", "PRIMARY", "VOLUME", "RESAMPLED")
        write_wsi_instance(folder / f"level-{i}.dcm", level, ids=ids, mpp=(mpp[0] * 2**i, mpp[1] * 2**i), tile=(128, 128),
                           codec="jpeg", organization="TILED_FULL", image_type=flavour)
        level = downsample2(level)
    label = np.zeros((96, 160, 3), np.uint8)
    label[:, :, 2] = 255  # pure blue: must never show up in a level
    write_wsi_instance(folder / "label.dcm", label, ids=ids, mpp=(50.0, 50.0), tile=(160, 96), codec="jpeg",
                       image_type=("ORIGINAL", "PRIMARY", "LABEL", "NONE"))
    thumb = downsample2(downsample2(downsample2(image)))
    write_wsi_instance(folder / "thumbnail.dcm", thumb, ids=ids, mpp=(mpp[0] * 8, mpp[1] * 8),
                       tile=(thumb.shape[1], thumb.shape[0]), codec="jpeg", image_type=None)
    return folder
