"""Pixels on disk: opening slides, units, lazy pyramids, OME-Zarr, tile grid, merge.

No torch and no GeoJSON here.
"""

from tiling._array import ArraySlide
from tiling.errors import InputError, MissingMppError, SlideError
from tiling.open import open_slide
from tiling.slide import Slide, SlideInfo

__all__ = ["ArraySlide", "InputError", "MissingMppError", "Slide", "SlideError", "SlideInfo", "open_slide"]
