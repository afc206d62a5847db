"""A small DICOM-WSI frame reader: plain file I/O to find frames, imagecodecs to decode them.

Used for the instances wsidicom does not accept (no ``ImageType``, one file of a series,
odd but legal attribute sets). It indexes the frames of one instance once (the item
headers of encapsulated pixel data, or fixed-size native frames), then reads windows by
decoding only the frames they touch. Tiled-full frames are in row-major order; tiled-sparse
frames sit where their ``PlanePositionSlideSequence`` says, and tiles without a frame are
empty glass (white). Little-endian transfer syntaxes only.
"""

from __future__ import annotations

import math
import struct
import threading
from collections import OrderedDict

import numpy as np

from tiling._dicom_series import DicomInstance
from tiling.errors import SlideError, first_line

_NATIVE = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1"}
_CODECS = {
    "1.2.840.10008.1.2.4.50": "jpeg8",  # JPEG baseline
    "1.2.840.10008.1.2.4.51": "jpeg8",  # JPEG extended
    "1.2.840.10008.1.2.4.57": "ljpeg",  # JPEG lossless
    "1.2.840.10008.1.2.4.70": "ljpeg",  # JPEG lossless, first-order prediction
    "1.2.840.10008.1.2.4.80": "jpegls",
    "1.2.840.10008.1.2.4.81": "jpegls",
    "1.2.840.10008.1.2.4.90": "jpeg2k",  # JPEG 2000 lossless
    "1.2.840.10008.1.2.4.91": "jpeg2k",  # JPEG 2000
    "1.2.840.10008.1.2.4.201": "jpeg2k",  # HTJ2K lossless
    "1.2.840.10008.1.2.4.202": "jpeg2k",  # HTJ2K lossless RPCL
    "1.2.840.10008.1.2.4.203": "jpeg2k",  # HTJ2K
    "1.2.840.10008.1.2.4.110": "jpegxl",
    "1.2.840.10008.1.2.4.111": "jpegxl",
    "1.2.840.10008.1.2.4.112": "jpegxl",
}
_ITEM, _END = b"\xfe\xff\x00\xe0", b"\xfe\xff\xdd\xe0"
_CACHE_FRAMES = 64


class FrameReader:
    """Windows of one instance. Thread-safe: file reads hold a lock, decoding does not."""

    def __init__(self, inst: DicomInstance) -> None:
        self.inst = inst
        if inst.pixel_offset < 0:
            raise SlideError(inst.path, "the DICOM instance has no pixel data")
        if inst.bits_allocated != 8:
            raise SlideError(inst.path, f"DICOM frames with {inst.bits_allocated}-bit samples are not supported (8-bit only)")
        if inst.transfer_syntax not in _NATIVE and inst.transfer_syntax not in _CODECS:
            raise SlideError(inst.path, f"DICOM transfer syntax {inst.transfer_syntax} is not supported")
        self._fh = open(inst.path, "rb")  # noqa: SIM115 - closed in close()
        self._lock = threading.Lock()
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        try:
            self._spans = self._index_frames()
        except (OSError, struct.error, ValueError) as exc:
            self.close()
            raise SlideError(inst.path, f"cannot index the DICOM frames ({first_line(exc)})") from None
        tw, th = inst.frame
        self._grid = (math.ceil(inst.matrix[0] / tw), math.ceil(inst.matrix[1] / th))
        self._where = self._frame_map() if inst.sparse else None

    # -- index ------------------------------------------------------------------------
    def _index_frames(self) -> list[list[tuple[int, int]]]:
        """``[(offset, length), ...]`` of the bytes of each frame."""
        fh, inst = self._fh, self.inst
        fh.seek(inst.pixel_offset + 4)
        if inst.explicit_vr:
            fh.read(4)  # VR (OB/OW) and two reserved bytes
        (length,) = struct.unpack("<I", fh.read(4))
        start = fh.tell()
        if inst.transfer_syntax in _NATIVE:
            w, h = inst.frame
            size = w * h * inst.samples * (inst.bits_allocated // 8)
            if length < size * inst.frame_count:
                raise ValueError(f"pixel data holds {length} bytes, {inst.frame_count} frames need {size * inst.frame_count}")
            return [[(start + i * size, size)] for i in range(inst.frame_count)]
        offsets, fragments = self._fragments()
        return _group_fragments(offsets, fragments, inst.frame_count, self._ends_frame)

    def _fragments(self) -> tuple[list[int], list[tuple[int, int, int]]]:
        """Basic offset table and ``(item position, data offset, length)`` of each fragment."""
        fh = self._fh
        table: list[int] = []
        fragments: list[tuple[int, int, int]] = []
        first = True
        while True:
            pos = fh.tell()
            head = fh.read(8)
            if len(head) < 8 or head[:4] == _END:
                break
            if head[:4] != _ITEM:
                raise ValueError(f"unexpected tag {head[:4].hex()} in encapsulated pixel data")
            (length,) = struct.unpack("<I", head[4:])
            if first:
                table = list(struct.unpack(f"<{length // 4}I", fh.read(length)))
                first = False
                continue
            fragments.append((pos, pos + 8, length))
            fh.seek(length, 1)
        return table, fragments

    def _ends_frame(self, offset: int, length: int) -> bool:
        """A fragment that ends with an end-of-image marker (JPEG EOI, JPEG 2000 EOC: FFD9)."""
        self._fh.seek(offset + max(0, length - 3))
        return b"\xff\xd9" in self._fh.read(3)

    def _frame_map(self) -> dict[tuple[int, int], int]:
        tw, th = self.inst.frame
        where: dict[tuple[int, int], int] = {}
        for i, (x, y) in enumerate(self.inst.positions):
            if x < 0:
                continue  # a later focal plane or optical path
            if x % tw or y % th:
                raise SlideError(self.inst.path, f"TILED_SPARSE frame {i + 1} at ({x}, {y}) is off the {tw} x {th} tile grid")
            where[(x // tw, y // th)] = i
        return where

    # -- reading ------------------------------------------------------------------------
    def frame_index(self, col: int, row: int) -> int | None:
        """The frame at tile ``(col, row)``; ``None`` for empty glass."""
        if self._where is not None:
            return self._where.get((col, row))
        i = row * self._grid[0] + col
        return i if i < len(self._spans) else None

    def read(self, x: int, y: int, width: int, height: int) -> np.ndarray:
        """``(height, width, 3)`` uint8 RGB window at ``(x, y)`` of this instance's matrix."""
        tw, th = self.inst.frame
        out = np.full((height, width, 3), 255, np.uint8)
        for row in range(y // th, (y + height - 1) // th + 1):
            for col in range(x // tw, (x + width - 1) // tw + 1):
                i = self.frame_index(col, row)
                if i is None:
                    continue
                tile = self.frame(i)
                x0, y0 = max(x, col * tw), max(y, row * th)
                x1, y1 = min(x + width, (col + 1) * tw), min(y + height, (row + 1) * th)
                out[y0 - y : y1 - y, x0 - x : x1 - x] = tile[y0 - row * th : y1 - row * th, x0 - col * tw : x1 - col * tw]
        return out

    def frame(self, index: int) -> np.ndarray:
        """Frame ``index`` (0-based) decoded to ``(rows, columns, 3)`` uint8 RGB."""
        with self._lock:
            cached = self._cache.get(index)
            if cached is not None:
                self._cache.move_to_end(index)
                return cached
            data = b"".join(self._read_span(off, n) for off, n in self._spans[index])
        try:
            tile = _to_rgb(_decode(data, self.inst), self.inst)
        except Exception as exc:  # noqa: BLE001 - codecs raise many types on corrupt data
            raise SlideError(self.inst.path, f"cannot decode DICOM frame {index + 1} ({first_line(exc)})") from None
        with self._lock:
            self._cache[index] = tile
            while len(self._cache) > _CACHE_FRAMES:
                self._cache.popitem(last=False)
        return tile

    def _read_span(self, offset: int, length: int) -> bytes:
        self._fh.seek(offset)
        data = self._fh.read(length)
        if len(data) < length:
            raise SlideError(self.inst.path, "the DICOM pixel data is truncated")
        return data

    def close(self) -> None:
        self._fh.close()


def _group_fragments(table: list[int], fragments: list[tuple[int, int, int]], frames: int, ends_frame) -> list[list[tuple[int, int]]]:
    """Fragments per frame: one each, or by the basic offset table, or up to each end marker."""
    spans = [(off, n) for _, off, n in fragments]
    if len(fragments) == frames:
        return [[s] for s in spans]
    if frames == 1:
        return [spans]
    if len(table) == frames and fragments:
        base = fragments[0][0]
        starts = [base + t for t in table] + [math.inf]
        return [[(off, n) for pos, off, n in fragments if starts[i] <= pos < starts[i + 1]] for i in range(frames)]
    grouped: list[list[tuple[int, int]]] = [[]]
    for off, n in spans:
        grouped[-1].append((off, n))
        if ends_frame(off, n):
            grouped.append([])
    grouped = [g for g in grouped if g]
    if len(grouped) != frames:
        raise ValueError(f"{len(fragments)} fragments do not split into {frames} frames")
    return grouped


def _decode(data: bytes, inst: DicomInstance) -> np.ndarray:
    """Frame bytes -> ``(rows, columns[, samples])`` array."""
    w, h = inst.frame
    if inst.transfer_syntax in _NATIVE:
        arr = np.frombuffer(data, np.uint8)
        if inst.samples == 1:
            return arr.reshape(h, w)
        if inst.planar == 1:
            return arr.reshape(inst.samples, h, w).transpose(1, 2, 0)
        return arr.reshape(h, w, inst.samples)
    import imagecodecs

    codec = _CODECS[inst.transfer_syntax]
    if codec == "ljpeg":
        try:
            return imagecodecs.ljpeg_decode(data)
        except Exception:  # noqa: BLE001 - libjpeg-turbo also reads lossless JPEG
            return imagecodecs.jpeg8_decode(data)
    return getattr(imagecodecs, f"{codec}_decode")(data)


def _to_rgb(arr: np.ndarray, inst: DicomInstance) -> np.ndarray:
    """Decoded frame -> ``(rows, columns, 3)`` uint8 RGB (grey repeated, YBR_FULL converted)."""
    arr = arr.astype(np.uint8, copy=False)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim == 2:
        if inst.photometric == "MONOCHROME1":
            arr = 255 - arr
        return np.repeat(arr[..., None], 3, axis=2)
    arr = arr[..., :3]
    if inst.transfer_syntax in _NATIVE and inst.photometric == "YBR_FULL":
        arr = _ybr_full_to_rgb(arr)
    return np.ascontiguousarray(arr)


def _ybr_full_to_rgb(ybr: np.ndarray) -> np.ndarray:
    """ITU-R BT.601 full-range YCbCr (DICOM YBR_FULL) to RGB; ``(h, w, 3)`` uint8 both."""
    y = ybr[..., 0].astype(np.float32)
    cb = ybr[..., 1].astype(np.float32) - 128.0
    cr = ybr[..., 2].astype(np.float32) - 128.0
    rgb = np.stack([y + 1.402 * cr, y - 0.344136 * cb - 0.714136 * cr, y + 1.772 * cb], axis=-1)
    return np.clip(rgb + 0.5, 0, 255).astype(np.uint8)
