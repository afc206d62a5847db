"""DICOM-WSI as labs export them: files the tests write with pydicom read back equal to the source.

Every example is read by both readers where wsidicom accepts it (wsidicom and the frame
reader must agree), and by the frame reader alone where wsidicom refuses it.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import pydicom
from pydicom.encaps import encapsulate, generate_frames

from tiling import open_slide
from tiling._dicom import DicomSlide
from tiling._dicom_write import EXAMPLES, SeriesIds, write_example, write_wsi_instance
from tiling.errors import SlideError
from tiling.testing import texture_region

H, W = 530, 700  # not a multiple of any tile size used
SOURCE = texture_region(0, 0, H, W, 1)


def _assert_close(got: np.ndarray, want: np.ndarray, *, lossy: bool) -> None:
    assert got.shape == want.shape and got.dtype == np.uint8
    diff = np.abs(got.astype(np.int16) - want.astype(np.int16))
    if not lossy:
        assert diff.max() == 0
        return
    assert diff.mean() < 1.5, diff.mean()  # JPEG q95 / lossy JPEG 2000 on a smooth texture
    assert np.percentile(diff, 99.9) <= 30, np.percentile(diff, 99.9)


def _expected(kind: str) -> np.ndarray:
    want = SOURCE.copy()
    if kind == "sparse":  # the second 128-px tile is left out: empty glass reads white
        want[0:128, 128:256] = 255
    return want


@pytest.fixture(scope="module")
def examples(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("dicom")
    return {kind: write_example(root / kind, kind, SOURCE) for kind in EXAMPLES}


@pytest.mark.parametrize("kind", EXAMPLES)
def test_each_example_opens_with_size_mpp_and_pixels(examples, kind):
    with open_slide(examples[kind]) as slide:
        assert isinstance(slide, DicomSlide)
        assert slide.dimensions == (W, H)
        assert slide.mpp == pytest.approx((0.5, 0.5))
        got = slide.read_region((0, 0), (W, H), level=0)
    _assert_close(got, _expected(kind), lossy=kind != "uncompressed")


@pytest.mark.parametrize("kind", EXAMPLES)
def test_wsidicom_and_frame_reader_agree(examples, kind):
    """Where wsidicom accepts a series the frame reader reads the same pixels; where it refuses
    (no ImageType), auto picks the frame reader."""
    with DicomSlide(examples[kind], reader="frames") as frames:
        ours = [frames.read_region((0, 0), frames.level_dimensions[i], level=i) for i in range(frames.level_count)]
    if kind == "implied-full":
        with pytest.raises(SlideError, match="wsidicom does not read"):
            DicomSlide(examples[kind], reader="wsidicom")
        with DicomSlide(examples[kind]) as auto:
            assert auto.backend == "frames"
        return
    with DicomSlide(examples[kind], reader="wsidicom") as lib:
        assert lib.level_dimensions == frames.level_dimensions
        theirs = [lib.read_region((0, 0), lib.level_dimensions[i], level=i) for i in range(lib.level_count)]
    for a, b in zip(ours, theirs, strict=True):
        assert np.abs(a.astype(np.int16) - b).max() <= 2  # decoders may round YCbCr differently


def test_pyramid_levels_exclude_label_and_thumbnail(examples):
    """Levels by size; the LABEL image and the one-frame thumbnail without ImageType are never levels."""
    folder = examples["pyramid"]
    for target in (folder, folder / "level-1.dcm"):  # the folder, or any one file of the series
        with open_slide(target) as slide:
            assert slide.level_dimensions == ((700, 530), (350, 265), (175, 133))
            assert slide.associated_image_names == ("label", "thumbnail")
            assert slide.level_tile_size(2) == (128, 128)
            levels = [slide.read_region((0, 0), d, level=i) for i, d in enumerate(slide.level_dimensions)]
            label = slide.read_associated_image("label")  # explicit access still works
    assert label.shape == (96, 160, 3) and label[..., 2].mean() > 240 and label[..., 0].mean() < 15
    for level in levels:  # no pure-blue label pixels anywhere in the levels
        blue = (level[..., 2] > 230) & (level[..., 0] < 30) & (level[..., 1] < 30)
        assert not blue.any()
    assert np.abs(levels[1].astype(np.int16).mean((0, 1)) - SOURCE.mean((0, 1))).max() < 2


def test_tile_grid_positions_and_edges_read_exactly(examples):
    """Windows across tile corners and the padded right/bottom edge match the source."""
    with open_slide(examples["uncompressed"]) as slide:
        for x, y, w, h in [(100, 100, 60, 60), (120, 250, 30, 20), (650, 500, 50, 30), (0, 0, 1, 1)]:
            assert np.array_equal(slide.read_region((x, y), (w, h), level=0), SOURCE[y : y + h, x : x + w])
        outside = slide.read_region((680, 520), (40, 40), level=0)
    assert np.array_equal(outside[:10, :20], SOURCE[520:, 680:]) and (outside[10:] == 255).all()


def test_mpp_from_imaged_volume_and_axis_order(tmp_path):
    """No PixelSpacing: ImagedVolumeWidth / TotalPixelMatrixColumns; x and y kept apart."""
    path = write_wsi_instance(tmp_path / "a.dcm", SOURCE[:200, :300], ids=SeriesIds.new(), mpp=(0.25, 0.5),
                              tile=(128, 128), codec="none", pixel_spacing=False, image_type=None)
    with open_slide(path) as slide:
        assert slide.mpp == pytest.approx((0.25, 0.5), rel=1e-4)
    (tmp_path / "b").mkdir()
    path = write_wsi_instance(tmp_path / "b" / "b.dcm", SOURCE[:200, :300], ids=SeriesIds.new(), mpp=(0.25, 0.5),
                              tile=(128, 128), codec="none", image_type=None)
    with open_slide(path) as slide:
        assert slide.mpp == pytest.approx((0.25, 0.5))


def test_single_frame_without_image_type_is_never_the_slide(tmp_path):
    """A lone one-frame image without ImageType may be a label: refused, not shown."""
    path = write_wsi_instance(tmp_path / "only.dcm", SOURCE[:96, :160], ids=SeriesIds.new(), tile=(160, 96),
                              codec="jpeg", image_type=None)
    with pytest.raises(SlideError, match="single-frame images without ImageType") as err:
        open_slide(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("bot", [True, False])
def test_frames_split_over_several_fragments(tmp_path, bot):
    """Encapsulated frames in two fragments each, found by the offset table or by the end marker."""
    path = write_wsi_instance(tmp_path / "frag.dcm", SOURCE, ids=SeriesIds.new(), tile=(256, 256), codec="jpeg",
                              image_type=None)
    ds = pydicom.dcmread(path)
    frames = list(generate_frames(ds.PixelData, number_of_frames=int(ds.NumberOfFrames)))
    ds.PixelData = encapsulate(frames, fragments_per_frame=2, has_bot=bot)
    ds.save_as(path)
    with open_slide(path) as slide:
        got = slide.read_region((0, 0), (W, H), level=0)
    _assert_close(got, SOURCE, lossy=True)


def test_library_warnings_go_to_debug_log(examples, caplog):
    """The 65-character UIDs make pydicom warn; under warnings-as-errors the slide still opens,
    the warning is in the DEBUG log and one INFO line counts it."""
    with caplog.at_level(logging.DEBUG):
        with open_slide(examples["implied-full"]) as slide:
            assert slide.dimensions == (W, H)
    debug = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO and r.name == "tiling.dicom"]
    assert any("exceeds the maximum length of 64" in m for m in debug)
    assert len(infos) == 1 and "conformance warning" in infos[0]
    # pydicom's own log record is relayed at DEBUG and does not reach the root (terminal) handler
    assert any(r.name == "tiling.dicom.pydicom" and r.levelno == logging.DEBUG for r in caplog.records)
    assert logging.getLogger("pydicom").propagate is False


def test_cli_prints_nothing_on_stderr_for_a_quirky_file(examples):
    proc = subprocess.run([sys.executable, "-m", "wsi_pipeline", "info", str(examples["implied-full"])],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stderr == ""
    assert "700 x 530" in proc.stdout


@pytest.mark.parametrize("kind", ["implied-full", "uncompressed"])
def test_truncated_file_is_one_clear_error(examples, kind, tmp_path):
    data = examples[kind].read_bytes()
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(SlideError, match="truncated or corrupt") as err:
        open_slide(cut)
    assert str(cut) in str(err.value) and "\n" not in str(err.value)


def test_folder_with_two_slides_asks_for_one_file(tmp_path):
    for name in ("a.dcm", "b.dcm"):
        write_wsi_instance(tmp_path / name, SOURCE[:200, :300], ids=SeriesIds.new(), tile=(128, 128), codec="none")
    with pytest.raises(SlideError, match="2 DICOM whole-slide series"):
        open_slide(tmp_path)
    with open_slide(tmp_path / "b.dcm") as slide:  # one file of a series opens that series
        assert slide.dimensions == (300, 200)
