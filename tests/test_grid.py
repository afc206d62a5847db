"""tiling.grid: layout, tissue selection, ownership partition, refusal of unsafe settings."""

from __future__ import annotations

import numpy as np
import pytest

from tiling.errors import InputError
from tiling.grid import Tile, check_settings, tile_grid, working_size


def test_cores_partition_the_slide_and_tiles_have_full_size() -> None:
    tiles = tile_grid((1000, 700), slide_mpp=0.25, working_mpp=0.5, tile_size=128, halo=20, max_object=16)
    w, h = working_size((1000, 700), slide_mpp=0.25, working_mpp=0.5)
    assert (w, h) == (500, 350)
    cover = np.zeros((h, w), int)
    for t in tiles:
        x0, y0, x1, y1 = t.core
        cover[y0:y1, x0:x1] += 1
        assert t.size == (128, 128)
        assert t.halo_box[0] == x0 - 20 and t.halo_box[1] == y0 - 20
        assert t.scale == 2.0
        assert t.level0_box == tuple(float(v * 2) for v in t.halo_box)
    assert (cover == 1).all()
    # the last core in each row/column is cut at the slide edge
    assert max(t.core[2] for t in tiles) == w and max(t.core[3] for t in tiles) == h


def test_every_point_has_exactly_one_owner_including_outside_edges() -> None:
    tiles = tile_grid((300, 200), slide_mpp=1.0, working_mpp=1.0, tile_size=100, halo=20, max_object=10)
    rng = np.random.default_rng(0)
    pts = np.column_stack([rng.uniform(-5, 305, 2000), rng.uniform(-5, 205, 2000)])
    pts = np.vstack([pts, [[0, 0], [60, 60], [59.999, 60], [300, 200], [120, 0]]])
    owners = np.zeros(len(pts), int)
    for t in tiles:
        owners += t.owns(pts - np.array(t.origin))
    assert (owners == 1).all()


def test_tissue_mask_selects_tiles() -> None:
    mask = np.zeros((50, 80), bool)  # downsample 10 -> covers 800 x 500 level-0
    mask[3:15, 3:15] = True
    all_tiles = tile_grid((800, 500), slide_mpp=1.0, working_mpp=1.0, tile_size=140, halo=20, max_object=20)
    kept = tile_grid((800, 500), slide_mpp=1.0, working_mpp=1.0, tile_size=140, halo=20, max_object=20,
                     tissue_mask=mask, mask_downsample=10.0)
    assert 0 < len(kept) < len(all_tiles)
    # tissue spans level-0 30..150 -> cores [0,100) and [100,200) in x and y
    assert sorted(t.index for t in kept) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    strict = tile_grid((800, 500), slide_mpp=1.0, working_mpp=1.0, tile_size=140, halo=20, max_object=20,
                       tissue_mask=mask, mask_downsample=10.0, min_tissue_fraction=0.4)
    assert [t.index for t in strict] == [(0, 0)]  # 7x7/100 = 0.49; neighbours 0.35, 0.35, 0.25


def test_tile_round_trips_to_dict() -> None:
    t = tile_grid((300, 300), slide_mpp=0.5, working_mpp=1.0, tile_size=100, halo=20, max_object=10)[3]
    assert Tile.from_dict(t.to_dict()) == t


@pytest.mark.parametrize(("tile", "halo", "max_object", "why"), [
    (256, 16, 32, "halo 16 px is smaller"),        # halo < object: objects near core edge cut
    (100, 40, 40, "core 20 px"),                    # core not larger than the object
    (80, 40, 10, "core 0 px"),                      # no core at all
    (0, 0, 10, "must be"),
])
def test_refuses_settings_where_objects_cannot_be_seen_whole(tile, halo, max_object, why) -> None:
    with pytest.raises(InputError, match=why):
        check_settings(tile_size=tile, halo=halo, max_object=max_object)
    with pytest.raises(InputError):
        tile_grid((1000, 1000), slide_mpp=0.5, working_mpp=0.5, tile_size=tile, halo=halo, max_object=max_object)


def test_accepts_the_boundary_case() -> None:
    check_settings(tile_size=100, halo=30, max_object=30)  # core 40 > 30, halo == max_object


def test_mask_without_downsample_is_refused() -> None:
    with pytest.raises(InputError, match="mask_downsample"):
        tile_grid((100, 100), slide_mpp=1, working_mpp=1, tile_size=64, halo=8, max_object=8,
                  tissue_mask=np.ones((10, 10), bool))
