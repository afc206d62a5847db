"""Cell typing: weight-free rules on a hand-built scene, model folders, class colours."""

from __future__ import annotations

import json

import numpy as np
import pytest
import shapely
from shapely import affinity

from detectors.base import Instances
from detectors.cells import CLASSES, classify_cells, load_cell_model, truth_cell_type
from detectors.nuclei.measurements import measure
from tiling.errors import InputError
from wsi_pipeline.annotations.colors import DEFAULT_CLASS_COLORS

MPP = 0.25


def _ellipse(x_um, y_um, a_um, b_um, theta):
    c = shapely.Point(x_um / MPP, y_um / MPP).buffer(1.0, quad_segs=16)
    return affinity.rotate(affinity.scale(c, a_um / MPP, b_um / MPP), theta, use_radians=True)


def _block(rng, x0, y0, w, h, spacing, a, aspect, stain):
    """Nuclei on a jittered grid in a ``w`` x ``h`` µm box; returns (polygons, stains)."""
    xs, ys = np.meshgrid(np.arange(x0, x0 + w, spacing), np.arange(y0, y0 + h, spacing))
    xy = np.column_stack([xs.ravel(), ys.ravel()]) + rng.uniform(-0.1, 0.1, (xs.size, 2)) * spacing
    aa = rng.uniform(*a, len(xy))
    bb = aa / rng.uniform(*aspect, len(xy))
    polys = [_ellipse(x, y, ai, bi, rng.uniform(0, np.pi)) for (x, y), ai, bi in zip(xy, aa, bb)]
    return polys, rng.uniform(*stain, len(xy))


def _scene(seed=0, tumour_blocks=1):
    """Epidermis sheet, tumour nest(s), sparse spindle dermis and a lymphocyte scatter with truth."""
    rng = np.random.default_rng(seed)
    parts = [
        ("Epithelial", _block(rng, 0, 0, 400, 60, 8.5, (3.0, 4.0), (1.1, 1.5), (0.85, 1.15))),
        ("Stromal", _block(rng, 220, 120, 180, 250, 28.0, (3.2, 5.2), (2.0, 3.2), (1.0, 1.3))),
        ("Lymphocyte", _block(rng, 0, 400, 400, 80, 17.0, (2.5, 3.1), (1.0, 1.1), (1.7, 2.1))),
    ]
    for k in range(tumour_blocks):  # further nests lie below, far from the rest
        parts.append(("Tumor", _block(rng, 0 + 200 * (k % 2), 200 + 300 * k, 160, 160, 8.0, (4.3, 6.0), (1.15, 1.6), (1.6, 2.1))))
    polys, stains, truth = [], [], []
    for name, (p, s) in parts:
        polys += p
        stains.append(s)
        truth += [name] * len(p)
    geoms = np.asarray(polys, dtype=object)
    meas = measure(geoms, np.full((4, 4, 3), 255, np.uint8), MPP)
    stain = np.concatenate(stains)
    meas["Hematoxylin OD mean"] = stain * 0.3
    meas["Hematoxylin OD std dev"] = 0.05 + 0.01 * stain
    meas["Eosin OD mean"] = np.full(len(geoms), 0.2)
    return Instances(geoms, np.ones(len(geoms)), np.full(len(geoms), "Nucleus", object), meas), np.asarray(truth)


def test_rules_type_a_hand_built_scene():
    nuclei, truth = _scene()
    got = classify_cells(nuclei, mpp=MPP)
    assert got.shape == truth.shape and got.dtype == object
    for name in ("Epithelial", "Tumor", "Stromal", "Lymphocyte"):
        acc = float(np.mean(got[truth == name] == name))
        assert acc >= 0.85, (name, acc, dict(zip(*np.unique(got[truth == name], return_counts=True))))


def test_rules_depend_on_relative_darkness_not_stain_scale():
    nuclei, truth = _scene(1)
    darker = Instances(nuclei.geometry, nuclei.score, nuclei.label,
                       {**nuclei.measurements, "Hematoxylin OD mean": nuclei.measurements["Hematoxylin OD mean"] * 1.6})
    assert np.array_equal(classify_cells(nuclei, mpp=MPP), classify_cells(darker, mpp=MPP))


def test_tumour_rich_slide_keeps_its_epidermis_and_stroma():
    """Darkness is relative to the pale nuclei, not to the median: with eight times the tumour
    (most nuclei dark) the epidermis, stroma and lymphocytes are typed as before."""
    nuclei, truth = _scene(2)
    rich, rich_truth = _scene(2, tumour_blocks=8)
    assert np.mean(rich_truth == "Tumor") > 0.8  # pale nuclei: about a tenth
    got, got_rich = classify_cells(nuclei, mpp=MPP), classify_cells(rich, mpp=MPP)
    for name in ("Epithelial", "Stromal", "Lymphocyte", "Tumor"):
        assert np.mean(got_rich[rich_truth == name] == name) >= 0.85, name
    same = truth != "Tumor"  # the blocks both scenes share come first, in the same order
    assert np.array_equal(got[same], got_rich[: len(truth)][same])


def test_empty_and_missing_measurements():
    assert classify_cells(Instances.empty(), mpp=MPP).shape == (0,)
    nuclei, _ = _scene()
    bare = Instances(nuclei.geometry, nuclei.score, nuclei.label, {})
    with pytest.raises(ValueError, match="measurements"):
        classify_cells(bare, mpp=MPP)


def test_truth_mapping_and_colours():
    assert [truth_cell_type(k) for k in ("lymphocyte", "epidermal", "dermal", "endothelial", "tumor", "mitosis")] == [
        "Lymphocyte", "Epithelial", "Stromal", "Stromal", "Tumor", "Tumor"]
    assert truth_cell_type(None) == truth_cell_type("macrophage") == "Other"
    assert all(c in DEFAULT_CLASS_COLORS for c in CLASSES)
    assert len({DEFAULT_CLASS_COLORS[c] for c in CLASSES}) == len(CLASSES)


def _write_model(folder, **overrides):
    from detectors.cells.features import NAMES

    f, h, c = len(NAMES), 4, len(CLASSES)
    cfg = {"format": "wsi-pipeline-cell-model", "version": 1, "classes": list(CLASSES), "features": list(NAMES),
           "hidden": h, "mean": [0.0] * f, "std": [1.0] * f, **overrides}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(cfg))
    np.savez(folder / "weights.npz", w0=np.zeros((f, h)), b0=np.zeros(h), w1=np.zeros((h, c)),
             b1=np.array([0, 0, 1.0, 0, 0]))


@pytest.mark.parametrize("case, message", [
    ("missing", "not found"),
    ("no_config", "no config.json"),
    ("version", "version 99"),
    ("classes", "classes"),
    ("no_weights", "no weights.npz"),
])
def test_bad_model_folders_one_line_naming_the_folder(tmp_path, case, message):
    folder = tmp_path / "cellmodel"
    if case == "no_config":
        folder.mkdir()
    elif case == "version":
        _write_model(folder, version=99)
    elif case == "classes":
        _write_model(folder, classes=["Tumor", "Other"])
    elif case == "no_weights":
        _write_model(folder)
        (folder / "weights.npz").unlink()
    with pytest.raises(InputError, match=message) as err:
        load_cell_model(folder)
    assert str(folder) in str(err.value) and "\n" not in str(err.value)


def test_model_folder_is_used(tmp_path):
    _write_model(tmp_path / "m")
    model = load_cell_model(tmp_path / "m")
    nuclei, _ = _scene()
    got = classify_cells(nuclei, mpp=MPP, model=model)
    assert set(got) == {"Stromal"}  # its bias says Stromal everywhere
