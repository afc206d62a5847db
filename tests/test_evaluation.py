"""Evaluation metrics (hand-computed cases, cross-check with stardist) and `wsi-pipeline evaluate`."""

from __future__ import annotations

import json

import numpy as np
import pytest
import shapely
import tifffile
from PIL import Image

from tiling.errors import InputError
from wsi_pipeline.cli import main
from wsi_pipeline.evaluation import load_labels, score_labels
from wsi_pipeline.evaluation.io import load_pair


def two_squares() -> np.ndarray:
    lab = np.zeros((40, 40), np.int32)
    lab[5:15, 5:15] = 1
    lab[20:30, 20:30] = 2
    return lab


def test_identical_is_perfect():
    gt = two_squares()
    s = score_labels(gt, gt * 7, iou_thresholds=(0.5, 0.9))
    for t in (0.5, 0.9):
        m = s.at(t)
        assert m["f1"] == m["precision"] == m["recall"] == m["pq"] == m["sq"] == 1.0
    assert s.aji == 1.0 and s.dice == 1.0


def test_empty_prediction_scores_zero():
    s = score_labels(two_squares(), np.zeros((40, 40), np.int32))
    m = s.at(0.5)
    assert (m["tp"], m["fp"], m["fn"]) == (0, 0, 2)
    assert m["f1"] == 0 and m["recall"] == 0 and m["pq"] == 0
    assert s.aji == 0 and s.dice == 0


def test_one_missing_object_by_hand():
    gt = two_squares()
    pred = np.where(gt == 1, 1, 0)
    s = score_labels(gt, pred)
    m = s.at(0.5)
    assert (m["tp"], m["fp"], m["fn"]) == (1, 0, 1)
    assert m["precision"] == 1 and m["recall"] == 0.5
    assert m["f1"] == pytest.approx(2 / 3) and m["sq"] == 1 and m["pq"] == pytest.approx(2 / 3)
    assert s.aji == pytest.approx(100 / 200)  # C = 100, U = 100 + |missing G| 100
    assert s.dice == pytest.approx(2 * 100 / 300)


def test_partial_overlap_thresholds_and_aji_by_hand():
    gt = np.zeros((30, 30), np.int32)
    gt[0:10, 0:10] = 1
    pred = np.zeros_like(gt)
    pred[0:10, 5:15] = 1  # 50 px shared, union 150 -> IoU 1/3
    pred[20:25, 20:25] = 2  # a false positive of 25 px
    s = score_labels(gt, pred, iou_thresholds=(0.3, 0.5))
    assert s.at(0.5)["tp"] == 0 and s.at(0.5)["fp"] == 2
    lo = s.at(0.3)
    assert (lo["tp"], lo["fp"], lo["fn"]) == (1, 1, 0)
    assert lo["sq"] == pytest.approx(1 / 3)
    assert s.aji == pytest.approx(50 / (150 + 25))


def test_aji_lets_one_prediction_serve_two_objects():
    gt = two_squares()
    pred = np.zeros_like(gt)
    pred[5:30, 5:30] = 1  # covers both squares: 625 px
    s = score_labels(gt, pred)
    # each G pairs with the one S: C = 100 + 100, U = 625 + 625
    assert s.aji == pytest.approx(200 / 1250)
    assert s.at(0.5)["tp"] == 0


def test_agrees_with_stardist_matching():
    from stardist.matching import matching

    rng = np.random.default_rng(1)
    from scipy import ndimage

    gt, _ = ndimage.label(ndimage.binary_opening(rng.random((120, 120)) > 0.55))
    pred = ndimage.grey_dilation(gt, size=2)
    pred[rng.random(pred.shape) > 0.97] = 0
    s = score_labels(gt, pred, iou_thresholds=(0.3, 0.5, 0.7))
    for t in (0.3, 0.5, 0.7):
        ref = matching(gt, pred, thresh=t)
        m = s.at(t)
        assert (m["tp"], m["fp"], m["fn"]) == (ref.tp, ref.fp, ref.fn)
        assert m["f1"] == pytest.approx(ref.f1) and m["pq"] == pytest.approx(ref.panoptic_quality)


def test_scores_add_up_over_images():
    a, b = two_squares(), np.zeros((40, 40), np.int32)
    b[0:8, 0:8] = 3
    s1 = score_labels(a, a)
    s2 = score_labels(b, np.zeros_like(b))
    total = s1 + s2
    assert total.at(0.5)["tp"] == 2 and total.at(0.5)["fn"] == 1
    assert total.aji == pytest.approx(200 / (200 + 64))


def _xml(path, regions):
    body = "".join(
        "<Region><Vertices>" + "".join(f'<Vertex X="{x}" Y="{y}"/>' for x, y in r) + "</Vertices></Region>"
        for r in regions
    )
    path.write_text(f'<Annotations><Annotation><Regions>{body}</Regions></Annotation></Annotations>')


def test_loaders_agree_across_formats(tmp_path):
    from wsi_pipeline.annotations import Feature, write_geojson

    # XML: outline pixel indices 2..11 -> a 10 x 10 block of pixels
    _xml(tmp_path / "a.xml", [[(2, 2), (11, 2), (11, 11), (2, 11)]])
    xml = load_labels(tmp_path / "a.xml", shape=(20, 20))
    # GeoJSON: pixel-edge coordinates, the same pixels
    write_geojson(tmp_path / "a.geojson", [Feature(shapely.box(2, 2, 12, 12), object_type="detection")])
    geo = load_labels(tmp_path / "a.geojson", shape=(20, 20))
    tifffile.imwrite(tmp_path / "a.tif", (xml * 5).astype(np.uint16))
    tif = load_labels(tmp_path / "a.tif")
    Image.fromarray((xml > 0).astype(np.uint8) * 255).save(tmp_path / "a.png")
    png = load_labels(tmp_path / "a.png")
    assert (xml > 0).sum() == 100
    for other in (geo, tif, png):
        np.testing.assert_array_equal(other > 0, xml > 0)
    p, g = load_pair(tmp_path / "a.geojson", tmp_path / "a.tif")
    assert p.shape == g.shape == (20, 20)


def test_rgb_image_is_not_a_label_image(tmp_path):
    tifffile.imwrite(tmp_path / "rgb.tif", np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(InputError, match="rgb.tif"):
        load_labels(tmp_path / "rgb.tif")


def test_cli_folders_json_and_table(tmp_path, capsys):
    gt_dir, pred_dir = tmp_path / "gt", tmp_path / "pred"
    gt_dir.mkdir(), pred_dir.mkdir()
    a = two_squares()
    tifffile.imwrite(gt_dir / "img1.tif", a.astype(np.uint16))
    tifffile.imwrite(pred_dir / "img1.tif", np.where(a == 1, 1, 0).astype(np.uint16))
    tifffile.imwrite(gt_dir / "img2.tif", a.astype(np.uint16))
    tifffile.imwrite(pred_dir / "img2.tif", a.astype(np.uint16))
    tifffile.imwrite(gt_dir / "unpaired.tif", a.astype(np.uint16))
    out = tmp_path / "scores.json"
    assert main(["evaluate", str(pred_dir), str(gt_dir), "--iou", "0.5", "0.75", "--json", str(out)]) == 0
    table = capsys.readouterr().out
    assert "OVERALL" in table and "img1" in table and "unpaired" not in table
    data = json.loads(out.read_text())
    assert set(data["images"]) == {"img1", "img2"}
    assert data["images"]["img2"]["aji"] == 1.0
    o = data["overall"]
    assert o["iou"]["0.5"]["tp"] == 3 and o["iou"]["0.5"]["fn"] == 1
    assert o["aji"] == pytest.approx((100 + 200) / (200 + 200))
    assert o["mean_per_image"]["aji"] == pytest.approx((0.5 + 1.0) / 2)


def test_cli_bad_input_is_one_line_error(tmp_path, capsys):
    (tmp_path / "d").mkdir()
    tifffile.imwrite(tmp_path / "x.tif", two_squares().astype(np.uint16))
    assert main(["evaluate", str(tmp_path / "x.tif"), str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("wsi-pipeline evaluate: error:")
    assert main(["evaluate", str(tmp_path / "missing.geojson"), str(tmp_path / "x.tif")]) == 2


@pytest.mark.slow
@pytest.mark.shared_data
def test_dev_set_ground_truth_against_itself(shared_data, tmp_path):
    """The folder holds images (.tif) and XML with the same stems: the XML must win."""
    dev = shared_data / "nuclei" / "monuseg-dev"
    if not dev.is_dir():
        pytest.skip("monuseg-dev not present")
    out = tmp_path / "s.json"
    assert main(["evaluate", str(dev), str(dev), "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert len(data["images"]) == 7
    assert data["overall"]["aji"] == 1.0 and data["overall"]["iou"]["0.5"]["f1"] == 1.0
    assert data["overall"]["n_gt"] > 3000
