"""Bad input through the CLI: one line on stderr naming the file, exit 2, no traceback, no output."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from tiling.testing import texture_region, write_aperio_svs
from wsi_pipeline.cli import main


def _dicom_without_image(path: Path) -> Path:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.77.1.6"  # VL Whole Slide Microscopy
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality = "SM"
    ds.PatientName = "DOE^JANE"
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.fixture(scope="module")
def cases(tmp_path_factory) -> dict[str, tuple[Path, str]]:
    """name -> (path, words the message must contain)."""
    d = tmp_path_factory.mktemp("bad")
    folder = d / "a-folder"
    folder.mkdir()
    (folder / "notes.txt").write_text("not a slide")
    (d / "empty.svs").write_bytes(b"")
    full = write_aperio_svs(d / "full.svs", texture_region(0, 0, 900, 1200, 1), downsamples=(4,), tile=128)
    data = full.read_bytes()
    (d / "truncated.svs").write_bytes(data[: len(data) // 2])
    (d / "text.svs").write_text("Patient list\nDOE, JANE\n" * 20)
    Image.fromarray(texture_region(0, 0, 300, 300, 1)).save(d / "field.png")
    return {
        "missing": (d / "missing.svs", "no such file"),
        "directory": (folder, "directory"),
        "empty": (d / "empty.svs", "empty"),
        "truncated": (d / "truncated.svs", "truncated"),
        "text": (d / "text.svs", "not a slide"),
        "dicom": (_dicom_without_image(d / "no-image.dcm"), "DICOM"),
        "png-without-mpp": (d / "field.png", "--mpp"),
    }


def _check(rc: int, err: str, path: Path, words: str) -> None:
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert str(path) in lines[0] and words in lines[0]


@pytest.mark.parametrize("name", ["missing", "directory", "empty", "truncated", "text", "dicom", "png-without-mpp"])
def test_tile_refuses_bad_input(cases, name, tmp_path, capsys):
    path, words = cases[name]
    out = tmp_path / "out.ome.zarr"
    rc = main(["tile", str(path), "--out", str(out), "--no-progress"])
    _check(rc, capsys.readouterr().err, path, words)
    assert list(tmp_path.iterdir()) == []  # nothing written, not even a .part folder


@pytest.mark.parametrize("name", ["missing", "directory", "empty", "truncated", "text", "dicom"])
def test_info_refuses_bad_input(cases, name, capsys):
    path, words = cases[name]
    rc = main(["info", str(path)])
    captured = capsys.readouterr()
    _check(rc, captured.err, path, words)
    assert captured.out == ""


@pytest.mark.parametrize("name", ["missing", "directory", "empty", "truncated", "text", "dicom", "png-without-mpp"])
def test_run_refuses_bad_input_before_any_work(cases, name, tmp_path, capsys):
    """``run`` checks the slide before it starts a Dask cluster: the one error line is all
    stderr shows (no cluster start-up and shutdown chatter around it) and OUT is not made."""
    path, words = cases[name]
    out = tmp_path / "results"
    rc = main(["run", str(path), "--out", str(out)])
    _check(rc, capsys.readouterr().err, path, words)
    assert not out.exists()


def test_png_with_mpp_is_a_valid_slide(cases, tmp_path, capsys):
    path, _ = cases["png-without-mpp"]
    assert main(["info", str(path), "--json", "--mpp", "0.25"]) == 0
    assert '"mpp": [\n    0.25' in capsys.readouterr().out
    assert main(["tile", str(path), "--mpp", "0.25", "--out", str(tmp_path / "f.ome.zarr"), "--no-progress"]) == 0
    assert (tmp_path / "f.ome.zarr" / ".zattrs").exists()


def test_real_process_prints_one_line(cases, tmp_path):
    path, _ = cases["truncated"]
    proc = subprocess.run(
        [sys.executable, "-m", "wsi_pipeline", "tile", str(path), "--out", str(tmp_path / "o.ome.zarr")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    _check(proc.returncode, proc.stderr, path, "truncated")
    assert not (tmp_path / "o.ome.zarr").exists() and not (tmp_path / "o.ome.zarr.part").exists()
    proc = subprocess.run([sys.executable, "-m", "wsi_pipeline", "run", str(path), "--out", str(tmp_path / "r")],
                          capture_output=True, text=True, timeout=120)
    _check(proc.returncode, proc.stderr, path, "truncated")
