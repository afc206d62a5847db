"""Cached synthetic excision of a requested tissue area (the whole-slide benchmark's slide)."""

from __future__ import annotations

import json

import pytest

from tiling import open_slide
from wsi_pipeline.synthetic import build_scene
from wsi_pipeline.synthetic.large import cache_folder, cached_excision, excision_size


@pytest.mark.parametrize("mm2", [0.3, 2.0, 100.0])
def test_frame_size_gives_the_requested_tissue_area(mm2):
    w, h = excision_size(mm2, mpp=0.25, seed=3)
    area = build_scene(w, h, mpp=0.25, seed=3, nuclei_density=0.0, tumor=False, vessels=False,
                       inflammation=False).tissue.area * 0.25**2 / 1e6
    assert mm2 <= area < mm2 * 1.01
    assert 4.0 < w / h < 4.5  # a 5:1 ellipse in the painter's 0.80 x 0.68 layout


def test_bad_sizes_are_refused():
    with pytest.raises(ValueError, match="positive"):
        excision_size(0.0)
    with pytest.raises(ValueError, match="mpp"):
        excision_size(1.0, mpp=-1)


def test_cached_excision_is_made_once_and_reads_as_an_aperio_slide(tmp_path):
    from detectors.tissue import detect_tissue

    ex = cached_excision(tmp_path, tissue_mm2=0.25, seed=1, mpp=0.5)
    assert ex.created and ex.path.is_file() and ex.folder == cache_folder(tmp_path, tissue_mm2=0.25, seed=1, mpp=0.5)
    assert [p.name for p in tmp_path.iterdir()] == [ex.folder.name]  # no temporary folder left
    assert 0.25 <= ex.tissue_mm2 < 0.26
    with open_slide(ex.path) as slide:
        assert slide.info.vendor == "aperio"
        assert slide.mpp == pytest.approx((0.5, 0.5))
        assert slide.dimensions == (ex.width, ex.height)
        assert slide.level_count >= 2
        found = detect_tissue(slide, device="cpu").total_area_mm2
    assert found == pytest.approx(ex.tissue_mm2, rel=0.15)

    mtime = ex.path.stat().st_mtime_ns
    again = cached_excision(tmp_path, tissue_mm2=0.25, seed=1, mpp=0.5)
    assert not again.created and again.path == ex.path and again.path.stat().st_mtime_ns == mtime
    assert again.tissue_mm2 == ex.tissue_mm2 and again.seconds == ex.seconds
    assert json.loads((ex.folder / "meta.json").read_text())["width"] == ex.width

    other = cached_excision(tmp_path, tissue_mm2=0.25, seed=2, mpp=0.5)
    assert other.created and other.folder != ex.folder
