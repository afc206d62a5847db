"""OME-Zarr writer: NGFF 0.4 rules, round trip of every level, resume after kill -9, CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import zarr

from tiling import ArraySlide, InputError, MissingMppError, open_slide
from tiling.omezarr import read_level, write_omezarr
from tiling.pyramid import downsample2
from tiling.testing import FAKE_PHI, texture_region, write_aperio_svs
from wsi_pipeline.cli import main

SPACE_UNITS = {"angstrom", "nanometer", "micrometer", "millimeter", "centimeter", "meter"}


def check_ngff_04(store: Path) -> dict:
    """Assert the NGFF 0.4 multiscales rules; return the multiscale."""
    attrs = json.loads((store / ".zattrs").read_text())
    assert json.loads((store / ".zgroup").read_text()) == {"zarr_format": 2}
    ms_list = attrs["multiscales"]
    assert isinstance(ms_list, list) and ms_list
    ms = ms_list[0]
    assert ms["version"] == "0.4"
    axes = ms["axes"]
    assert 2 <= len(axes) <= 5
    names = [a["name"] for a in axes]
    assert len(set(names)) == len(names)
    types = [a.get("type") for a in axes]
    assert 2 <= types.count("space") <= 3 and types.count("time") <= 1 and types.count("channel") <= 1
    order = {"time": 0, "channel": 1, "space": 2}
    ranks = [order[t] for t in types]
    assert ranks == sorted(ranks), "time, then channel, then space"
    for a in axes:
        if a["type"] == "space":
            assert a["unit"] in SPACE_UNITS
    datasets = ms["datasets"]
    assert datasets
    previous = None
    for ds in datasets:
        transforms = ds["coordinateTransformations"]
        assert transforms[0]["type"] == "scale" and len(transforms) in (1, 2)
        if len(transforms) == 2:
            assert transforms[1]["type"] == "translation" and len(transforms[1]["translation"]) == len(axes)
        scale = transforms[0]["scale"]
        assert len(scale) == len(axes) and all(s > 0 for s in scale)
        if previous is not None:  # ordered from highest resolution
            assert all(s >= p for s, p in zip(scale, previous, strict=True))
            assert scale != previous
        previous = scale
        arr = zarr.open_array(str(store / ds["path"]), mode="r", zarr_format=2)
        assert arr.ndim == len(axes)
    return ms


@pytest.fixture(scope="module")
def source() -> np.ndarray:
    return texture_region(0, 0, 700, 1100, 1)


@pytest.fixture(scope="module")
def svs(tmp_path_factory, source) -> Path:
    return write_aperio_svs(tmp_path_factory.mktemp("svs") / "s.svs", source, downsamples=(4,), quality=90, tile=128)


def _expected_levels(level0: np.ndarray, n: int) -> list[np.ndarray]:
    out = [level0]
    while len(out) < n:
        out.append(downsample2(out[-1]))
    return out


def _store_levels(store: Path) -> list[np.ndarray]:
    n = len(json.loads((store / ".zattrs").read_text())["multiscales"][0]["datasets"])
    return [read_level(store, k) for k in range(n)]


def _convert(slide, out, **kw):
    kw = {"chunk": 64, "min_size": 100, "levels_per_stage": 1, "workers": 2} | kw
    return write_omezarr(slide, out, **kw)


def test_round_trip_every_level(tmp_path, svs, source):
    with open_slide(svs) as slide:
        out = _convert(slide, tmp_path / "s.ome.zarr")
        level0 = slide.read_region((0, 0), slide.dimensions, level=0)
        ms = check_ngff_04(out)
        got = _store_levels(out)
        assert [g.shape for g in got] == [(700, 1100, 3), (350, 550, 3), (175, 275, 3), (88, 138, 3), (44, 69, 3)]
        for g, e in zip(got, _expected_levels(level0, len(got)), strict=True):
            assert np.array_equal(g, e)  # exactly the area-average pyramid of level 0
        # and within JPEG tolerance of the file's own 4x level and of the source
        native = slide.read_region((0, 0), slide.level_dimensions[1], level=1)
        assert np.abs(got[2].astype(int) - native).mean() < 3
        assert np.abs(got[0].astype(int) - source).mean() < 3
    scales = [d["coordinateTransformations"][0]["scale"] for d in ms["datasets"]]
    assert scales[0] == [1.0, 0.25, 0.25] and scales[3] == [1.0, 2.0, 2.0]
    assert [a["name"] for a in ms["axes"]] == ["c", "y", "x"]
    assert not (tmp_path / "s.ome.zarr.part").exists()
    for f in out.rglob(".z*"):  # no patient data in any metadata
        assert FAKE_PHI.split("^")[0] not in f.read_text()


def test_default_settings_and_codecs_agree(tmp_path, svs):
    with open_slide(svs) as slide:
        a = write_omezarr(slide, tmp_path / "a.ome.zarr", min_size=300)
        b = write_omezarr(slide, tmp_path / "b.ome.zarr", min_size=300, codec="zstd:3", chunk=128, workers=1)
        c = write_omezarr(slide, tmp_path / "c.ome.zarr", min_size=300, codec="none", chunk=256)
    za = zarr.open_array(str(a / "0"), mode="r", zarr_format=2)
    assert za.chunks == (3, 512, 512) and za.compressors[0].cname == "lz4"
    assert zarr.open_array(str(b / "0"), mode="r", zarr_format=2).compressors[0].cname == "zstd"
    for x, y in ((a, b), (a, c)):
        for k, (lx, ly) in enumerate(zip(_store_levels(x), _store_levels(y), strict=True)):
            assert np.array_equal(lx, ly), k


def test_refuses_missing_mpp_existing_output_and_bad_codec(tmp_path, source):
    with pytest.raises(MissingMppError, match="--mpp"):
        write_omezarr(ArraySlide(source), tmp_path / "x.ome.zarr")
    assert not list(tmp_path.iterdir())
    slide = ArraySlide(source, mpp=0.5)
    with pytest.raises(InputError, match="unknown codec"):
        write_omezarr(slide, tmp_path / "x.ome.zarr", codec="gzip9")
    out = write_omezarr(slide, tmp_path / "x.ome.zarr", min_size=600)
    with pytest.raises(InputError, match="already exists"):
        write_omezarr(slide, out)
    write_omezarr(ArraySlide(255 - source, mpp=0.5), out, overwrite=True, min_size=600)
    assert np.array_equal(read_level(out, 0), 255 - source)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.ome.zarr"]


def test_interrupted_conversion_resumes_without_rewriting(tmp_path, source):
    slide = ArraySlide(source, mpp=0.5)
    reference = _convert(slide, tmp_path / "ref.ome.zarr")
    out = tmp_path / "r.ome.zarr"

    def stop_after_10(done, total):
        if done >= 10:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _convert(slide, out, progress=stop_after_10)
    part = tmp_path / "r.ome.zarr.part"
    assert not out.exists() and part.is_dir()
    assert "multiscales" not in (part / ".zattrs").read_text() if (part / ".zattrs").exists() else True
    first = {p: p.stat().st_mtime_ns for p in (part / "0").rglob("*") if p.is_file() and not p.name.startswith(".")}
    assert first
    seen = []
    _convert(slide, out, progress=lambda d, t: seen.append((d, t)))
    assert seen[0][0] >= 10 and seen[-1][0] == seen[-1][1]
    rewritten = [p for p, t in first.items() if (out / p.relative_to(part)).stat().st_mtime_ns != t]
    assert len(rewritten) < len(first)  # finished blocks are not written again
    for a, b in zip(_store_levels(reference), _store_levels(out), strict=True):
        assert np.array_equal(a, b)


KILL_SCRIPT = """
import sys, time
from tiling import ArraySlide
from tiling.omezarr import write_omezarr
from tiling.testing import texture_region
slide = ArraySlide(texture_region(0, 0, 700, 1100, 1), mpp=0.5)
write_omezarr(slide, sys.argv[1], chunk=64, min_size=100, levels_per_stage=1, workers=2,
              progress=lambda d, t: time.sleep(0.05))
"""


def test_kill_minus_9_then_resume(tmp_path, source):
    out = tmp_path / "k.ome.zarr"
    journal = tmp_path / "k.ome.zarr.part" / ".wsi-progress"
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(out)], cwd=tmp_path)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if journal.exists() and journal.read_text().count("\n") >= 2 * 15:
                break
            assert proc.poll() is None, "finished before it could be killed"
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not out.exists()
    slide = ArraySlide(source, mpp=0.5)
    _convert(slide, out)
    reference = _convert(slide, tmp_path / "ref.ome.zarr")
    check_ngff_04(out)
    for a, b in zip(_store_levels(reference), _store_levels(out), strict=True):
        assert np.array_equal(a, b)
    assert not list(out.rglob("*.tmp")) and not (out / ".wsi-progress").exists()


def test_tile_command(tmp_path, svs, capsys):
    out = tmp_path / "cli.ome.zarr"
    assert main(["tile", str(svs), "--out", str(out), "--chunk", "128", "--codec", "zstd", "--no-progress"]) == 0
    ms = check_ngff_04(out)
    assert ms["datasets"][0]["coordinateTransformations"][0]["scale"] == [1.0, 0.25, 0.25]
    assert str(out) in capsys.readouterr().out


@pytest.mark.shared_data
def test_tile_real_slides(tmp_path, shared_data):
    cmu = tmp_path / "cmu.ome.zarr"
    assert main(["tile", str(shared_data / "slides" / "CMU-1-Small-Region.svs"), "--out", str(cmu), "--no-progress"]) == 0
    ms = check_ngff_04(cmu)
    assert ms["datasets"][0]["coordinateTransformations"][0]["scale"] == [1.0, 0.499, 0.499]
    levels = [zarr.open_array(str(cmu / d["path"]), mode="r", zarr_format=2) for d in ms["datasets"]]
    assert [a.shape for a in levels] == [(3, 2967, 2220), (3, 1484, 1110)]  # the pyramid adds a level
    assert levels[0].chunks == (3, 240, 240)  # native 240-px tiles kept
    with open_slide(shared_data / "slides" / "CMU-1-Small-Region.svs") as slide:
        window = slide.read_region((600, 900), (480, 480), level=0)
    assert np.array_equal(np.moveaxis(levels[0][:, 900:1380, 600:1080], 0, -1), window)


def test_ome_zarr_py_reads_the_store(tmp_path, svs):
    """ome-zarr-py is the reader inside napari-ome-zarr."""
    pytest.importorskip("ome_zarr")
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Multiscales, Reader

    with open_slide(svs) as slide:
        out = _convert(slide, tmp_path / "n.ome.zarr", min_size=300)
    node = next(iter(Reader(parse_url(str(out)))()))
    assert any(isinstance(s, Multiscales) for s in node.specs)
    assert [tuple(d.shape) for d in node.data] == [(3, 700, 1100), (3, 350, 550), (3, 175, 275)]
    assert node.metadata["channel_names"] == ["red", "green", "blue"]
    assert np.array_equal(np.asarray(node.data[1][:, :64, :64]), read_level(out, 1)[:64, :64].transpose(2, 0, 1))
