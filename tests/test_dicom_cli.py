"""`info`, `tile` and `run` on DICOM-WSI the tests write themselves; a DICOM that is no slide is refused."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
import zarr

from tiling._dicom_write import EXAMPLES, write_example, write_not_a_slide
from tiling.testing import texture_region
from wsi_pipeline.cli import main

H, W = 530, 700
SOURCE = texture_region(0, 0, H, W, 1)
LOSSY_MEAN = 1.5  # mean absolute difference allowed for JPEG / JPEG 2000 frames


@pytest.fixture(scope="module")
def examples(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("dicom-cli")
    return {kind: write_example(root / kind, kind, SOURCE) for kind in EXAMPLES}


def _expected(kind: str) -> np.ndarray:
    want = SOURCE.copy()
    if kind == "sparse":
        want[0:128, 128:256] = 255  # the left-out tile is empty glass
    return want


@pytest.mark.parametrize("kind", EXAMPLES)
def test_info_json_gives_size_and_mpp(examples, kind, capsys):
    assert main(["info", str(examples[kind]), "--json"]) == 0
    captured = capsys.readouterr()
    info = json.loads(captured.out)
    assert captured.err == ""
    assert info["vendor"] == "dicom" and info["level_dimensions"][0] == [W, H]
    assert info["mpp"] == pytest.approx([0.5, 0.5])
    assert info["level_count"] == (3 if kind == "pyramid" else 1)
    assert "DOE" not in captured.out and "PID-0001" not in captured.out


@pytest.mark.parametrize("kind", EXAMPLES)
def test_tile_writes_omezarr_equal_to_source(examples, kind, tmp_path, capsys):
    out = tmp_path / "s.ome.zarr"
    assert main(["tile", str(examples[kind]), "--out", str(out), "--no-progress"]) == 0
    assert capsys.readouterr().err == ""
    level0 = np.moveaxis(zarr.open_array(str(out / "0"), mode="r", zarr_format=2)[:], 0, -1)  # (c, y, x) -> (y, x, c)
    diff = np.abs(level0.astype(np.int16) - _expected(kind))
    assert level0.shape == (H, W, 3)
    if kind == "uncompressed":
        assert diff.max() == 0
    else:
        assert diff.mean() < LOSSY_MEAN and np.percentile(diff, 99.9) <= 30
    attrs = json.loads((out / ".zattrs").read_text())
    assert attrs["multiscales"][0]["datasets"][0]["coordinateTransformations"][0]["scale"][1:] == pytest.approx([0.5, 0.5])


@pytest.fixture(scope="module")
def tissue(tmp_path_factory) -> dict[str, Path]:
    """A 512 x 384 synthetic H&E field at 0.5 µm/px written as each DICOM example."""
    from wsi_pipeline.synthetic import build_scene, render_region

    scene = build_scene(1600, 1100, mpp=0.5, seed=3, marker=False)
    image = render_region(scene, 350, 200, 512, 384)
    root = tmp_path_factory.mktemp("dicom-run")
    return {kind: write_example(root / kind, kind, image) for kind in EXAMPLES}


@pytest.mark.slow  # 16-50 s each on the shared 2 cores: the pipeline's fixed cost, not the 512 x 384 field
@pytest.mark.parametrize("kind", EXAMPLES)
def test_run_completes(tissue, kind, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["run", str(tissue[kind]), "--out", str(out), "--config", "cpu-fast", "--workers", "1"])
    assert rc == 0, capsys.readouterr().err
    (slide_dir,) = [p for p in out.iterdir() if p.is_dir()]
    summary = json.loads((slide_dir / "summary.json").read_text())
    assert summary["slide"]["dimensions"] == [512, 384] and summary["slide"]["mpp"] == pytest.approx([0.5, 0.5])
    assert summary["counts"]["nuclei"] > 20  # the field is tissue: nuclei are found
    feats = json.loads(gzip.decompress((slide_dir / "nuclei.geojson.gz").read_bytes()))["features"]
    assert len(feats) == summary["counts"]["nuclei"]
    for path in slide_dir.rglob("*"):  # the fake patient name in the DICOM header reaches no output
        if path.is_file():
            data = path.read_bytes()
            data = gzip.decompress(data) if path.suffix == ".gz" else data
            assert b"DOE^JANE" not in data and b"PID-0001" not in data


@pytest.mark.parametrize("command", ["info", "tile", "run"])
def test_dicom_that_is_not_a_slide_is_one_line(tmp_path, command, capsys):
    (tmp_path / "in").mkdir()
    ct = write_not_a_slide(tmp_path / "in" / "ct.dcm")
    out = tmp_path / "out"
    args = {"info": ["info", str(ct)], "tile": ["tile", str(ct), "--out", str(out / "ct.ome.zarr"), "--no-progress"],
            "run": ["run", str(ct), "--out", str(out), "--config", "cpu-fast"]}[command]
    rc = main(args)
    captured = capsys.readouterr()
    lines = [line for line in captured.err.strip().splitlines() if "tile/s]" not in line and line.strip()]
    assert rc == 2 and len(lines) == 1, captured.err  # (run's progress bar opens before the slide: not counted)
    assert str(ct) in lines[0] and "1.2.840.10008.5.1.4.1.1.2" in lines[0] and "CT Image Storage" in lines[0]
    assert "Traceback" not in captured.err and captured.out == ""
    assert not out.exists() or not any(out.rglob("*"))  # nothing written
