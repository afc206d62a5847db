"""Lazy dask pyramids of a :class:`~tiling.slide.Slide`.

``slide_pyramid(slide)`` returns one ``(H, W, 3)`` uint8 dask array per level. The file's
own levels are read through the slide's per-thread handles, one chunk per task, with chunk
edges on the native tile grid; nothing is read until a chunk is computed. Below the file's
last level, levels are made by 2x area averaging until the long side is <= ``min_size``.
"""

from __future__ import annotations

import math
import uuid

import numpy as np

from tiling.slide import Slide

DEFAULT_MIN_SIZE = 2048


def downsample2(image: np.ndarray) -> np.ndarray:
    """2x area average of an ``(H, W, C)`` uint8 image -> ``(ceil(H/2), ceil(W/2), C)``.

    Odd edges are padded by replication; rounding is half-up in integers, identical to
    ``floor(mean + 0.5)``.
    """
    h, w = image.shape[:2]
    if h % 2 or w % 2:
        image = np.pad(image, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    acc = image[0::2, 0::2].astype(np.uint16)
    acc += image[1::2, 0::2]
    acc += image[0::2, 1::2]
    acc += image[1::2, 1::2]
    acc += 2
    acc >>= 2
    return acc.astype(np.uint8)


def downsample2_planar(image: np.ndarray) -> np.ndarray:
    """:func:`downsample2` for a planar ``(C, H, W)`` uint8 image (same arithmetic, faster)."""
    h, w = image.shape[1:]
    if h % 2 or w % 2:
        image = np.pad(image, ((0, 0), (0, h % 2), (0, w % 2)), mode="edge")
    acc = image[:, 0::2, 0::2].astype(np.uint16)
    acc += image[:, 1::2, 0::2]
    acc += image[:, 0::2, 1::2]
    acc += image[:, 1::2, 1::2]
    acc += 2
    acc >>= 2
    return acc.astype(np.uint8)


def level_chunk(slide: Slide, level: int, *, target: int = 512) -> tuple[int, int]:
    """Chunk ``(rows, cols)`` for ``level``: the smallest multiple of the native tile >= ``target``."""
    tw, th = slide.level_tile_size(level)
    return (th * max(1, math.ceil(target / th)), tw * max(1, math.ceil(target / tw)))


class _LevelReader:
    """Array-like view of one slide level for ``dask.array.from_array`` (reads on indexing)."""

    def __init__(self, slide: Slide, level: int) -> None:
        self.slide = slide
        self.level = level
        w, h = slide.level_dimensions[level]
        self.shape = (h, w, 3)
        self.dtype = np.dtype(np.uint8)
        self.ndim = 3

    def __getitem__(self, index: tuple[slice, slice, slice]) -> np.ndarray:
        rows, cols, chans = index
        y0, y1, _ = rows.indices(self.shape[0])
        x0, x1, _ = cols.indices(self.shape[1])
        window = self.slide._read_padded(self.level, x0, y0, x1 - x0, y1 - y0)
        return window[:, :, chans]

    def __reduce__(self):
        """Pickle as "reopen the file" so distributed workers get their own handles."""
        from tiling._array import ArraySlide

        if isinstance(self.slide, ArraySlide):
            return (_LevelReader, (self.slide, self.level))
        return (_reopen_reader, (str(self.slide.path), self.slide._mpp_override, self.level))


def _reopen_reader(path: str, mpp, level: int) -> _LevelReader:
    from tiling.open import open_slide

    return _LevelReader(open_slide(path, mpp=mpp), level)


def level_array(slide: Slide, level: int, *, target_chunk: int = 512):
    """Lazy ``(H, W, 3)`` uint8 dask array of one file level, chunks on the tile grid."""
    import dask.array as da

    reader = _LevelReader(slide, level)
    ch, cw = level_chunk(slide, level, target=target_chunk)
    name = f"slide-level{level}-{uuid.uuid4().hex}"
    return da.from_array(
        reader, chunks=(ch, cw, 3), name=name, lock=False, asarray=False, meta=np.empty((0, 0, 0), np.uint8)
    )


def downsample_array(arr):
    """Lazy 2x area average of an ``(H, W, 3)`` dask array; chunk size is kept."""
    ch, cw = arr.chunks[0][0], arr.chunks[1][0]
    ch2, cw2 = ch + ch % 2, cw + cw % 2  # even chunks so no block has an odd interior edge
    arr = arr.rechunk((2 * ch2, 2 * cw2, 3))
    out_chunks = tuple(tuple((n + 1) // 2 for n in c) for c in arr.chunks[:2]) + ((3,),)
    return arr.map_blocks(downsample2, chunks=out_chunks, dtype=np.uint8, meta=np.empty((0, 0, 0), np.uint8))


def slide_pyramid(slide: Slide, *, min_size: int = DEFAULT_MIN_SIZE, target_chunk: int = 512) -> list:
    """One lazy ``(H, W, 3)`` uint8 dask array per level, level 0 first.

    The file's levels come first (at the file's downsamples); further 2x levels are added
    by area averaging until the longest side is <= ``min_size``.
    """
    levels = [level_array(slide, i, target_chunk=target_chunk) for i in range(slide.level_count)]
    while max(levels[-1].shape[:2]) > min_size:
        levels.append(downsample_array(levels[-1]))
    return levels


def pyramid_downsamples(slide: Slide, levels: list) -> list[float]:
    """Downsample of each array of :func:`slide_pyramid` relative to level 0."""
    file_ds = list(slide.level_downsamples)
    out = file_ds[: len(levels)]
    while len(out) < len(levels):
        out.append(out[-1] * 2.0)
    return out
