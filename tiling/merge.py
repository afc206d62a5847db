"""Merge per-tile results into one slide-wide set, each object exactly once.

No torch and no detector types here: inputs are arrays of shapely geometries in *tile
pixels* (``(0, 0)`` = top-left of the tile's halo box), one array per :class:`~tiling.grid.Tile`.
An object is kept by the tile whose core contains its centroid (see :mod:`tiling.grid`);
kept geometries are moved to level-0 slide pixels. Callers that carry more columns
(scores, labels, measurements) use the returned ``(tile, row)`` indices to gather them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import shapely

from tiling.grid import Tile


def centroids(geometries: np.ndarray) -> np.ndarray:
    """(N, 2) centroids ``(x, y)`` of an (N,) array of shapely geometries."""
    geoms = np.asarray(geometries, dtype=object).reshape(-1)
    if len(geoms) == 0:
        return np.empty((0, 2))
    return shapely.get_coordinates(shapely.centroid(geoms)).reshape(-1, 2)


def keep_mask(tile: Tile, geometries: np.ndarray) -> np.ndarray:
    """(N,) bool: the objects ``tile`` is responsible for (centroid in its core)."""
    return tile.owns(centroids(geometries))


def tile_to_level0(tile: Tile, geometries: np.ndarray) -> np.ndarray:
    """Geometries in tile pixels -> level-0 slide pixels: ``(p + origin) * scale``."""
    geoms = np.asarray(geometries, dtype=object).reshape(-1)
    if len(geoms) == 0:
        return geoms
    shift = np.asarray(tile.origin, dtype=np.float64)
    return shapely.transform(geoms, lambda c: (c + shift) * tile.scale)


@dataclass(frozen=True)
class Merged:
    """Objects kept from all tiles.

    geometry : (M,) shapely geometries in level-0 pixels.
    tile : (M,) int, position in the ``tiles`` sequence each object came from.
    row : (M,) int, row of the object in that tile's input array.
    """

    geometry: np.ndarray
    tile: np.ndarray
    row: np.ndarray

    def __len__(self) -> int:
        return len(self.geometry)


def merge_tiles(tiles: Sequence[Tile], geometries: Sequence[np.ndarray]) -> Merged:
    """Keep each object once (responsibility rule) and move it to level-0 pixels.

    tiles : the tiles the detector ran on; geometries : one (N_i,) array per tile, in that
    tile's pixels. Objects whose centroid lies outside their tile's core are dropped (the
    neighbour owning that point reports them).
    """
    if len(tiles) != len(geometries):
        raise ValueError(f"{len(tiles)} tiles but {len(geometries)} geometry arrays")
    out_geoms, out_tile, out_row = [], [], []
    for t, (tile, geoms) in enumerate(zip(tiles, geometries)):
        geoms = np.asarray(geoms, dtype=object).reshape(-1)
        if len(geoms) == 0:
            continue
        rows = np.flatnonzero(keep_mask(tile, geoms))
        if len(rows) == 0:
            continue
        out_geoms.append(tile_to_level0(tile, geoms[rows]))
        out_tile.append(np.full(len(rows), t, dtype=np.int64))
        out_row.append(rows.astype(np.int64))
    if not out_geoms:
        return Merged(np.empty(0, object), np.empty(0, np.int64), np.empty(0, np.int64))
    return Merged(np.concatenate(out_geoms), np.concatenate(out_tile), np.concatenate(out_row))
