"""The tile grid: where a detector looks, and which tile owns which object.

Pure geometry: no I/O, no torch. Three frames appear here:

* *working pixels*: the slide resampled to the detector's resolution ``working_mpp``
  (``(x, y)``, origin at the slide's level-0 origin);
* *level-0 pixels*: the slide as openslide reports it; ``level0 = working * scale`` with
  ``scale = working_mpp / slide_mpp``;
* *tile pixels*: ``(0, 0)`` is the top-left of a tile's halo box (what a detector sees).

Layout. Cores are laid edge to edge with stride ``core = tile_size - 2 * halo``; each tile
is its core grown by ``halo`` on every side, so every tile is exactly ``tile_size`` square
(windows reaching past the slide are read as white glass). The last core in a row or a
column is cut at the slide edge; for ownership, cores on the slide edge are extended to
infinity outward, so every point of the plane has exactly one owner.

Responsibility rule. An object belongs to the tile whose core contains its centroid
(half-open boxes ``[x0, x1) x [y0, y1)``). Cores partition the plane, so nothing is lost or
doubled, provided the owner saw the object whole.

The rule enforced by :func:`check_settings` (``max_object`` = largest object extent, in
working pixels, along x or y):

1. ``halo >= max_object``: an object whose centroid lies in a core extends less than
   ``max_object`` beyond that core (the centroid lies inside the object's bounding box), so
   a halo that wide shows it whole, without touching the tile border (pixel objects: the
   first column of the object is at least ``core_x0 - max_object + 1``, the tile starts at
   ``core_x0 - halo``).
2. ``tile_size - 2 * halo > max_object`` (DESIGN.md's ``max_object + 2*halo < tile``): the
   core is larger than the largest object. Not needed for correctness given (1), but below
   it most of every tile is halo, each pixel is read and predicted many times over, and it
   almost always means the tile was meant to be bigger. Refused rather than run slowly.

Rule (2) alone is not sufficient: with a halo smaller than the object, an object centred
near a core edge is cut by the owner's tile border and no tile sees it whole.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from tiling.errors import InputError

Box = tuple[int, int, int, int]  # (x0, y0, x1, y1), half-open


@dataclass(frozen=True)
class Tile:
    """One tile of the grid.

    index : (col, row) in the grid.
    core : (x0, y0, x1, y1) working pixels this tile is responsible for (cut at the slide).
    halo_box : (x0, y0, x1, y1) working pixels the detector sees (``tile_size`` square;
        may reach past the slide edge).
    level0_box : (x0, y0, x1, y1) of ``halo_box`` in level-0 pixels (floats).
    scale : level-0 pixels per working pixel.
    edges : which core sides lie on the slide edge (left, top, right, bottom); those sides
        are treated as infinitely far for ownership.
    """

    index: tuple[int, int]
    core: Box
    halo_box: Box
    level0_box: tuple[float, float, float, float]
    scale: float
    edges: tuple[bool, bool, bool, bool]

    @property
    def origin(self) -> tuple[int, int]:
        """(x, y) of the tile's top-left (halo included) in working pixels."""
        return self.halo_box[0], self.halo_box[1]

    @property
    def size(self) -> tuple[int, int]:
        return self.halo_box[2] - self.halo_box[0], self.halo_box[3] - self.halo_box[1]

    def owns(self, xy: np.ndarray) -> np.ndarray:
        """Boolean (N,) : which ``(N, 2)`` points in *tile pixels* fall in this tile's core."""
        pts = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
        x = pts[:, 0] + self.halo_box[0]
        y = pts[:, 1] + self.halo_box[1]
        left, top, right, bottom = self.edges
        x0, y0, x1, y1 = self.core
        ok = np.ones(len(pts), dtype=bool)
        if not left:
            ok &= x >= x0
        if not right:
            ok &= x < x1
        if not top:
            ok &= y >= y0
        if not bottom:
            ok &= y < y1
        return ok

    def to_dict(self) -> dict:
        return {
            "index": list(self.index),
            "core": list(self.core),
            "halo_box": list(self.halo_box),
            "level0_box": list(self.level0_box),
            "scale": self.scale,
            "edges": list(self.edges),
        }

    @classmethod
    def from_dict(cls, d: dict) -> "Tile":
        return cls(
            index=tuple(d["index"]),
            core=tuple(d["core"]),
            halo_box=tuple(d["halo_box"]),
            level0_box=tuple(float(v) for v in d["level0_box"]),
            scale=float(d["scale"]),
            edges=tuple(bool(v) for v in d["edges"]),
        )


def check_settings(*, tile_size: int, halo: int, max_object: int) -> None:
    """Raise :class:`InputError` unless every object can be seen whole by its owner tile.

    See the module docstring for the two conditions and why.
    """
    if tile_size <= 0 or halo < 0 or max_object <= 0:
        raise InputError(None, f"tile grid: tile_size ({tile_size}) and max_object ({max_object}) must be "
                               f"positive and halo ({halo}) non-negative")
    if halo < max_object:
        raise InputError(None, f"tile grid: halo {halo} px is smaller than the largest object ({max_object} px); "
                               "an object centred near a core edge would be cut: use halo >= max_object")
    if tile_size - 2 * halo <= max_object:
        raise InputError(None, f"tile grid: core {tile_size - 2 * halo} px (tile {tile_size} - 2*halo {halo}) "
                               f"is not larger than the largest object ({max_object} px): "
                               "need max_object + 2*halo < tile_size")


def working_size(level0_size: tuple[int, int], *, slide_mpp: float, working_mpp: float) -> tuple[int, int]:
    """``(width, height)`` of the slide at ``working_mpp`` (rounded up)."""
    scale = working_mpp / slide_mpp
    return math.ceil(level0_size[0] / scale - 1e-9), math.ceil(level0_size[1] / scale - 1e-9)


def tile_grid(
    level0_size: tuple[int, int],
    *,
    slide_mpp: float,
    working_mpp: float,
    tile_size: int,
    halo: int,
    max_object: int,
    tissue_mask: np.ndarray | None = None,
    mask_downsample: float | None = None,
    min_tissue_fraction: float = 0.0,
) -> list[Tile]:
    """Tiles covering the slide (or its tissue) at ``working_mpp``.

    level0_size : (width, height) of level 0.
    slide_mpp : level-0 µm per pixel; working_mpp : the detector's µm per pixel.
    tile_size, halo, max_object : working pixels, checked by :func:`check_settings`.
    tissue_mask : optional (h, w) bool mask of the whole slide; ``mask_downsample`` is
        level-0 pixels per mask pixel. A tile is kept when the tissue fraction of its core
        is > 0 (``min_tissue_fraction == 0``) or >= ``min_tissue_fraction``.

    Returns tiles in row-major order.
    """
    check_settings(tile_size=tile_size, halo=halo, max_object=max_object)
    if slide_mpp <= 0 or working_mpp <= 0:
        raise InputError(None, f"tile grid: mpp must be positive (slide {slide_mpp}, working {working_mpp})")
    if tissue_mask is not None and (mask_downsample is None or mask_downsample <= 0):
        raise InputError(None, "tile grid: a tissue mask needs its positive mask_downsample")
    scale = working_mpp / slide_mpp
    width, height = working_size(level0_size, slide_mpp=slide_mpp, working_mpp=working_mpp)
    core = tile_size - 2 * halo
    nx, ny = max(1, math.ceil(width / core)), max(1, math.ceil(height / core))
    integral = None if tissue_mask is None else _integral(np.asarray(tissue_mask, dtype=bool))
    tiles = []
    for j in range(ny):
        for i in range(nx):
            cx0, cy0 = i * core, j * core
            cbox = (cx0, cy0, min(cx0 + core, width), min(cy0 + core, height))
            if integral is not None:
                frac = _tissue_fraction(integral, cbox, scale / mask_downsample)
                if (frac <= 0) if min_tissue_fraction <= 0 else (frac < min_tissue_fraction):
                    continue
            hbox = (cx0 - halo, cy0 - halo, cx0 - halo + tile_size, cy0 - halo + tile_size)
            tiles.append(Tile(
                index=(i, j),
                core=cbox,
                halo_box=hbox,
                level0_box=tuple(float(v * scale) for v in hbox),
                scale=float(scale),
                edges=(i == 0, j == 0, i == nx - 1, j == ny - 1),
            ))
    return tiles


def _integral(mask: np.ndarray) -> np.ndarray:
    """(h+1, w+1) summed-area table of a bool mask."""
    out = np.zeros((mask.shape[0] + 1, mask.shape[1] + 1), dtype=np.int64)
    out[1:, 1:] = mask.cumsum(0).cumsum(1)
    return out


def _tissue_fraction(integral: np.ndarray, box: Box, factor: float) -> float:
    """Fraction of mask pixels touched by working-pixel ``box``; ``factor`` = mask px per working px."""
    h, w = integral.shape[0] - 1, integral.shape[1] - 1
    x0 = min(max(int(math.floor(box[0] * factor)), 0), w)
    y0 = min(max(int(math.floor(box[1] * factor)), 0), h)
    x1 = min(max(int(math.ceil(box[2] * factor)), x0), w)
    y1 = min(max(int(math.ceil(box[3] * factor)), y0), h)
    n = (x1 - x0) * (y1 - y0)
    if n == 0:
        return 0.0
    s = integral[y1, x1] - integral[y0, x1] - integral[y1, x0] + integral[y0, x0]
    return float(s) / n
