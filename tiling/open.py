"""``open_slide``: pick the backend that can read a file, or say clearly why none can.

Order: a folder, or a file with the DICOM magic, is a DICOM-WSI series (tiling._dicom:
wsidicom or its own frame reader; openslide only if both refuse a file); other files go to
openslide when openslide recognises them (except OME-TIFF, whose SubIFD pyramid and physical
size openslide ignores), then tifffile for other TIFFs, and Pillow for plain images
(PNG, JPEG, ...). Every opened slide is probed by decoding its last tile at
level 0 and at the last level, so a truncated file fails here with one clear line.
"""

from __future__ import annotations

from pathlib import Path

from tiling.errors import SlideError
from tiling.slide import Slide

_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


def open_slide(path: str | Path, *, mpp: float | tuple[float, float] | None = None) -> Slide:
    """Open a slide file (or DICOM-WSI folder); ``mpp`` overrides (or supplies) the µm per pixel.

    Raises :class:`tiling.errors.SlideError` (an ``InputError``) naming the file and the problem.
    """
    path = Path(path)
    if mpp is not None:
        values = mpp if isinstance(mpp, tuple) else (mpp, mpp)
        if not all(float(v) > 0 for v in values):
            raise SlideError(path, f"--mpp must be positive, got {mpp}")
    if not path.exists():
        raise SlideError(path, "no such file or directory")
    if path.is_dir():
        return _open_dicom_folder(path, mpp=mpp)
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError as exc:
        raise SlideError(path, f"cannot read the file ({exc.strerror or exc})") from None
    if not head:
        raise SlideError(path, "the file is empty")
    slide = _open_file(path, head, mpp=mpp)
    try:
        probe(slide)
    except SlideError as exc:
        slide.close()
        raise SlideError(path, f"the file is truncated or corrupt ({exc.problem})") from None
    return slide


def probe(slide: Slide) -> None:
    """Decode the first tile, and the last tile of level 0 and of the last level."""
    for level in sorted({0, slide.level_count - 1}):
        w, h = slide.level_dimensions[level]
        tw, th = slide.level_tile_size(level)
        tw, th = min(tw, w), min(th, h)
        slide._read_level(level, w - tw, h - th, tw, th)
    slide._read_level(0, 0, 0, min(16, slide.dimensions[0]), min(16, slide.dimensions[1]))


def _open_dicom_folder(path: Path, *, mpp) -> Slide:
    from tiling._dicom import DicomSlide, dicom_files

    if not dicom_files(path):
        raise SlideError(path, "is a directory, not a slide file (and holds no DICOM-WSI series)")
    slide = DicomSlide(path, mpp=mpp)
    try:
        probe(slide)
    except SlideError as exc:
        slide.close()
        raise SlideError(path, f"the DICOM series is truncated or corrupt ({exc.problem})") from None
    return slide


def _open_file(path: Path, head: bytes, *, mpp) -> Slide:
    import openslide

    is_tiff = head[:4] in _TIFF_MAGIC
    is_dicom = head[128:132] == b"DICM"
    if is_dicom:
        return _open_dicom_file(path, mpp=mpp)
    try:
        fmt = openslide.OpenSlide.detect_format(str(path))
    except (openslide.OpenSlideError, OSError):
        fmt = None
    first_error: SlideError | None = None
    if fmt is not None and not (fmt == "generic-tiff" and _is_ome_tiff(path)):
        from tiling._openslide import OpenSlideSlide

        try:
            slide = OpenSlideSlide(path, mpp=mpp)
            probe(slide)
            return slide
        except SlideError as exc:
            first_error = exc
            if not (is_tiff or is_dicom):
                raise
    if is_tiff:
        from tiling._tifffile import TiffSlide

        try:
            return TiffSlide(path, mpp=mpp)
        except SlideError:
            if first_error is not None:
                raise first_error from None
            raise
    if first_error is not None:
        raise first_error
    if _pillow_can_open(path):
        from tiling._image import open_image

        return open_image(path, mpp=mpp)
    raise SlideError(path, "not a slide or image format this tool can read (openslide formats, TIFF, DICOM-WSI, PNG/JPEG)")


def _open_dicom_file(path: Path, *, mpp) -> Slide:
    """Our DICOM reader first (it knows label/overview from levels); openslide if it refuses."""
    import openslide

    from tiling._dicom import DicomSlide
    from tiling._dicom_series import NotASlideError

    try:
        return DicomSlide(path, mpp=mpp)
    except NotASlideError:
        raise
    except SlideError as exc:
        first_error = exc
    try:
        if openslide.OpenSlide.detect_format(str(path)) == "dicom":
            from tiling._openslide import OpenSlideSlide

            slide = OpenSlideSlide(path, mpp=mpp)
            probe(slide)
            return slide
    except (openslide.OpenSlideError, OSError, SlideError):
        pass
    raise first_error


def _is_ome_tiff(path: Path) -> bool:
    import tifffile

    from tiling._tifffile import _quiet_tifffile

    try:
        with _quiet_tifffile(), tifffile.TiffFile(str(path)) as tif:
            return bool(tif.is_ome)
    except Exception:  # noqa: BLE001 - any tifffile failure means "not OME"
        return False


def _pillow_can_open(path: Path) -> bool:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return im.format is not None
    except (UnidentifiedImageError, OSError, ValueError):
        return False
