"""Lazy dask pyramids: nothing read until computed, chunks on the tile grid, added levels."""

from __future__ import annotations

import pickle
import threading

import dask
import numpy as np
import pytest

from tiling import ArraySlide, open_slide
from tiling.pyramid import downsample2, pyramid_downsamples, slide_pyramid
from tiling.testing import texture_region, write_aperio_svs


class CountingSlide(ArraySlide):
    """An ArraySlide that counts reads and the threads they came from."""

    def __init__(self, image, **kw):
        super().__init__(image, **kw)
        self.reads = 0
        self.threads: set[int] = set()
        self._count_lock = threading.Lock()

    def _read_level(self, level, x, y, width, height):
        with self._count_lock:
            self.reads += 1
            self.threads.add(threading.get_ident())
        return super()._read_level(level, x, y, width, height)


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return texture_region(0, 0, 1300, 2250, 1)  # one file level


def test_downsample2_is_area_average():
    a = np.arange(5 * 3 * 3, dtype=np.uint8).reshape(5, 3, 3)
    out = downsample2(a)
    assert out.shape == (3, 2, 3)
    assert out[0, 0, 0] == np.floor(a[:2, :2, 0].mean() + 0.5)
    assert out[2, 1, 1] == a[4, 2, 1]  # odd corner: edge replicated


def test_nothing_read_until_computed(image):
    slide = CountingSlide(image, mpp=0.25, min_size=10**6, tile_size=256)
    levels = slide_pyramid(slide, min_size=600)
    assert slide.reads == 0
    assert [lvl.shape[:2] for lvl in levels] == [(1300, 2250), (650, 1125), (325, 563)]
    assert slide.reads == 0
    one = levels[0][:512, :512].compute()
    assert slide.reads == 1
    assert np.array_equal(one, image[:512, :512])


def test_chunks_on_native_tile_grid(image):
    slide = ArraySlide(image, mpp=0.25, min_size=10**6, tile_size=240)
    level0 = slide_pyramid(slide)[0]
    assert all(c % 240 == 0 for c in level0.chunks[0][:-1])
    assert all(c % 240 == 0 for c in level0.chunks[1][:-1])
    assert level0.chunks[2] == (3,)


def test_added_levels_equal_area_average(image):
    slide = CountingSlide(image, mpp=0.25, min_size=10**6, tile_size=256)
    levels = slide_pyramid(slide, min_size=600)
    with dask.config.set(scheduler="threads", num_workers=2):
        computed = [lvl.compute() for lvl in levels]
    expected = image
    for got in computed:
        assert got.dtype == np.uint8
        assert np.array_equal(got, expected)
        expected = downsample2(expected)
    n_chunks = np.prod(levels[0].numblocks)
    assert slide.reads == len(computed) * n_chunks  # each level recomputed from level 0 chunks
    assert len(slide.threads) >= 1
    assert max(levels[-1].shape[:2]) <= 600
    assert pyramid_downsamples(slide, levels) == [1.0, 2.0, 4.0]


def test_file_levels_then_added_levels(tmp_path):
    src = texture_region(0, 0, 1500, 4500, 1)
    path = write_aperio_svs(tmp_path / "p.svs", src, downsamples=(4,), quality=95)
    with open_slide(path) as slide:
        levels = slide_pyramid(slide, min_size=600)
        assert [lvl.shape[:2] for lvl in levels] == [(1500, 4500), (375, 1125), (188, 563)]
        assert pyramid_downsamples(slide, levels) == [1.0, 4.0, 8.0]
        assert np.array_equal(levels[1][:256, :512].compute(), slide.read_region((0, 0), (512, 256), level=1))
        # the added level averages the file's last level
        assert np.array_equal(levels[2].compute(), downsample2(levels[1].compute()))
        # pickled (as for distributed workers) the array reopens the file by path
        clone = pickle.loads(pickle.dumps(levels[1]))
        assert np.array_equal(clone[100:300, 200:400].compute(), levels[1][100:300, 200:400].compute())
