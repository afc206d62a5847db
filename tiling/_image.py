"""Plain images (PNG, JPEG, BMP, ...) read with Pillow as one-level slides.

The whole image is decoded into memory, so this is for fields of view, not slides.
Such files record no usable mpp: give it with ``open_slide(path, mpp=...)`` / ``--mpp``.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from tiling._array import ArraySlide
from tiling.errors import SlideError

MAX_PIXELS = 20_000 * 20_000


def open_image(path: Path, *, mpp=None) -> ArraySlide:
    """Decode ``path`` with Pillow into an :class:`ArraySlide` (``(H, W, 3)`` level 0)."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                fmt = (im.format or "image").lower()
                if im.width * im.height > MAX_PIXELS:
                    raise SlideError(path, f"{im.width}x{im.height} is too large for a plain {fmt} image")
                im.load()
                rgb = im.convert("RGBA" if "A" in im.getbands() else "RGB")
                image = np.asarray(rgb)
    except SlideError:
        raise
    except (OSError, ValueError, Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise SlideError(path, f"cannot decode the image ({str(exc).splitlines()[0] if str(exc) else exc})") from None
    slide = ArraySlide(image, mpp=mpp, path=path)
    slide.vendor = fmt
    return slide
