"""open_slide: backends, metadata, reading every level, per-thread handles, PHI-free info."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
import tifffile
from PIL import Image

from tiling import MissingMppError, open_slide
from tiling.pyramid import downsample2
from tiling.testing import FAKE_PHI, texture_region, write_aperio_svs


@pytest.fixture(scope="module")
def source_image() -> np.ndarray:
    return texture_region(0, 0, 1100, 1500, 1)


@pytest.fixture(scope="module")
def svs(tmp_path_factory, source_image):
    return write_aperio_svs(tmp_path_factory.mktemp("svs") / "a.svs", source_image, downsamples=(4,))


def _reduce(image: np.ndarray, downsample: float) -> np.ndarray:
    for _ in range(int(round(np.log2(downsample)))):
        image = downsample2(image)
    return image


def _close(a: np.ndarray, b: np.ndarray) -> None:
    """Within JPEG (q=90) tolerance."""
    diff = np.abs(a.astype(np.int16) - b.astype(np.int16))
    assert diff.mean() < 2.5, diff.mean()
    assert np.percentile(diff, 99) < 16


def test_aperio_metadata(svs):
    with open_slide(svs) as slide:
        assert slide.vendor == "aperio"
        assert slide.level_dimensions == ((1500, 1100), (375, 275))
        assert slide.level_downsamples == pytest.approx((1.0, 4.0))
        assert slide.mpp == (0.25, 0.25)
        assert slide.objective_power == 40
        assert slide.tile_size == (256, 256)
        assert set(slide.associated_image_names) == {"label", "macro", "thumbnail"}


def test_info_is_phi_free(svs):
    with open_slide(svs) as slide:
        text = json.dumps(slide.info.to_dict())
        assert FAKE_PHI.split("^")[0] not in text
        assert "label" in text  # names only
        label = slide.read_associated_image("label")  # explicit call still works
        assert label.ndim == 3 and label.shape[2] == 3


def test_every_level_round_trips(svs, source_image):
    with open_slide(svs) as slide:
        for level, (w, h) in enumerate(slide.level_dimensions):
            got = slide.read_region((0, 0), (w, h), level=level)
            assert got.shape == (h, w, 3) and got.dtype == np.uint8
            _close(got, _reduce(source_image, slide.level_downsamples[level])[:h, :w])


def test_read_by_mpp_and_outside_is_white(svs, source_image):
    with open_slide(svs) as slide:
        got = slide.read_region((400, 200), (100, 80), mpp=0.5)
        assert got.shape == (80, 100, 3)
        _close(got, downsample2(source_image[200:360, 400:600]))
        edge = slide.read_region((1450, 1050), (100, 100), level=0)
        assert (edge[60:, :] == 255).all() and (edge[:, 60:] == 255).all()


def test_threads_get_their_own_handles(svs):
    with open_slide(svs) as slide:
        ref = slide.read_region((256, 256), (512, 512), level=0)
        results, errors = [], []

        def work():
            try:
                for _ in range(3):
                    results.append(slide.read_region((256, 256), (512, 512), level=0))
            except Exception as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=work) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        assert len(results) == 9 and all(np.array_equal(r, ref) for r in results)
        assert len(slide._handles) == 4  # main thread + 3 workers


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".tif"])
def test_plain_image_is_a_one_level_slide(tmp_path, source_image, suffix):
    field = source_image[:1000, :1000]
    path = tmp_path / f"field{suffix}"
    if suffix == ".tif":
        tifffile.imwrite(path, field, photometric="rgb")
    else:
        Image.fromarray(field).save(path, quality=95)
    with open_slide(path, mpp=0.25) as slide:
        assert slide.level_dimensions == ((1000, 1000),)
        assert slide.mpp == (0.25, 0.25)
        got = slide.read_region((0, 0), (1000, 1000), level=0)
        if suffix == ".jpg":
            _close(got, field)
        else:
            assert np.array_equal(got, field)
    with open_slide(path) as slide, pytest.raises(MissingMppError, match="--mpp"):
        slide.mpp  # noqa: B018


def test_plain_tiff_resolution_tags_give_mpp(tmp_path, source_image):
    path = tmp_path / "field.tif"
    # 0.5 µm/px = 20000 px/cm
    tifffile.imwrite(path, source_image[:300, :300], photometric="rgb", resolution=(20000, 20000), resolutionunit="CENTIMETER")
    with open_slide(path) as slide:
        assert slide.mpp == pytest.approx((0.5, 0.5))


def test_ome_tiff_pyramid_uses_tifffile(tmp_path, source_image):
    path = tmp_path / "p.ome.tif"
    levels = [source_image, downsample2(source_image), downsample2(downsample2(source_image))]
    opts = {"tile": (256, 256), "photometric": "rgb", "compression": "zlib"}
    with tifffile.TiffWriter(path) as tw:
        tw.write(levels[0], subifds=2, metadata={"axes": "YXS", "PhysicalSizeX": 0.5, "PhysicalSizeY": 0.5}, **opts)
        for lvl in levels[1:]:
            tw.write(lvl, subfiletype=1, **opts)
    with open_slide(path) as slide:
        assert slide.vendor == "ome-tiff"
        assert slide.level_count == 3
        assert slide.mpp == pytest.approx((0.5, 0.5))
        for i, lvl in enumerate(levels):
            h, w = lvl.shape[:2]
            assert np.array_equal(slide.read_region((0, 0), (w, h), level=i), lvl)


def test_mpp_override(svs):
    with open_slide(svs, mpp=0.3) as slide:
        assert slide.mpp == (0.3, 0.3)


@pytest.mark.shared_data
def test_cmu_small_region(shared_data):
    with open_slide(shared_data / "slides" / "CMU-1-Small-Region.svs") as slide:
        assert slide.vendor == "aperio"
        assert slide.level_dimensions == ((2220, 2967),)
        assert slide.mpp == pytest.approx((0.499, 0.499))
        assert slide.objective_power == 20
        tile = slide.read_region((1000, 1000), (240, 240), level=0)
        assert tile.shape == (240, 240, 3) and tile.std() > 5  # real tissue, not blank


@pytest.mark.shared_data
def test_sparse_ihc_jp2k(shared_data):
    with open_slide(shared_data / "slides" / "sparse-ihc-jp2k.svs") as slide:
        assert slide.level_dimensions == ((11952, 10249), (2988, 2562))
        assert slide.mpp == pytest.approx((0.5026, 0.5026))
        low = slide.read_region((0, 0), (2988, 2562), level=1)
        assert low.shape == (2562, 2988, 3)
        assert low.min() < 200  # the IHC fragments are there
        # level 0 and level 1 agree where tissue is
        y, x = np.unravel_index(np.argmin(low.sum(axis=2)), low.shape[:2])
        hi = slide.read_region((int(x * 4) - 64, int(y * 4) - 64), (128, 128), level=0)
        assert hi.min() < 230
