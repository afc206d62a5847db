"""``wsi-pipeline evaluate --cells``: matching, confusion matrix and F1 on a hand-made pair of files."""

from __future__ import annotations

import json

import pytest
import shapely

from wsi_pipeline.annotations import Feature, write_geojson
from wsi_pipeline.cli import main as cli
from wsi_pipeline.evaluation.celltypes import evaluate_cell_paths


def _box(i, dx=0.0):
    return shapely.box(40 * i + dx, 0, 40 * i + dx + 10, 10)


def _pair(tmp_path):
    """Truth: 7 nuclei (6 typed: two by nucleusType lymphocyte, epidermal, dermal; two by
    classification; one 'Nucleus' not scored). Prediction: 8 nuclei, 5 of them over typed truth."""
    truth = [
        Feature(_box(0), "detection", "Nucleus", extra={"nucleusType": "lymphocyte"}),
        Feature(_box(1), "detection", "Nucleus", extra={"nucleusType": "lymphocyte"}),
        Feature(_box(2), "detection", "Nucleus", extra={"nucleusType": "epidermal"}),
        Feature(_box(3), "detection", "Stromal"),
        Feature(_box(4), "detection", "Tumor"),
        Feature(_box(5), "detection", "Nucleus"),  # no cell type: not scored
        Feature(_box(6), "detection", "Nucleus", extra={"nucleusType": "dermal"}),  # missed below
    ]
    pred = [
        Feature(_box(0, 1), "detection", "Lymphocyte"),   # IoU 0.82: right
        Feature(_box(1, 1), "detection", "Epithelial"),   # Lymphocyte called Epithelial
        Feature(_box(2, -1), "detection", "Epithelial"),  # right
        Feature(_box(3, 1), "detection", "Nucleus"),      # not a cell type: counts as Other
        Feature(_box(4), "detection", "Tumor"),           # right
        Feature(_box(5), "detection", "Tumor"),           # over an unscored nucleus
        Feature(_box(6, 8), "detection", "Stromal"),      # IoU 0.11: no match
        Feature(shapely.box(1000, 1000, 1010, 1010), "detection", "Lymphocyte"),  # nothing there
    ]
    gt_path, pred_path = tmp_path / "truth.geojson", tmp_path / "run" / "nuclei.geojson.gz"
    pred_path.parent.mkdir()
    write_geojson(gt_path, truth)
    write_geojson(pred_path, pred)
    return pred_path, gt_path


def test_known_confusion_and_f1(tmp_path):
    pred, gt = _pair(tmp_path)
    r = evaluate_cell_paths(pred.parent, gt)  # a results folder resolves to its nuclei file
    assert (r["n_pred"], r["n_gt"], r["n_matched"]) == (8, 6, 5)
    assert r["classes"] == ["Lymphocyte", "Epithelial", "Stromal", "Tumor", "Other"]
    assert r["confusion"] == [
        [1, 1, 0, 0, 0],
        [0, 1, 0, 0, 0],
        [0, 0, 0, 0, 1],
        [0, 0, 0, 1, 0],
        [0, 0, 0, 0, 0],
    ]
    pc = r["per_class"]
    assert pc["Lymphocyte"]["f1"] == pytest.approx(2 / 3) and pc["Lymphocyte"]["recall"] == pytest.approx(0.5)
    assert pc["Epithelial"]["f1"] == pytest.approx(2 / 3) and pc["Epithelial"]["precision"] == pytest.approx(0.5)
    assert pc["Stromal"]["f1"] == 0 and pc["Tumor"]["f1"] == 1
    assert pc["Other"]["n_true"] == 0 and pc["Other"]["recall"] is None
    # macro over the classes present in the matched truth (Other is not)
    assert r["macro_f1"] == pytest.approx((2 / 3 + 2 / 3 + 0 + 1) / 4)
    assert r["accuracy"] == pytest.approx(3 / 5)


def test_stricter_iou_drops_matches(tmp_path):
    pred, gt = _pair(tmp_path)
    r = evaluate_cell_paths(pred, gt, iou=0.9)  # only the exact Tumor box is left
    assert r["n_matched"] == 1 and r["confusion"][3][3] == 1 and r["macro_f1"] == 1


def test_cli_prints_table_and_writes_json(tmp_path, capsys):
    pred, gt = _pair(tmp_path)
    out = tmp_path / "scores.json"
    assert cli(["evaluate", "--cells", str(pred), str(gt), "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "matched 5 of 6 true / 8 predicted" in text and "macro-F1" in text
    assert json.loads(out.read_text())["confusion"][0] == [1, 1, 0, 0, 0]


def test_untyped_truth_is_one_line_error(tmp_path, capsys):
    pred, _ = _pair(tmp_path)
    gt = tmp_path / "plain.geojson"
    write_geojson(gt, [Feature(_box(0), "detection", "Nucleus")])
    assert cli(["evaluate", "--cells", str(pred), str(gt)]) != 0
    err = capsys.readouterr().err.strip()
    assert "plain.geojson" in err and "no nuclei typed" in err and "\n" not in err
