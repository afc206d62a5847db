"""The region map as an NGFF 0.4 label image inside slide.ome.zarr (labels/regions)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import zarr

from detectors.regions import LABELS, RegionMap, write_regions_labels
from tiling import ArraySlide, InputError
from tiling.omezarr import write_labels, write_omezarr
from tiling.testing import texture_region


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A 1000 x 700 px OME-Zarr at 0.5 µm/px: levels 0..2 (chunks 128)."""
    out = tmp_path_factory.mktemp("lab") / "slide.ome.zarr"
    write_omezarr(ArraySlide(texture_region(0, 0, 700, 1000, 1), mpp=0.5), out, chunk=128, min_size=300)
    return out


def region_map() -> RegionMap:
    """8 µm label pixels (16 level-0 px): no tissue in the right third, dermis, an epidermis
    band, a tumour block."""
    lab = np.zeros((44, 63), np.uint8)
    lab[:, :40] = LABELS["Dermis"]
    lab[2:6, :40] = LABELS["Epidermis"]
    lab[20:30, 10:20] = LABELS["Tumor"]
    return RegionMap(lab, um_per_px=8.0, downsample=16.0)


def read(path, level):
    return zarr.open_array(str(path / str(level)), mode="r", zarr_format=2)[...]


def test_regions_label_image_follows_ngff_04_and_the_image_levels(store):
    rm = region_map()
    path = write_regions_labels(store, rm)
    assert path == store / "labels" / "regions"
    assert json.loads((store / "labels" / ".zattrs").read_text()) == {"labels": ["regions"]}
    image = json.loads((store / ".zattrs").read_text())["multiscales"][0]
    attrs = json.loads((path / ".zattrs").read_text())
    ms = attrs["multiscales"][0]
    assert ms["version"] == "0.4"
    assert [a["name"] for a in ms["axes"]] == ["y", "x"] and all(a["unit"] == "micrometer" for a in ms["axes"])
    # one label level per image level, same paths and (y, x) scales
    assert [d["path"] for d in ms["datasets"]] == [d["path"] for d in image["datasets"]]
    assert [d["coordinateTransformations"][0]["scale"] for d in ms["datasets"]] == \
        [d["coordinateTransformations"][0]["scale"][1:] for d in image["datasets"]]
    il = attrs["image-label"]
    assert il["version"] == "0.4" and il["source"] == {"image": "../../"}
    values = [c["label-value"] for c in il["colors"]]
    assert len(values) == len(set(values))
    colors = {c["label-value"]: c["rgba"] for c in il["colors"]}
    assert colors[LABELS["Tumor"]] == [200, 0, 0, 255] and colors[0][3] == 0
    props = {p["label-value"]: p for p in il["properties"]}
    assert props[LABELS["Tumor"]]["class"] == "Tumor"
    assert props[LABELS["Tumor"]]["Area mm^2"] == pytest.approx(100 * 64e-6)

    lab = rm.labels
    for d in image["datasets"]:
        k = int(d["path"])
        img = zarr.open_array(str(store / d["path"]), mode="r", zarr_format=2)
        got = read(path, k)
        assert got.dtype == np.uint8 and got.shape == img.shape[1:]
        h, w = got.shape
        rows = ((np.arange(h) + 0.5) * 2**k / 16).astype(int)
        cols = ((np.arange(w) + 0.5) * 2**k / 16).astype(int)
        assert np.array_equal(got, lab[np.ix_(rows, cols)])
    level0 = read(path, 0)
    assert level0[50, 100] == LABELS["Epidermis"] and level0[400, 250] == LABELS["Tumor"]
    assert level0[:, 640:].max() == 0
    # chunks without tissue are not stored (fill value 0): column chunks 5..7 of level 0
    assert not list((path / "0").glob("*/7")) and list((path / "0").glob("*/0"))
    assert not list(store.rglob("*.tmp")) and not list((store / "labels").glob(".*part"))


def test_writing_again_replaces_the_image_and_keeps_other_labels(store):
    write_labels(store, np.ones((3, 3), np.uint8), downsample=400.0, name="cells")
    rm = region_map()
    lab = rm.labels.copy()
    lab[lab == LABELS["Tumor"]] = LABELS["Inflammation"]
    write_regions_labels(store, RegionMap(lab, 8.0, 16.0))
    write_regions_labels(store, RegionMap(lab, 8.0, 16.0))
    assert json.loads((store / "labels" / ".zattrs").read_text())["labels"] == ["cells", "regions"]
    level0 = read(store / "labels" / "regions", 0)
    assert level0[400, 250] == LABELS["Inflammation"] and not (level0 == LABELS["Tumor"]).any()
    assert read(store / "labels" / "cells", 0).min() == 1  # 3 x 400 px covers the 1000 x 700 image


def test_bad_store_and_bad_labels(tmp_path, store):
    (tmp_path / "plain").mkdir()
    with pytest.raises(InputError) as err:
        write_labels(tmp_path / "plain", np.zeros((4, 4), np.uint8), downsample=8.0)
    assert str(tmp_path / "plain") in str(err.value) and "multiscales" in str(err.value)
    with pytest.raises(ValueError, match="2-D"):
        write_labels(store, np.zeros((4, 4, 1), np.uint8), downsample=8.0)
    with pytest.raises(ValueError, match="2-D"):
        write_labels(store, np.zeros((4, 4), np.float32), downsample=8.0)
