"""tiling.merge: a tiled run of a trivial detector equals the untiled run, object for object."""

from __future__ import annotations

import numpy as np
import pytest
import shapely

from detectors.tissue.vectorize import labels_to_polygons
from tiling.grid import tile_grid
from tiling.merge import keep_mask, merge_tiles, tile_to_level0


def blob_labels(width: int, height: int, *, n: int, max_size: int, seed: int) -> np.ndarray:
    """(H, W) int labels: random non-overlapping blobs (irregular, up to ``max_size`` across),
    some forced onto borders, corners and the slide edges."""
    rng = np.random.default_rng(seed)
    lab = np.zeros((height, width), np.int32)
    forced = [(0, 0), (width - 1, 0), (0, height - 1), (width - 1, height - 1), (width // 2, 0), (0, height // 2)]
    k = 0
    for i in range(n * 20):
        cx, cy = forced[i] if i < len(forced) else (rng.integers(0, width), rng.integers(0, height))
        r = rng.integers(2, max_size // 2)
        yy, xx = np.ogrid[-r : r + 1, -r : r + 1]
        ax, ay = rng.uniform(0.5, 1.0, 2)
        blob = (xx / ax) ** 2 + (yy / ay) ** 2 <= r * r
        blob &= rng.random(blob.shape) > 0.15  # ragged, sometimes several parts
        y0, x0 = cy - r, cx - r
        sy0, sx0 = max(0, -y0), max(0, -x0)
        ys, xs = slice(max(y0, 0), min(y0 + 2 * r + 1, height)), slice(max(x0, 0), min(x0 + 2 * r + 1, width))
        piece = blob[sy0 : sy0 + ys.stop - ys.start, sx0 : sx0 + xs.stop - xs.start]
        region = lab[ys, xs]
        grown = np.pad(region > 0, 1)  # keep a one-pixel gap to other blobs
        near = grown[:-2, 1:-1] | grown[2:, 1:-1] | grown[1:-1, :-2] | grown[1:-1, 2:] | (region > 0)
        if (near & piece).any() or not piece.any():
            continue
        k += 1
        region[piece] = k
        if k >= n:
            break
    return lab


def detect(window: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Trivial detector: each label fully inside the window (not touching its border) -> its
    polygon(s) in window pixels. Returns (geometries, label ids)."""
    h, w = window.shape
    border = np.unique(np.concatenate([window[0], window[-1], window[:, 0], window[:, -1]]))
    ids = np.setdiff1d(np.unique(window[window > 0]), border)
    polys = labels_to_polygons(window, ids)
    geoms = [shapely.MultiPolygon(polys[i]) if len(polys[i]) > 1 else polys[i][0] for i in ids]
    return np.array(geoms, dtype=object), ids


def read_window(lab: np.ndarray, box) -> np.ndarray:
    """Labels in ``box`` (x0, y0, x1, y1), zero (glass) outside the image."""
    x0, y0, x1, y1 = box
    out = np.zeros((y1 - y0, x1 - x0), lab.dtype)
    sx0, sy0 = max(x0, 0), max(y0, 0)
    sx1, sy1 = min(x1, lab.shape[1]), min(y1, lab.shape[0])
    if sx1 > sx0 and sy1 > sy0:
        out[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = lab[sy0:sy1, sx0:sx1]
    return out


@pytest.mark.parametrize(("seed", "tile", "halo", "max_size"), [(0, 64, 16, 15), (1, 50, 12, 12), (2, 96, 20, 19)])
def test_tiled_equals_untiled(seed, tile, halo, max_size) -> None:
    width, height = 301, 233  # not a multiple of any core: cut cores at the slide edge
    lab = blob_labels(width, height, n=150, max_size=max_size, seed=seed)
    ids_all = np.unique(lab[lab > 0])
    assert len(ids_all) > 60
    untiled, untiled_ids = detect(np.pad(lab, 1))  # padded: objects on the slide edge are seen whole
    untiled = shapely.transform(untiled, lambda c: c - 1)
    assert set(untiled_ids) == set(ids_all)

    tiles = tile_grid((width, height), slide_mpp=1.0, working_mpp=1.0, tile_size=tile, halo=halo, max_object=max_size)
    geoms, ids = [], []
    for t in tiles:
        g, i = detect(read_window(lab, t.halo_box))
        geoms.append(g)
        ids.append(i)
    merged = merge_tiles(tiles, geoms)
    merged_ids = np.array([ids[t][r] for t, r in zip(merged.tile, merged.row)])

    assert len(merged_ids) == len(set(merged_ids)), "an object was kept by two tiles"
    assert set(merged_ids) == set(ids_all), "an object was lost"
    by_id = dict(zip(untiled_ids, untiled))
    for g, i in zip(merged.geometry, merged_ids):
        assert shapely.equals_exact(shapely.normalize(g), shapely.normalize(by_id[i]), tolerance=1e-9)


def test_scale_and_shift_to_level0() -> None:
    tiles = tile_grid((400, 400), slide_mpp=0.25, working_mpp=1.0, tile_size=60, halo=10, max_object=8)
    t = next(t for t in tiles if t.index == (1, 1))  # core [40, 80), origin (30, 30), scale 4
    inside = shapely.box(12, 12, 16, 16)  # centroid (14, 14) in tile -> (44, 44) working: owned
    halo_only = shapely.box(2, 2, 6, 6)  # centroid (4, 4) -> (34, 34): the neighbour's
    keep = keep_mask(t, np.array([inside, halo_only], dtype=object))
    assert keep.tolist() == [True, False]
    moved = tile_to_level0(t, np.array([inside], dtype=object))[0]
    assert moved.bounds == (168.0, 168.0, 184.0, 184.0)


def test_merge_checks_lengths_and_handles_empty() -> None:
    tiles = tile_grid((100, 100), slide_mpp=1, working_mpp=1, tile_size=64, halo=8, max_object=8)
    with pytest.raises(ValueError):
        merge_tiles(tiles, [])
    assert len(merge_tiles(tiles, [np.empty(0, object)] * len(tiles))) == 0
