"""``open_slide``: pick the backend that can read a file."""

from __future__ import annotations

from pathlib import Path

from tiling.errors import SlideError
from tiling.slide import Slide


def open_slide(path: str | Path, *, mpp: float | tuple[float, float] | None = None) -> Slide:
    """Open a slide file; ``mpp`` overrides (or supplies) the microns per pixel."""
    path = Path(path)
    if not path.exists():
        raise SlideError(path, "no such file")
    from tiling._openslide import OpenSlideSlide

    return OpenSlideSlide(path, mpp=mpp)
