"""Test helpers: write small (or, tile by tile, very large) Aperio-like SVS files.

Used by the tests and the tiling benchmark until (and alongside) the synthetic-slide
generator. The file layout is what openslide's Aperio reader expects: level 0 (tiled),
a stripped thumbnail, reduced levels (tiled), then label and macro images. The
ImageDescription carries fake patient-like fields (``Filename``, ``User``) and the label
says ``PATIENT: DOE^JANE`` so tests can prove neither leaks into any output.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from tiling.pyramid import downsample2

FAKE_PHI = "DOE^JANE"
RegionFn = Callable[[int, int, int, int, int], np.ndarray]  # (y, x, h, w, downsample) -> (h, w, 3)


def texture_region(y: int, x: int, h: int, w: int, downsample: int) -> np.ndarray:
    """A deterministic pink/purple H&E-like texture at any position and downsample.

    Pure function of level-0 coordinates: cheap enough to make 60k x 40k slides.
    """
    ys = (np.arange(y, y + h, dtype=np.float32) * downsample)[:, None]
    xs = (np.arange(x, x + w, dtype=np.float32) * downsample)[None, :]
    a = np.sin(xs * 0.031) * np.cos(ys * 0.027) + 0.5 * np.sin((xs + ys) * 0.0061)
    b = np.cos(xs * 0.013 - ys * 0.017)
    img = np.empty((h, w, 3), np.uint8)
    img[..., 0] = np.clip(200 + 40 * a, 0, 255)
    img[..., 1] = np.clip(140 + 50 * b * a, 0, 255)
    img[..., 2] = np.clip(190 + 30 * b, 0, 255)
    return img


def _array_region(image: np.ndarray) -> RegionFn:
    cache = {1: image}

    def region(y: int, x: int, h: int, w: int, downsample: int) -> np.ndarray:
        if downsample not in cache:
            level, ds = image, 1
            while ds < downsample:
                level, ds = downsample2(level), ds * 2
            cache[downsample] = level
        return cache[downsample][y : y + h, x : x + w]

    return region


def _tiles(region: RegionFn, width: int, height: int, tile: int, downsample: int) -> Iterator[np.ndarray]:
    for ty in range(0, height, tile):
        for tx in range(0, width, tile):
            h, w = min(tile, height - ty), min(tile, width - tx)
            out = np.full((tile, tile, 3), 255, np.uint8)
            out[:h, :w] = region(ty, tx, h, w, downsample)
            yield out


def write_aperio_svs(
    path: str | Path,
    image: np.ndarray | RegionFn,
    *,
    width: int | None = None,
    height: int | None = None,
    mpp: float | None = 0.25,
    magnification: int = 40,
    tile: int = 256,
    downsamples: tuple[int, ...] = (4, 16),
    quality: int = 90,
    associated: bool = True,
) -> Path:
    """Write an Aperio-like pyramidal SVS; ``image`` is ``(H, W, 3)`` uint8 or a region function.

    ``downsamples`` lists the reduced levels kept (those whose size stays >= one tile).
    """
    import tifffile

    path = Path(path)
    if isinstance(image, np.ndarray):
        height, width = image.shape[:2]
        region = _array_region(image)
    else:
        if width is None or height is None:
            raise ValueError("give width and height with a region function")
        region = image
    mpp_text = f"|MPP = {mpp}" if mpp else ""
    head = f"Aperio Image Library v12.0.15 \r\n{width}x{height} [0,0 {width}x{height}] ({tile}x{tile}) JPEG/RGB Q={quality}"
    desc = f"{head}|AppMag = {magnification}{mpp_text}|Filename = {FAKE_PHI}_S23-0001|User = {FAKE_PHI}"
    jpeg = {"compression": "jpeg", "compressionargs": {"level": quality}, "photometric": "rgb", "metadata": None}
    with tifffile.TiffWriter(path, bigtiff=width * height * 3 > 2**31) as tw:
        tw.write(
            _tiles(region, width, height, tile, 1),
            shape=(height, width, 3),
            dtype=np.uint8,
            tile=(tile, tile),
            description=desc,
            **jpeg,
        )
        thumb_ds = 2 ** max(0, (max(width, height) - 1) // 512).bit_length()
        thumb = _downsampled(region, width, height, thumb_ds)
        tw.write(thumb, description=f"Aperio Image Library v12.0.15 \r\n{width}x{height} -> {thumb.shape[1]}x{thumb.shape[0]}", **jpeg)
        for ds in downsamples:
            lw, lh = width // ds, height // ds
            if min(lw, lh) < tile:
                break
            tw.write(
                _tiles(region, lw, lh, tile, ds),
                shape=(lh, lw, 3),
                dtype=np.uint8,
                tile=(tile, tile),
                description=f"{head}|AppMag = {magnification}{mpp_text}",
                **jpeg,
            )
        if associated:
            label = _fake_label()
            tw.write(label, description=f"Aperio Image Library v12.0.15\r\nlabel {label.shape[1]}x{label.shape[0]}", subfiletype=1, compression="lzw", photometric="rgb", metadata=None)
            macro = np.full((200, 600, 3), 230, np.uint8)
            macro[:, :200] = label[:200, :200]
            tw.write(macro, description=f"Aperio Image Library v12.0.15\r\nmacro {macro.shape[1]}x{macro.shape[0]}", subfiletype=9, **jpeg)
    return path


def _downsampled(region: RegionFn, width: int, height: int, ds: int) -> np.ndarray:
    return np.ascontiguousarray(region(0, 0, max(1, height // ds), max(1, width // ds), ds))


def _fake_label() -> np.ndarray:
    from PIL import Image, ImageDraw

    im = Image.new("RGB", (300, 300), "white")
    ImageDraw.Draw(im).text((10, 140), f"PATIENT: {FAKE_PHI}", fill="black")
    return np.asarray(im)
