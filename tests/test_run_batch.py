"""The lab tech's command: one slide, a batch, resume after a kill, one bad slide, full disk."""

from __future__ import annotations

import gzip
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tiling.errors import InputError
from wsi_pipeline.batch.runner import run_batch
from wsi_pipeline.cli import main
from wsi_pipeline.config import load_config

FAST = {"cluster.kind": "inprocess", "device": "cpu"}


@pytest.fixture(scope="module")
def tiny_slides(tmp_path_factory) -> Path:
    """Two small synthetic slides plus one corrupt file in a folder."""
    from wsi_pipeline.synthetic import make_synthetic_slide

    folder = tmp_path_factory.mktemp("slides")
    for seed, name in [(1, "case_a"), (2, "case_b")]:
        s = make_synthetic_slide(folder / f"_{name}", width=1536, height=1152, mpp=0.5, seed=seed, name=name,
                                 ink_depth_um=30, epidermis_um=40)
        shutil.move(str(s.path), folder / f"{name}.svs")
        shutil.rmtree(folder / f"_{name}")
    (folder / "zz_corrupt.svs").write_text("this is not a slide\n")
    return folder


def _cfg(**extra):
    return load_config("cpu-fast").updated(**{**FAST, **extra})


def _read_gz(path: Path) -> dict:
    return json.loads(gzip.decompress(path.read_bytes()))


def _assert_same_nuclei(a: Path, b: Path) -> None:
    """The same nuclei in two results folders: ids, outlines and classes equal; measurements to
    1e-5 (float32 torch reductions may differ in the last bit between processes with other
    thread counts, e.g. the detection probability on a one-thread Dask worker)."""
    fa_all, fb_all = (_read_gz(d / "nuclei.geojson.gz")["features"] for d in (a, b))
    assert [f["id"] for f in fa_all] == [f["id"] for f in fb_all], f"{a.name}: other nuclei ids"
    for fa, fb in zip(fa_all, fb_all):
        assert fa["geometry"] == fb["geometry"], f"{a.name}: nucleus {fa['id']} outline differs"
        assert fa["properties"]["classification"] == fb["properties"]["classification"], f"{a.name}: {fa['id']} class"
        ma, mb = fa["properties"]["measurements"], fb["properties"]["measurements"]
        assert ma.keys() == mb.keys() and all(ma[k] == pytest.approx(mb[k], rel=1e-5, abs=1e-7) for k in ma), \
            f"{a.name}: nucleus {fa['id']} measurements differ"


@pytest.mark.slow
def test_batch_isolates_the_bad_slide_and_reports(tiny_slides, tmp_path):
    out = tmp_path / "out"
    result = run_batch(tiny_slides, out, _cfg(), show_progress=False)
    status = {r.slide_id: r.status for r in result.rows}
    assert status == {"case_a": "done", "case_b": "done", "zz_corrupt": "failed"}
    (bad,) = result.failed
    assert "zz_corrupt.svs" in bad.error and "\n" not in bad.error
    for sid in ("case_a", "case_b"):
        d = out / sid
        for name in ("tissue.geojson", "nuclei.geojson.gz", "mitoses.geojson", "nuclei.parquet", "summary.json",
                     "overview.png", ".done.json"):
            assert (d / name).is_file(), f"{sid}/{name} missing"
        summary = json.loads((d / "summary.json").read_text())
        assert summary["counts"]["nuclei"] > 20
        assert summary["counts"]["tissue_mm2"] > 0.02
        assert "torch" in summary["versions"] and summary["config_hash"] == _cfg().hash()
        assert len(_read_gz(d / "nuclei.geojson.gz")["features"]) == summary["counts"]["nuclei"]
    assert not (out / "zz_corrupt").exists()
    assert not list(out.glob(".*partial"))
    html = (out / "batch_report.html").read_text()
    assert "zz_corrupt" in html and "failed" in html and "data:image/png;base64" in html
    csv_lines = (out / "batch_report.csv").read_text().splitlines()
    assert len(csv_lines) == 4 and csv_lines[0].startswith("slide_id,status")
    assert "case_a: done" in (out / "batch.log").read_text()

    # rerun: complete slides are skipped and untouched, the bad one fails again
    before = (out / "case_a" / "nuclei.geojson.gz").stat().st_mtime_ns
    again = run_batch(tiny_slides, out, _cfg(), show_progress=False)
    assert {r.slide_id: r.status for r in again.rows} == {"case_a": "skipped", "case_b": "skipped", "zz_corrupt": "failed"}
    assert (out / "case_a" / "nuclei.geojson.gz").stat().st_mtime_ns == before

    # a changed config redoes the slides
    changed = run_batch(tiny_slides, out, _cfg(**{"tissue.mpp": 12.0}), show_progress=False)
    assert {r.status for r in changed.rows if r.slide_id != "zz_corrupt"} == {"done"}


@pytest.mark.slow
def test_kill_then_resume_gives_the_same_outputs(tiny_slides, tmp_path):
    ref = tmp_path / "ref"
    run_batch(tiny_slides, ref, _cfg(), show_progress=False)

    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "wsi_pipeline", "batch", str(tiny_slides), "--out", str(out),
           "--config", "cpu-fast", "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and not (out / "case_a" / ".done.json").exists():
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (out / "case_a" / ".done.json").exists(), "first slide never finished"
    finished = {p.name: p.read_bytes() for p in (out / "case_a").iterdir() if p.is_file()}

    rc = main(["batch", str(tiny_slides), "--out", str(out), "--config", "cpu-fast", "--no-progress"])
    assert rc == 1  # the corrupt slide
    assert {p.name: p.read_bytes() for p in (out / "case_a").iterdir() if p.is_file()} == finished
    for sid in ("case_a", "case_b"):
        for name in ("tissue.geojson", "mitoses.geojson", "regions.geojson"):
            a, b = (ref / sid / name).read_bytes(), (out / sid / name).read_bytes()
            assert a == b, f"{sid}/{name} differs from an uninterrupted run"
        _assert_same_nuclei(ref / sid, out / sid)
    assert not list(out.glob(".*partial"))


def test_full_disk_gives_a_clear_error_and_no_half_files(tiny_slides, tmp_path, monkeypatch):
    from wsi_pipeline.batch.manifest import SlideJob
    from wsi_pipeline.run import run_slide
    import wsi_pipeline.run_stages as stages

    def no_space(*a, **k):
        raise InputError(tmp_path / "out" / "overview.png", "cannot write ([Errno 28] No space left on device)")

    monkeypatch.setattr(stages, "write_overview", no_space)
    job = SlideJob(tiny_slides / "case_a.svs", "case_a")
    with pytest.raises(InputError, match="No space left"):
        run_slide(job, tmp_path / "out", _cfg())
    assert list((tmp_path / "out").iterdir()) == []


def test_bad_config_is_one_line(tmp_path, capsys, tiny_slides):
    bad = tmp_path / "bad.yaml"
    bad.write_text("nuclei:\n  modle: weightfree\n")
    rc = main(["run", str(tiny_slides / "case_a.svs"), "--out", str(tmp_path / "o"), "--config", str(bad)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.count("\n") == 0 and "unknown key 'nuclei.modle'" in err


def test_run_plain_image_with_mpp(tmp_path, capsys):
    """A 1000 x 1000 H&E field as a TIFF, given --mpp, runs like a one-level slide."""
    import numpy as np
    import tifffile

    from wsi_pipeline.synthetic import build_scene, render_region

    scene = build_scene(3000, 2000, mpp=0.25, seed=7, marker=False)
    path = tmp_path / "field.tif"
    tifffile.imwrite(path, render_region(scene, 1000, 500, 1000, 1000))
    rc = main(["run", str(path), "--mpp", "0.25", "--out", str(tmp_path / "o"), "--config", "cpu-fast"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    feats = _read_gz(tmp_path / "o" / "field" / "nuclei.geojson.gz")["features"]
    assert len(feats) >= 20
    # the headline a lab tech reads: counts as "name value", no Python dict or None in it
    headline = captured.out.splitlines()[0]
    assert headline.startswith("field: tissue_mm2 ") and f"nuclei {len(feats)}," in headline
    assert "{" not in headline and "None" not in headline and "cell_types " in headline
    assert f"wsi-pipeline view {path} --results {tmp_path / 'o' / 'field'}" in captured.out
    # the weight-free cell typing names every nucleus with one of the five cell classes
    assert {f["properties"]["classification"]["name"] for f in feats} <= {
        "Lymphocyte", "Epithelial", "Stromal", "Tumor", "Other"}
    areas = np.array([f["properties"]["measurements"]["Area µm^2"] for f in feats])
    assert np.isfinite(areas).all() and 10 < np.median(areas) < 80  # synthetic nuclei: 5-10 µm across

def test_no_patient_data_in_any_output(tiny_slides, tmp_path):
    """Label/macro pixels and PHI properties of the slide never reach the results folder."""
    import numpy as np
    from PIL import Image

    from tiling import open_slide
    from wsi_pipeline.synthetic import PHI_PROPERTIES, PHI_STRINGS

    out = tmp_path / "out"
    shutil.copy(tiny_slides / "case_a.svs", tmp_path / "DOE_JANE_1970-01-01.svs")
    rc = main(["run", str(tmp_path / "DOE_JANE_1970-01-01.svs"), "--out", str(out), "--config", "cpu-fast",
               "--deidentify"])
    assert rc == 0
    (slide_dir,) = [p for p in out.iterdir() if p.is_dir()]
    assert slide_dir.name.startswith("slide-") and "DOE" not in slide_dir.name
    needles = [s.encode() for s in PHI_STRINGS] + [str(v).encode() for v in PHI_PROPERTIES.values() if len(str(v)) >= 6]
    needles.append(b"DOE_JANE_1970")
    with open_slide(tmp_path / "DOE_JANE_1970-01-01.svs") as slide:
        label = slide.read_associated_image("label")
    for path in slide_dir.rglob("*"):
        if not path.is_file():
            continue
        data = path.read_bytes()
        if path.suffix == ".gz":
            data = gzip.decompress(data)
        for needle in needles:
            assert needle not in data, f"{needle!r} found in {path.name}"
        if path.suffix == ".png":  # no picture is the label image
            img = np.asarray(Image.open(path).convert("RGB"))
            assert img.shape[:2] != label.shape[:2]


@pytest.mark.slow
def test_batch_on_a_local_cluster_matches_in_process(tiny_slides, tmp_path):
    """Two Dask worker processes, two slides in flight: same files as the in-process run."""
    ref = run_batch(tiny_slides, tmp_path / "ref", _cfg(), show_progress=False)
    cfg = _cfg(**{"cluster.kind": "local", "cluster.workers": 2, "cluster.memory_limit": "3GB"})
    dist = run_batch(tiny_slides, tmp_path / "dist", cfg, show_progress=False)
    assert [(r.slide_id, r.status) for r in dist.rows] == [(r.slide_id, r.status) for r in ref.rows]
    for sid in ("case_a", "case_b"):
        for name in ("tissue.geojson", "mitoses.geojson", "regions.geojson"):
            a, b = (tmp_path / "ref" / sid / name).read_bytes(), (tmp_path / "dist" / sid / name).read_bytes()
            assert a == b, f"{sid}/{name} differs between in-process and cluster runs"
        _assert_same_nuclei(tmp_path / "ref" / sid, tmp_path / "dist" / sid)


def test_summary_names_models_and_their_hashes(tiny_slides, tmp_path):
    """summary.json says which models ran, with the weights' sha256 for trained ones."""
    import hashlib

    model = Path(__file__).resolve().parents[1] / "models" / "mitosis-midog21-cnn"
    if not model.is_dir():
        pytest.skip("packaged mitosis model absent")
    rc = main(["run", str(tiny_slides / "case_a.svs"), "--out", str(tmp_path), "--config", "cpu-fast",
               "--mitosis-model", str(model)])
    assert rc == 0
    summary = json.loads((tmp_path / "case_a" / "summary.json").read_text())
    models = summary["models"]
    assert "weight-free" in models["nuclei"]["name"] and models["nuclei"]["weights_sha256"] is None
    assert models["mitosis"]["validated"] is False  # the shipped CNN is not validated (issue 18)
    assert models["mitosis"]["weights_sha256"] == hashlib.sha256((model / "weights.pt").read_bytes()).hexdigest()
    feats = json.loads((tmp_path / "case_a" / "mitoses.geojson").read_text())["features"]
    assert {f["properties"]["classification"]["name"] for f in feats} == {"Mitosis candidate (unvalidated)"}


def test_run_with_ome_zarr_carries_the_region_map_as_labels(tiny_slides, tmp_path):
    """--ome-zarr: slide.ome.zarr holds labels/regions (NGFF 0.4) equal to regions.npy at full scale."""
    import numpy as np
    import zarr

    rc = main(["run", str(tiny_slides / "case_a.svs"), "--out", str(tmp_path), "--config", "cpu-fast", "--ome-zarr"])
    assert rc == 0
    out = tmp_path / "case_a"
    root = zarr.open_group(str(out / "slide.ome.zarr"), mode="r")
    assert "regions" in root["labels"].attrs["labels"]
    label = root["labels/regions"]
    assert label.attrs["image-label"]["colors"]
    raster = np.load(out / "regions.npy")
    level0 = np.asarray(label["0"])
    assert level0.shape[-2:] == np.asarray(root["0"]).shape[-2:]
    # every class present in the raster is present in the label image, and no other
    assert set(np.unique(level0)) == set(np.unique(raster))


def test_batch_log_file_gets_info_console_keeps_its_level(tmp_path):
    """batch.log records every slide's start and counts; the terminal stays at the command
    line's level (WARNING without -v): progress bars, warnings and errors, no INFO lines."""
    import io
    import logging

    from wsi_pipeline.batch.runner import _batch_log

    root = logging.getLogger()
    saved_level, saved_handlers = root.level, root.handlers[:]
    console = io.StringIO()
    root.handlers = [logging.StreamHandler(console)]
    root.setLevel(logging.WARNING)
    log = logging.getLogger("wsi_pipeline.batch.runner")
    try:
        with _batch_log(tmp_path):
            log.info("case_a: done in 1.0 s")
            log.error("zz_corrupt: failed")
        assert root.level == logging.WARNING and root.handlers[0].level == logging.NOTSET
    finally:
        root.handlers, root.level = saved_handlers, saved_level
    text = (tmp_path / "batch.log").read_text()
    assert "case_a: done in 1.0 s" in text and "zz_corrupt: failed" in text
    assert console.getvalue() == "zz_corrupt: failed\n"


def test_deidentified_batch_keeps_a_failed_file_name_out_of_its_outputs(tmp_path, capsys):
    """With --deidentify a failed slide's error names its slide id, not its file (where patient
    names end up), in batch_report.html/.csv and batch.log; the operator's terminal still
    says which file it was."""
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "DOE_JANE_1970-01-01.svs").write_text("not a slide\n")
    out = tmp_path / "out"
    rc = main(["batch", str(folder), "--out", str(out), "--deidentify", "--no-progress", "--config", "cpu-fast"])
    assert rc == 1
    (name,) = [p.name for p in out.iterdir() if p.suffix == ".csv"]
    for f in ("batch_report.html", name, "batch.log"):
        text = (out / f).read_text()
        assert "DOE_JANE" not in text and "failed" in text, f
    assert "slide-" in (out / name).read_text()
    console = capsys.readouterr().out
    assert "FAILED slide-" in console and "DOE_JANE_1970-01-01.svs" in console
