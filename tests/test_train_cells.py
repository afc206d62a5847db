"""``wsi-pipeline train cells``: classified nuclei on one synthetic slide -> a model folder that
types another seed's nuclei; the run stage uses it; bad input is one line."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from detectors.base import Instances
from detectors.cells import CLASSES, classify_cells, load_cell_model
from wsi_pipeline.annotations import Feature, write_geojson
from wsi_pipeline.cli import main as cli
from wsi_pipeline.evaluation.celltypes import cell_type_scores
from wsi_pipeline.training.cells import read_nuclei_file, measure_from_slide

MPP = 0.25


@pytest.fixture(scope="module")
def slides(tmp_path_factory):
    """Two small synthetic excisions (different seeds) with typed truth nuclei."""
    from wsi_pipeline.synthetic import make_synthetic_slide

    root = tmp_path_factory.mktemp("cells")
    a = make_synthetic_slide(root, name="a", width=3072, height=2048, seed=5)
    b = make_synthetic_slide(root, name="b", width=3072, height=2048, seed=6)
    return root, a.path, b.path


@pytest.fixture(scope="module")
def model_folder(slides):
    root, a, _ = slides
    out = root / "cellmodel"
    rc = cli(["train", "cells", "--nuclei", str(root / "a_truth" / "nuclei.geojson"), "--slides", str(a),
              "--out", str(out), "--steps", "300"])
    assert rc == 0
    return out


def _measured_truth(path, slide_path):
    """The truth nuclei of a slide as the run's Instances: outlines measured from its pixels."""
    from tiling.open import open_slide

    nf = read_nuclei_file(path)
    with open_slide(slide_path) as slide:
        measure_from_slide(nf, slide, np.arange(len(nf.xy)))
    n = len(nf.xy)
    nuclei = Instances(nf.geometry, np.ones(n), np.full(n, "Nucleus", object), nf.measurements)
    return nuclei, nf.labels


def test_trained_on_one_seed_types_another(slides, model_folder):
    root, _, b = slides
    model = load_cell_model(model_folder)
    assert model.config["classes"] == list(CLASSES) and model.config["version"] == 1
    assert set(model.config["trained_classes"]) == {"Lymphocyte", "Epithelial", "Stromal", "Tumor"}
    nuclei, truth = _measured_truth(root / "b_truth" / "nuclei.geojson", b)
    got = classify_cells(nuclei, mpp=MPP, model=model)
    scored = np.asarray([t is not None for t in truth])
    r = cell_type_scores(got[scored], truth[scored])
    assert r["n_scored"] > 300
    assert r["macro_f1"] >= 0.85, r["per_class"]
    assert min(v["f1"] for v in r["per_class"].values() if v["n_true"]) >= 0.7, r["per_class"]


def test_model_card_names_data_not_machine_paths(slides, model_folder):
    root, _, _ = slides
    card = (model_folder / "model_card.md").read_text()
    cfg = json.loads((model_folder / "config.json").read_text())
    assert "a_truth/nuclei.geojson" in card and "Held-out" in card and "Macro-F1" in card
    for text in (card, json.dumps(cfg)):
        assert str(root) not in text and str(root.parent) not in text
    assert cfg["sources"][0]["measured_from_slide"] == cfg["sources"][0]["nuclei"]  # truth has no stain measurements


def test_run_stage_uses_the_model_folder(slides, model_folder):
    from wsi_pipeline.config import load_config
    from wsi_pipeline.map_stage import type_cells

    root, _, b = slides
    nuclei, _ = _measured_truth(root / "b_truth" / "nuclei.geojson", b)
    cfg = load_config("cpu-fast").updated(**{"cells.model": str(model_folder)})
    run = SimpleNamespace(notes=[], models={}, counts={})
    typed = type_cells(nuclei, mpp=MPP, cfg=cfg, run=run)
    assert run.models["cells"]["folder"] == model_folder.name and "cell model" in run.notes[-1]
    expected = classify_cells(nuclei, mpp=MPP, model=load_cell_model(model_folder))
    assert np.array_equal(typed.label, expected)
    assert sum(run.counts["cell_types"].values()) == len(nuclei)


def _cells_file(path, classes, *, measured=True):
    feats = []
    for i, c in enumerate(classes):
        box = __import__("shapely").box(30 * i, 0, 30 * i + 20, 20)
        meas = {"Area µm^2": 25.0, "Circularity": 0.9, "Solidity": 0.95, "Eccentricity": 0.5,
                "Max caliper µm": 6.0, "Min caliper µm": 5.0, "Hematoxylin OD mean": 0.4 + 0.01 * i,
                "Hematoxylin OD std dev": 0.1, "Eosin OD mean": 0.1} if measured else {}
        feats.append(Feature(box, "detection", c, measurements=meas))
    write_geojson(path, feats)
    return path


@pytest.mark.parametrize("case, message", [
    ("unclassified", "no nucleus is classified as a cell type"),
    ("unmeasured", "give the slide with --slides"),
    ("one_class", "only one class"),
    ("no_mpp", "give --mpp"),
])
def test_bad_training_input_is_one_line(tmp_path, capsys, case, message):
    f = tmp_path / "reviewed.geojson"
    if case == "unclassified":
        _cells_file(f, ["Nucleus"] * 4)
    elif case == "unmeasured":
        _cells_file(f, ["Tumor", "Stromal"] * 3, measured=False)
    elif case == "one_class":
        _cells_file(f, ["Tumor"] * 6)
    else:
        _cells_file(f, ["Tumor", "Stromal"] * 3)
    extra = [] if case == "no_mpp" else ["--mpp", "0.25"]
    rc = cli(["train", "cells", "--nuclei", str(f), "--out", str(tmp_path / "m"), "--steps", "5", *extra])
    err = capsys.readouterr().err.strip()
    assert rc != 0 and message in err and "reviewed.geojson" in err and "\n" not in err
    assert not (tmp_path / "m" / "config.json").exists()
