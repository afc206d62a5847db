"""Write an Aperio-like SVS tile by tile, in bounded memory.

Page layout (what openslide's aperio driver expects): level 0 (tiled JPEG, ImageDescription
``Aperio Image Library ...|MPP = ...|AppMag = ...``), a stripped thumbnail, lower levels
(tiled, downsample 4, 16, ...), then stripped ``label`` and ``macro`` pages whose
ImageDescription second line starts with their name.

Level 0 comes from a ``render(x, y, w, h)`` callable, one tile at a time, in row-major
order. Each tile is also area-averaged into one strip buffer per lower level; a finished
strip is appended to a raw temporary file, which is streamed back as tiles when that
level's page is written. Memory is a few tile rows, whatever the slide size.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

APERIO_HEADER = "Aperio Image Library v12.0.16 (wsi-pipeline synthetic)"


def pyramid_downsamples(width: int, height: int, *, tile: int = 256, min_size: int = 256) -> list[int]:
    """Downsamples 1, 4, 16, ... while the level's longer side stays >= ``min_size``
    (each must divide ``tile`` so tiles average into whole pixels)."""
    out, ds = [1], 4
    while max(width, height) / ds >= min_size and tile % ds == 0:
        out.append(ds)
        ds *= 4
    return out


def aperio_description(width: int, height: int, *, tile: int, quality: int, properties: dict, level=None) -> str:
    """ImageDescription text; ``level=(w, h)`` for a reduced page."""
    if level is None:
        first = f"{width}x{height} [0,0 {width}x{height}] ({tile}x{tile}) JPEG/RGB Q={quality}"
    else:
        first = f"{width}x{height} -> {level[0]}x{level[1]} - "
    return APERIO_HEADER + "\r\n" + first + "".join(f"|{k} = {v}" for k, v in properties.items())


class _Accumulator:
    """Area-averaged copy of level 0 at ``ds``, written strip by strip to a raw file."""

    def __init__(self, folder: Path, ds: int, *, padded_width: int, tile: int) -> None:
        self.ds = ds
        self.width = padded_width // ds
        self.rows_per_strip = tile // ds
        self.path = folder / f"level_ds{ds}.raw"
        self._file = open(self.path, "wb")
        self._strip = np.zeros((self.rows_per_strip, self.width, 3), np.uint8)
        self.rows = 0

    def add(self, x: int, block: np.ndarray) -> None:
        """``block`` ``(tile/ds, tile/ds, 3)`` float32 for the tile starting at level-0 ``x``."""
        c = x // self.ds
        self._strip[:, c : c + block.shape[1]] = np.clip(block + 0.5, 0, 255).astype(np.uint8)

    def flush(self) -> None:
        self._file.write(self._strip.tobytes())
        self.rows += self.rows_per_strip

    def close(self) -> None:
        self._file.close()

    def read_rows(self, r0: int, n: int) -> np.ndarray:
        """Rows ``[r0, r0+n)`` as ``(n', width, 3)`` uint8 (fewer at the end)."""
        n = max(0, min(n, self.rows - r0))
        row_bytes = self.width * 3
        with open(self.path, "rb") as f:
            f.seek(r0 * row_bytes)
            buf = f.read(n * row_bytes)
        return np.frombuffer(buf, np.uint8).reshape(n, self.width, 3)


def _block_mean(img: np.ndarray, f: int) -> np.ndarray:
    h, w = img.shape[:2]
    return img.reshape(h // f, f, w // f, f, 3).mean(axis=(1, 3), dtype=np.float32)


def _level0_tiles(render, width, height, tile, accs: list[_Accumulator], progress) -> Iterator[np.ndarray]:
    nty, ntx = math.ceil(height / tile), math.ceil(width / tile)
    for ty in range(nty):
        for tx in range(ntx):
            img = render(tx * tile, ty * tile, tile, tile)
            block, prev = img.astype(np.float32), 1
            for acc in accs:
                block = _block_mean(block, acc.ds // prev)
                prev = acc.ds
                acc.add(tx * tile, block)
            if tx == ntx - 1:  # before the last yield: the consumer may stop pulling after it
                for acc in accs:
                    acc.flush()
            if progress is not None:
                progress(1)
            yield img


def _level_tiles(acc: _Accumulator, width: int, height: int, tile: int) -> Iterator[np.ndarray]:
    for r0 in range(0, height, tile):
        rows = acc.read_rows(r0, min(tile, height - r0))
        for c0 in range(0, width, tile):
            out = np.zeros((tile, tile, 3), np.uint8)
            part = rows[:, c0 : min(c0 + tile, width)]
            out[: part.shape[0], : part.shape[1]] = part
            yield out


def write_svs(
    path: str | Path,
    render: Callable[[int, int, int, int], np.ndarray],
    *,
    width: int,
    height: int,
    mpp: float,
    tile: int = 256,
    quality: int = 85,
    properties: dict | None = None,
    label: np.ndarray | None = None,
    macro: Callable[[np.ndarray], np.ndarray] | None = None,
    bigtiff: bool | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[tuple[int, int]]:
    """Write the SVS at ``path`` (atomically: temporary name, then rename).

    ``render(x, y, w, h)`` returns ``(h, w, 3)`` uint8 level-0 pixels; ``macro(thumbnail)``
    returns the macro picture. Returns the level dimensions ``[(w, h), ...]``.
    """
    path = Path(path)
    downsamples = pyramid_downsamples(width, height, tile=tile)
    props = {"AppMag": f"{round(10.0 / mpp):d}", "MPP": f"{mpp:.4f}", "StripeWidth": "2040"}
    props.update(properties or {})
    padded_w = math.ceil(width / tile) * tile
    if bigtiff is None:
        bigtiff = width * height > 1_500_000_000
    dims = [(math.ceil(width / d), math.ceil(height / d)) for d in downsamples]
    tmp_path = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    jpeg = {"compression": "jpeg", "compressionargs": {"level": quality}, "photometric": "rgb"}
    common = {"metadata": None, "software": False}
    try:
        with tempfile.TemporaryDirectory(dir=path.parent, prefix=".svs-levels-") as work:
            accs = [_Accumulator(Path(work), d, padded_width=padded_w, tile=tile) for d in downsamples[1:]]
            if not accs:  # tiny slide: keep a full-resolution copy for the thumbnail
                accs_thumb = [_Accumulator(Path(work), 1, padded_width=padded_w, tile=tile)]
            else:
                accs_thumb = []
            with tifffile.TiffWriter(tmp_path, bigtiff=bigtiff) as tif:
                tif.write(
                    _level0_tiles(render, width, height, tile, accs + accs_thumb, progress),
                    shape=(height, width, 3),
                    dtype=np.uint8,
                    tile=(tile, tile),
                    description=aperio_description(width, height, tile=tile, quality=quality, properties=props),
                    subfiletype=0,
                    **jpeg,
                    **common,
                )
                for acc in accs + accs_thumb:
                    acc.close()
                low = (accs or accs_thumb)[-1]
                lw, lh = dims[-1] if accs else (width, height)
                thumb = Image.fromarray(np.ascontiguousarray(low.read_rows(0, lh)[:, :lw]))
                thumb.thumbnail((1024, 768))
                thumb_arr = np.asarray(thumb)
                tif.write(
                    thumb_arr,
                    rowsperstrip=16,
                    description=aperio_description(
                        width, height, tile=tile, quality=quality, properties=props, level=thumb.size
                    ),
                    subfiletype=0,
                    **jpeg,
                    **common,
                )
                for acc, (lw, lh) in zip(accs, dims[1:]):
                    tif.write(
                        _level_tiles(acc, lw, lh, tile),
                        shape=(lh, lw, 3),
                        dtype=np.uint8,
                        tile=(tile, tile),
                        description=aperio_description(
                            width, height, tile=tile, quality=quality, properties=props, level=(lw, lh)
                        ),
                        subfiletype=0,
                        **jpeg,
                        **common,
                    )
                if label is not None:
                    tif.write(
                        label,
                        rowsperstrip=label.shape[0],
                        compression="lzw",
                        photometric="rgb",
                        subfiletype=1,
                        description=f"{APERIO_HEADER}\r\nlabel {label.shape[1]}x{label.shape[0]}",
                        **common,
                    )
                if macro is not None:
                    mac = macro(thumb_arr)
                    tif.write(
                        mac,
                        rowsperstrip=16,
                        subfiletype=9,
                        description=f"{APERIO_HEADER}\r\nmacro {mac.shape[1]}x{mac.shape[0]}",
                        **jpeg,
                        **common,
                    )
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()
    return dims
