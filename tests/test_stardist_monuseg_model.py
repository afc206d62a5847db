"""The opt-in StarDist trained on MoNuSeg training tiles (models/stardist-monuseg, issue 20):
it loads without the training data, names its licence and data, runs in a whole-slide run
without seams, and a corrupt or mismatched copy is refused with one line."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from detectors.stardist import load_stardist_model
from tiling.errors import InputError
from wsi_pipeline.cli import main
from wsi_pipeline.detection import SHIPPED_MODELS, resolve_nuclei_model

NAME = "stardist-monuseg"
FOLDER = SHIPPED_MODELS / NAME
pytestmark = pytest.mark.skipif(not (FOLDER / "config.json").is_file(), reason=f"models/{NAME} absent")


def test_named_folder_loads_and_names_its_licence_and_data():
    kind, folder = resolve_nuclei_model(NAME)
    assert kind == "stardist" and folder == FOLDER
    det = load_stardist_model(folder, device="cpu")
    assert det.spec.mpp == 0.25 and det.config.n_rays == 32 and det.config.unet_n_depth == 4  # deep preset at 0.25 µm/px
    assert "CC BY-NC-SA 4.0" in (FOLDER / "LICENSE").read_text()
    card = (FOLDER / "model_card.md").read_text()
    results = json.loads((FOLDER / "results.json").read_text())
    for tile in results["train_tiles"] + results["val_tiles"] + list(results["test"]):
        assert tile in card
    assert not set(results["train_tiles"] + results["val_tiles"]) & set(results["test"])
    assert not re.search(r"(/work/|/home/|/tmp/|shared/data)", card)  # data named relative to the dataset
    config = json.loads((FOLDER / "config.json").read_text())
    assert len(config["wsi_pipeline"]["weights_sha256"]) == 64


def _field(tmp_path: Path, size: int = 1024) -> Path:
    import tifffile

    from wsi_pipeline.synthetic import build_scene, render_region

    scene = build_scene(3 * size, 2 * size, mpp=0.25, seed=3, marker=False)
    path = tmp_path / "field.tif"
    tifffile.imwrite(path, render_region(scene, size, size // 2, size, size))
    return path


def _copy(tmp_path: Path) -> Path:
    copy = tmp_path / "model-copy"
    shutil.copytree(FOLDER, copy)
    return copy


def test_corrupt_weights_are_one_line_naming_the_folder(tmp_path, capsys):
    copy = _copy(tmp_path)
    weights = next(p for p in copy.iterdir() if p.name.startswith("weights"))
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(InputError, match="sha256"):
        load_stardist_model(copy, device="cpu")
    rc = main(["run", str(_field(tmp_path, 512)), "--mpp", "0.25", "--out", str(tmp_path / "o"),
               "--config", "cpu-fast", "--nuclei-model", str(copy)])
    err = capsys.readouterr().err.strip()
    assert rc != 0 and err.count("\n") == 0 and str(copy) in err and "corrupt" in err
    assert not (tmp_path / "o" / "field" / "nuclei.geojson.gz").exists()


def test_mismatched_config_is_one_line(tmp_path):
    copy = _copy(tmp_path)
    config = json.loads((copy / "config.json").read_text())
    config["unet_n_filter_base"] *= 2  # another architecture than the weights'
    config["wsi_pipeline"].pop("weights_sha256")
    (copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(InputError, match=str(copy)):
        load_stardist_model(copy, device="cpu")
    (copy / "config.json").write_text("{not json")
    with pytest.raises(InputError, match="config.json"):
        load_stardist_model(copy, device="cpu")


def test_whole_slide_run_with_the_model(tmp_path, capsys):
    import gzip

    rc = main(["run", str(_field(tmp_path)), "--mpp", "0.25", "--out", str(tmp_path / "o"), "--config", "cpu-fast",
               "--nuclei-model", NAME])
    assert rc == 0, capsys.readouterr().err
    summary = json.loads((tmp_path / "o" / "field" / "summary.json").read_text())
    assert NAME in json.dumps(summary)
    with gzip.open(tmp_path / "o" / "field" / "nuclei.geojson.gz", "rt") as fh:
        assert len(json.load(fh)["features"]) >= 50
    # the weight-free cell-type and tissue-map rules are set on the weight-free outlines: not
    # run on this model's (on CMU-1 normal skin they proposed a tumour, Breslow and an ulcer)
    counts = summary["counts"]
    assert summary["models"]["nuclei"]["trained"] is True
    assert counts["tissue_map"].startswith("not assessed") and NAME in counts["tissue_map"]
    assert "cell_types" not in counts and not (tmp_path / "o" / "field" / "regions.geojson").exists()
    assert counts["synoptic"]["lesion"].startswith("not assessed: no tissue map")


def test_tiled_equals_untiled():
    from detectors.stardist import compute_percentiles
    from tests.test_seamless_nuclei import _assert_same_nuclei, _field as field, _run
    from tiling import ArraySlide

    size = 1024
    img = field(size)
    slide = ArraySlide(img, mpp=0.25)
    det = load_stardist_model(FOLDER, device="cpu")  # the halo a run uses: the receptive radius
    det = det.with_percentiles(compute_percentiles(img)).with_tta(False)  # one normalisation; 8x faster
    assert det.spec.halo >= det.net.receptive_radius()
    whole = _run(slide, det, tile_size=size // 2 + 2 * det.spec.halo)
    tiled = _run(slide, det, tile_size=2 * det.spec.halo + 128)  # 128 px cores: 16 tiles, 24 seams
    assert len(whole) > 100
    _assert_same_nuclei(tiled, whole)
    assert np.isfinite(tiled.score).all()


def test_large_tiles_go_in_smaller_batches():
    """The deep model's 2048 px tiles, 8 at a time, killed 6 GB Dask workers: a batch holds at
    most batch_size x 1024² pixels."""
    from wsi_pipeline.run import tile_batch

    assert tile_batch(8, 640) == 8 and tile_batch(8, 1024) == 8
    assert tile_batch(8, 2048) == 2 and tile_batch(8, 4096) == 1 and tile_batch(1, 2048) == 1
