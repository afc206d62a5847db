"""De-identify a slide file: drop label and macro images, blank patient properties.

Supported: Aperio SVS (classic TIFF and BigTIFF). The copy keeps every pyramid level and
the thumbnail byte for byte; it changes only

* the IFD chain: label and macro directories are unlinked, and their pixel bytes and
  descriptions are overwritten with zeros (so no trace stays in the file);
* every remaining ImageDescription: ``|Key = value`` fields that can identify a patient,
  a case, an operator, a scanner or a time (Filename, Barcode, Date, Time, User,
  ScanScope ID, ...) are removed;
* free-text TIFF tags (DocumentName, PageName, DateTime, Artist, HostComputer) are zeroed.

The copy is written under a temporary name next to the output, checked by reopening it
with openslide, then renamed: a failed run leaves nothing behind.
"""

from __future__ import annotations

import os
import shutil
import struct
from dataclasses import dataclass
from pathlib import Path

from tiling.errors import InputError

PHI_KEY_WORDS = (
    "filename", "barcode", "patient", "user", "date", "time", "scanscope", "dsr", "operator",
    "accession", "specimen", "case", "label", "slide", "rack", "imageid", "title", "name",
)  # fmt: skip
_TEXT_TAGS = (269, 285, 306, 315, 316)  # DocumentName, PageName, DateTime, Artist, HostComputer
_ASSOCIATED_REMOVED = ("label", "macro")


@dataclass(frozen=True)
class AnonymizeReport:
    """What :func:`anonymize_slide` did."""

    source: Path
    output: Path
    removed_images: tuple[str, ...]
    removed_properties: tuple[str, ...]
    kept_pages: int = 0


def is_phi_key(key: str) -> bool:
    """True for ImageDescription keys that may identify a patient, case, person or time."""
    k = key.strip().lower().replace(" ", "").replace("_", "")
    return any(word in k for word in PHI_KEY_WORDS)


def scrub_aperio_description(text: str) -> tuple[str, list[str]]:
    """Remove PHI ``|Key = value`` fields from an Aperio ImageDescription.

    Returns the new text and the removed keys. The header line and the size line stay.
    """
    parts = text.split("|")
    kept, removed = [parts[0]], []
    for part in parts[1:]:
        key = part.split("=", 1)[0]
        if "=" in part and is_phi_key(key):
            removed.append(key.strip())
        else:
            kept.append(part)
    return "|".join(kept), removed


def _associated_name(page) -> str | None:
    """``label``/``macro`` as openslide names them (second description line), else None."""
    if page.is_tiled:
        return None
    lines = (page.description or "").splitlines()
    if len(lines) > 1 and lines[1].strip():
        name = lines[1].split()[0].lower()
        if name in _ASSOCIATED_REMOVED:
            return name
    sub = int(page.tags["NewSubfileType"].value) if "NewSubfileType" in page.tags else 0
    return {1: "label", 9: "macro"}.get(sub)


def _plan(path: Path):
    import tifffile

    try:
        tif = tifffile.TiffFile(path)
    except Exception as exc:  # noqa: BLE001 - any parse failure is the user's file
        raise InputError(path, f"not a TIFF-based slide ({type(exc).__name__})") from None
    with tif:
        if tif.is_ndpi:
            raise InputError(path, "anonymising Hamamatsu NDPI is not supported yet (only Aperio SVS)")
        desc0 = tif.pages[0].description or ""
        if not desc0.startswith("Aperio"):
            raise InputError(path, "anonymising this format is not supported yet (only Aperio SVS)")
        fmt = tif.tiff
        pages = []
        for page in tif.pages:
            desc = page.tags.get("ImageDescription")
            text_tags = [page.tags[c] for c in _TEXT_TAGS if c in page.tags and c != 270]
            pages.append(
                {
                    "offset": page.offset,
                    "name": _associated_name(page),
                    "desc": None if desc is None else (desc.offset, desc.valueoffset, desc.count, desc.value),
                    "data": list(zip(page.dataoffsets, page.databytecounts)),
                    "text": [(t.valueoffset, t.count) for t in text_tags],
                }
            )
        return fmt, pages


def _ifd_next_pointer(fh, fmt, ifd_offset: int) -> int:
    fh.seek(ifd_offset)
    (ntags,) = struct.unpack(fmt.tagnoformat, fh.read(fmt.tagnosize))
    return ifd_offset + fmt.tagnosize + ntags * fmt.tagsize


def _zero(fh, offset: int, count: int) -> None:
    fh.seek(offset)
    while count > 0:
        n = min(count, 1 << 20)
        fh.write(b"\0" * n)
        count -= n


def _patch(path: Path, fmt, pages) -> tuple[list[str], list[str]]:
    removed_images, removed_keys = [], []
    keep = [p for p in pages if p["name"] is None]
    with open(path, "r+b") as fh:
        for p in pages:
            if p["name"] is not None:
                removed_images.append(p["name"])
                for off, n in p["data"]:
                    _zero(fh, off, n)
                if p["desc"] is not None and p["desc"][2] > fmt.tagoffsetthreshold:
                    _zero(fh, p["desc"][1], p["desc"][2])
                continue
            if p["desc"] is not None:
                tag_offset, value_offset, count, value = p["desc"]
                text, keys = scrub_aperio_description(value)
                removed_keys.extend(k for k in keys if k not in removed_keys)
                raw = text.encode("ascii", "replace") + b"\0"
                if len(raw) < count and count > fmt.tagoffsetthreshold:
                    _zero(fh, value_offset, count)
                    fh.seek(value_offset)
                    fh.write(raw)
                    fh.seek(tag_offset + 4)  # code (2) + type (2), then the count
                    fh.write(struct.pack(fmt.offsetformat, len(raw)))
            for value_offset, count in p["text"]:
                if count > fmt.tagoffsetthreshold:
                    _zero(fh, value_offset, count)
        # relink the chain through the kept directories only
        for here, nxt in zip(keep, keep[1:] + [None]):
            fh.seek(_ifd_next_pointer(fh, fmt, here["offset"]))
            fh.write(struct.pack(fmt.offsetformat, 0 if nxt is None else nxt["offset"]))
        if pages[0]["name"] is not None:  # pragma: no cover - Aperio level 0 is never associated
            fh.seek(4 if fmt.offsetsize == 4 else 8)
            fh.write(struct.pack(fmt.offsetformat, keep[0]["offset"]))
    return removed_images, removed_keys


def _verify(path: Path, source: Path) -> None:
    import openslide

    try:
        with openslide.OpenSlide(str(path)) as osr:
            left = set(osr.associated_images) & set(_ASSOCIATED_REMOVED)
            phi = [k for k in osr.properties if k.startswith("aperio.") and is_phi_key(k[len("aperio.") :])]
    except openslide.OpenSlideError as exc:
        raise InputError(source, f"the anonymised copy does not open ({exc}); nothing written") from None
    if left or phi:  # pragma: no cover - guards the patching above
        raise InputError(source, f"could not remove {sorted(left) + phi}; nothing written")


def anonymize_slide(source: str | Path, output: str | Path, *, overwrite: bool = False) -> AnonymizeReport:
    """Write a de-identified copy of ``source`` to ``output`` (see module docstring)."""
    source, output = Path(source), Path(output)
    if not source.exists():
        raise InputError(source, "no such file")
    if not source.is_file():
        raise InputError(source, "is a folder, not a slide file (MRXS/DICOM anonymising is not supported yet)")
    if source.suffix.lower() == ".mrxs":
        raise InputError(source, "anonymising MIRAX (.mrxs) is not supported yet (only Aperio SVS)")
    if output.exists() and (output.resolve() == source.resolve()):
        raise InputError(output, "the output must not be the input slide")
    if output.exists() and not overwrite:
        raise InputError(output, "already exists (use --overwrite to replace it)")
    if not output.parent.is_dir():
        raise InputError(output.parent, "output folder does not exist")
    fmt, pages = _plan(source)
    tmp = output.with_name(f".{output.name}.{os.getpid()}.anon-tmp")
    try:
        shutil.copyfile(source, tmp)
        images, keys = _patch(tmp, fmt, pages)
        _verify(tmp, source)
        os.replace(tmp, output)
    finally:
        if tmp.exists():
            tmp.unlink()
    return AnonymizeReport(
        source=source,
        output=output,
        removed_images=tuple(images),
        removed_properties=tuple(keys),
        kept_pages=sum(p["name"] is None for p in pages),
    )
