"""Tissue detection: torch pieces, the Detector contract, synthetic truth, real slides, CLI."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
import torch
from shapely.ops import unary_union

from detectors.testing import DetectorConformance
from detectors.tissue import TissueDetector, detect_tissue
from detectors.tissue.components import fill_small_holes, remove_small_objects
from detectors.tissue.morphology import close, dilate, disc
from detectors.tissue.threshold import otsu_threshold
from detectors.tissue.vectorize import mask_to_polygons
from tiling._array import ArraySlide

PINK = np.array([225, 140, 190], np.float32)


def painted(h: int, w: int, discs, *, seed: int = 0, strokes=()) -> np.ndarray:
    """White glass (with noise) + pink textured discs ``(cx, cy, r)`` + green pen strokes
    ``(x0, y0, x1, y1, width)``: ``(h, w, 3)`` uint8."""
    rng = np.random.default_rng(seed)
    img = np.full((h, w, 3), 244.0, np.float32) + rng.normal(0, 1.5, (h, w, 1))
    yy, xx = np.mgrid[0:h, 0:w]
    for cx, cy, r in discs:
        inside = (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
        img[inside] = PINK * rng.uniform(0.85, 1.05, (int(inside.sum()), 1))
    for x0, y0, x1, y1, width in strokes:
        d = np.abs((y1 - y0) * xx - (x1 - x0) * yy + x1 * y0 - y1 * x0) / np.hypot(x1 - x0, y1 - y0)
        on = (d <= width / 2) & (xx >= min(x0, x1)) & (xx <= max(x0, x1))
        img[on] = (60, 170, 80)
    return np.clip(img, 0, 255).astype(np.uint8)


class TestTissueDetector(DetectorConformance):
    @pytest.fixture
    def detector(self):
        return TissueDetector(device="cpu", tile_size=256, halo=32)

    @pytest.fixture
    def sample_tile(self):
        return painted(256, 256, [(100, 120, 60), (200, 60, 25)])


def test_otsu_splits_two_modes() -> None:
    gen = torch.Generator().manual_seed(0)
    v = torch.cat([0.1 + 0.02 * torch.randn(5000, generator=gen), 0.6 + 0.05 * torch.randn(2000, generator=gen)])
    t = otsu_threshold(v)
    assert 0.2 < t < 0.45


def test_disc_dilation_matches_convolution_and_square_beyond() -> None:
    m = torch.rand(2, 41, 57, generator=torch.Generator().manual_seed(1)) > 0.97
    for r in (1, 3, 6, 12):
        ref = torch.nn.functional.conv2d(m[:, None].float(), disc(r)[None, None], padding=r)[:, 0] > 0.5
        assert torch.equal(dilate(m, r), ref)
    ref = torch.nn.functional.max_pool2d(m[:, None].float(), 81, stride=1, padding=40)[:, 0] > 0.5
    assert torch.equal(dilate(m, 40), ref)


def test_closing_bridges_gap_and_keeps_border_objects() -> None:
    m = torch.zeros(1, 30, 30, dtype=torch.bool)
    m[0, 0:30, 0:10] = True
    m[0, 0:30, 12:20] = True  # 2-px gap
    c = close(m, 2)
    assert c[0, :, 10:12].all() and not c[0, :, 22:].any()
    assert torch.equal(c[0, :, :10], m[0, :, :10])


def test_holes_filled_only_when_small_and_specks_removed() -> None:
    m = np.zeros((60, 60), bool)
    m[5:55, 5:55] = True
    m[10:13, 10:13] = False  # 9 px hole
    m[20:40, 20:40] = False  # 400 px hole
    m[0, 58:60] = True  # 2 px speck
    out = remove_small_objects(fill_small_holes(m, 50), 10)
    assert out[10:13, 10:13].all() and not out[25:35, 25:35].any() and not out[0, 58:].any()
    polys = mask_to_polygons(out)
    assert len(polys) == 1 and len(polys[0].interiors) == 1


def test_pen_on_glass_is_not_tissue() -> None:
    img = painted(600, 800, [(250, 300, 150)], strokes=[(450, 520, 780, 470, 14)])
    slide = ArraySlide(img, mpp=8.0)
    res = detect_tissue(slide, mpp=8.0, device="cpu")
    assert len(res.polygons) == 1
    truth = shapely.Point(250, 300).buffer(150)
    got = res.polygons[0]
    assert got.intersection(truth).area / got.union(truth).area > 0.95
    assert not any(i.colour == "green" for i in res.inks)


def test_blank_glass_finds_nothing() -> None:
    res = detect_tissue(ArraySlide(painted(300, 300, []), mpp=8.0), device="cpu")
    assert res.polygons == [] and res.inks == [] and not res.mask.any()


def _truth(path, name):
    from wsi_pipeline.annotations import read_geojson

    return read_geojson(path / name).features


@pytest.fixture(scope="module")
def cli_run(synthetic_slide, tmp_path_factory):
    """``wsi-pipeline tissue`` on the synthetic slide once: (out dir, exit code)."""
    from wsi_pipeline.cli import main

    out = tmp_path_factory.mktemp("tissue_cli")
    return out, main(["tissue", str(synthetic_slide.path), "--out", str(out), "--device", "cpu"])


def test_synthetic_slide_iou_and_ink(synthetic_slide, cli_run) -> None:
    from wsi_pipeline.annotations import read_geojson

    out, code = cli_run
    assert code == 0
    feats = read_geojson(out / "tissue.geojson").features
    got = unary_union([f.geometry for f in feats if f.classification == "Tissue"])
    truth = unary_union([f.geometry for f in _truth(synthetic_slide.truth_dir, "tissue.geojson")])
    iou = got.intersection(truth).area / got.union(truth).area
    assert iou >= 0.95, iou
    inks = [f for f in feats if f.classification.startswith("Ink: ")]
    truth_inks = _truth(synthetic_slide.truth_dir, "ink.geojson")
    for f in truth_inks:
        colour = f.extra["inkColor"]
        found = [i.geometry for i in inks if i.extra["inkColor"] == colour]
        assert found, f"{colour} ink not found"
        assert unary_union(found).intersection(f.geometry.buffer(40)).area > 0.3 * f.geometry.area
    for f in _truth(synthetic_slide.truth_dir, "marker.geojson"):
        assert got.intersection(f.geometry).area < 0.02 * f.geometry.area  # marker pen is not tissue
    assert {i.extra["inkColor"] for i in inks} <= {f.extra["inkColor"] for f in truth_inks}


def test_cli_writes_geojson_and_png(cli_run, artifacts_dir) -> None:
    from PIL import Image

    from wsi_pipeline.annotations import read_geojson

    out, code = cli_run
    assert code == 0
    ann = read_geojson(out / "tissue.geojson")
    classes = {f.classification for f in ann.features}
    assert "Tissue" in classes and {"Ink: blue", "Ink: black"} <= classes
    tissue = [f for f in ann.features if f.classification == "Tissue"]
    assert all(f.measurements["Area mm^2"] > 0 for f in tissue)
    assert all(f.extra["inkColor"] == f.classification[5:] for f in ann.features if f.classification != "Tissue")
    png = np.asarray(Image.open(out / "tissue.png"))
    assert png.ndim == 3 and max(png.shape[:2]) <= 1600
    Image.fromarray(png).save(artifacts_dir / "tissue_synthetic.png")


def test_cli_missing_file_is_one_line_error(tmp_path, capsys) -> None:
    from wsi_pipeline.cli import main

    assert main(["tissue", str(tmp_path / "nope.svs"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nope.svs" in err[0]
    assert not (tmp_path / "o" / "tissue.geojson").exists()


@pytest.mark.slow
@pytest.mark.shared_data
def test_real_slides(shared_data, artifacts_dir) -> None:
    from tiling import open_slide
    from wsi_pipeline.tissue_run import tissue_overview
    from PIL import Image

    with open_slide(shared_data / "slides" / "sparse-ihc-jp2k.svs") as slide:
        res = detect_tissue(slide, device="cpu")
        Image.fromarray(tissue_overview(slide, res)).save(artifacts_dir / "tissue_sparse-ihc.png")
        w, h = slide.dimensions
        slide_mm2 = w * h * slide.mpp[0] ** 2 / 1e6
    assert len(res.polygons) >= 3  # the IHC fragments
    assert res.total_area_mm2 < 0.02 * slide_mm2  # and not the glass
    with open_slide(shared_data / "slides" / "CMU-1-Small-Region.svs") as slide:
        res = detect_tissue(slide, device="cpu")
        Image.fromarray(tissue_overview(slide, res)).save(artifacts_dir / "tissue_cmu1.png")
        w, h = slide.dimensions
        slide_mm2 = w * h * slide.mpp[0] ** 2 / 1e6
    big = max(res.polygons, key=lambda p: p.area)
    assert 0.3 < res.total_area_mm2 / slide_mm2 < 0.6  # the strip of skin, not the glass around it
    assert big.area / unary_union(res.polygons).area > 0.95
