"""Mitosis candidates: the darkness index of the rule, blob candidates from the image and
their merge with the nuclei's; on real MIDOG 2021 crops when ../shared/data is present."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import shapely

from detectors.base import Instances
from detectors.mitosis.candidates import (
    BlobRule, CandidateRule, blob_candidates, merge_candidates, reference_od, select_candidates,
)
from detectors.nuclei.stain import RUIFROK_HE

SHARED = Path(os.environ.get("WSI_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def _nuclei(od, std=None) -> Instances:
    n = len(od)
    meas = {"Hematoxylin OD mean": np.asarray(od, float), "Area µm^2": np.full(n, 30.0)}
    if std is not None:
        meas["Hematoxylin OD std dev"] = np.asarray(std, float)
    return Instances(shapely.points(np.arange(2 * n, dtype=float).reshape(n, 2)), np.ones(n), ["Nucleus"] * n, meas)


def _he_image(od_h: np.ndarray, od_e: float = 0.15) -> np.ndarray:
    """(H, W, 3) uint8 H&E-like image with hematoxylin OD ``od_h`` over a light eosin."""
    od = od_h[..., None] * RUIFROK_HE[0] + od_e * RUIFROK_HE[1]
    return np.clip(np.round(255 * 10.0 ** (-od)), 0, 255).astype(np.uint8)


def _disc(shape, cy, cx, r) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


# -- the rule's darkness index ------------------------------------------------------------
def test_a_little_darker_and_more_uneven_passes_where_neither_alone_would():
    od = np.r_[np.full(40, 0.5), 0.5 * 1.08, 0.5 * 1.08, 0.5]
    std = np.r_[np.full(40, 0.1), 0.1 * 1.08, 0.1, 0.1 * 1.08]
    keep = select_candidates(_nuclei(od, std))
    assert keep.tolist() == [False] * 40 + [True, False, False]  # both a little above the median: in
    old = select_candidates(_nuclei(od, std), rule=CandidateRule(min_darkness=float("inf")))
    assert not old.any()  # the rule without the index: neither 1.08 clears 1.15 / 1.35


def test_darkness_index_is_relative_to_the_set_not_absolute():
    od, std = np.r_[np.full(40, 1.0), 1.1], np.r_[np.full(40, 0.3), 0.33]
    assert select_candidates(_nuclei(od, std)).tolist() == [False] * 40 + [True]
    assert select_candidates(_nuclei(od * 0.5, std * 0.5)).tolist() == [False] * 40 + [True]  # paler scanner


def test_reference_od_is_the_median_of_a_large_enough_set():
    assert reference_od(_nuclei(np.r_[np.full(30, 0.5), np.full(11, 0.9)])) == pytest.approx(0.5)
    assert reference_od(_nuclei(np.full(5, 0.5))) is None  # too few to trust
    few = Instances(shapely.points(np.zeros((30, 2))), np.ones(30), ["Nucleus"] * 30)
    assert reference_od(few) is None  # no measurement
    assert reference_od(_nuclei(np.full(5, 0.5)), rule=replace(CandidateRule(), min_set_size=3)) == pytest.approx(0.5)


# -- blob candidates ----------------------------------------------------------------------
def _field() -> np.ndarray:
    """0.25 µm/px: three ordinary nuclei (OD 0.5), one condensed clump (OD 1.3, r 8 px =
    ~12.6 µm²), a dark speck too small to be a figure (r 2 px), and a dark sheet too large."""
    od = np.full((200, 240), 0.05)
    for cy, cx in ((40, 40), (40, 120), (150, 60)):
        od[_disc(od.shape, cy, cx, 18)] = 0.5
    od[_disc(od.shape, 120, 150, 8)] = 1.3
    od[_disc(od.shape, 30, 200, 2)] = 1.3
    od[170:200, 150:240] = 1.3  # 30x90 px = 169 µm², above max_area_um2
    return _he_image(od)


def test_blob_candidates_find_the_condensed_clump_only():
    xy = blob_candidates(_field(), mpp=0.25, reference=0.5)
    assert xy.shape == (1, 2)
    assert np.allclose(xy[0], (150.5, 120.5), atol=1.0)  # (x, y), pixel-edge convention


def test_blob_candidates_darkness_is_relative_to_the_reference():
    rgb = _field()
    assert len(blob_candidates(rgb, mpp=0.25, reference=1.0)) == 0  # 1.3 < 1.5 x 1.0
    assert len(blob_candidates(rgb, mpp=0.25, reference=None)) == 1  # fixed fallback level 0.9
    many = blob_candidates(rgb, mpp=0.25, reference=0.3)  # 0.5 >= 1.5 x 0.3: the nuclei too
    assert len(many) == 4


def test_blob_candidates_group_fragments_and_scale_with_mpp():
    od = np.full((120, 120), 0.05)
    od[_disc(od.shape, 60, 50, 5)] = 1.3
    od[_disc(od.shape, 60, 70, 5)] = 1.3  # 10 px (2.5 µm) gap: two fragments of one figure
    rgb = _he_image(od)
    grouped = BlobRule(group_um=3.0)
    xy = blob_candidates(rgb, mpp=0.25, reference=0.5, rule=grouped)
    assert xy.shape == (1, 2) and np.allclose(xy[0], (60.5, 60.5), atol=1.0)
    apart = blob_candidates(rgb, mpp=0.25, reference=0.5, rule=BlobRule(group_um=0.0))
    assert len(apart) == 2
    from PIL import Image

    half = np.array(Image.fromarray(rgb).resize((60, 60), Image.Resampling.BILINEAR))
    xy2 = blob_candidates(half, mpp=0.5, reference=0.5, rule=grouped)
    assert xy2.shape == (1, 2) and np.allclose(xy2[0] * 2, xy[0], atol=2.0)


def test_blob_candidates_ignore_black_padding():
    od = np.full((128, 128), 0.05)
    od[_disc(od.shape, 64, 60, 8)] = 1.3
    rgb = _he_image(od)
    rgb[:, 70:] = 0  # outside the image, as padded crops are: black, 2 px from the clump
    xy = blob_candidates(rgb, mpp=0.25, reference=0.5)
    assert xy.shape == (1, 2) and np.allclose(xy[0], (60.5, 64.5), atol=1.0)


def test_blob_candidates_on_glass_and_bad_input():
    assert blob_candidates(np.full((64, 64, 3), 245, np.uint8), mpp=0.25).shape == (0, 2)
    with pytest.raises(ValueError):
        blob_candidates(np.zeros((64, 64), np.uint8), mpp=0.25)
    with pytest.raises(ValueError):
        blob_candidates(np.zeros((64, 64, 3), np.uint8), mpp=0.0)


def test_merge_candidates_adds_only_new_figures():
    xy = np.array([[10.0, 10.0], [100.0, 100.0]])
    extra = np.array([[12.0, 11.0], [50.0, 50.0], [100.0, 119.0], [100.0, 121.0]])
    out = merge_candidates(xy, extra, radius=20.0)
    assert out.tolist() == [[10, 10], [100, 100], [50, 50], [100, 121]]
    assert merge_candidates(np.empty((0, 2)), extra, radius=20.0).tolist() == extra.tolist()
    assert merge_candidates(xy, np.empty((0, 2)), radius=20.0).tolist() == xy.tolist()


# -- real crops (skip without the shared data) --------------------------------------------
@pytest.mark.skipif(not (SHARED / "mitosis" / "ami-br-midog21" / "normal").is_dir(),
                    reason="needs ../shared/data/mitosis/ami-br-midog21")
def test_candidates_recall_on_midog21_crops_beats_the_old_rule():
    from PIL import Image

    from detectors.nuclei.weightfree import WeightFreeNucleiDetector

    files = sorted((SHARED / "mitosis" / "ami-br-midog21" / "normal").glob("*.png"))[::20][:60]
    det = WeightFreeNucleiDetector(device="cpu")
    rgbs = [np.array(Image.open(p).convert("RGB")) for p in files]
    nuclei = [det.predict(im) for im in rgbs]
    pooled = Instances.concatenate(nuclei)
    ref = reference_od(pooled)
    assert ref is not None
    split = np.cumsum([len(n) for n in nuclei])[:-1]
    old = CandidateRule(min_darkness=float("inf"))
    hits = {"old": 0, "new": 0}
    for name, rule, blobs in (("old", old, False), ("new", CandidateRule(), True)):
        for im, nuc, m in zip(rgbs, nuclei, np.split(select_candidates(pooled, rule=rule), split)):
            xy = nuc.subset(m).centroids().reshape(-1, 2) if m.any() else np.empty((0, 2))
            if blobs:
                xy = merge_candidates(xy, blob_candidates(im, mpp=0.25, reference=ref), radius=20.0)
            hits[name] += bool((np.hypot(xy[:, 0] - 64, xy[:, 1] - 64) <= 30).any()) if len(xy) else 0
    assert hits["new"] >= hits["old"]
    assert hits["new"] / len(files) >= 0.85


# -- blobs wired into the tile detector and the whole-slide stage ---------------------------
class _Everything:
    """Test double scorer: every candidate scores 1 (so detections = candidates)."""

    validated, description, crop_size, mpp, threshold = False, "test double", 64, 0.25, 0.5

    def score(self, crops):
        return np.ones(len(crops), np.float32)


class _NoNuclei:
    """Test double nuclei detector that finds nothing (the figure is not in the nuclei)."""

    def __init__(self) -> None:
        from detectors.base import DetectorSpec

        self.spec = DetectorSpec(name="none", mpp=0.25, tile_size=256, halo=32, max_object_size=48, classes=("Nucleus",))
        self.description = "no nuclei"

    def predict(self, tile):
        return Instances.empty()

    def predict_batch(self, tiles):
        return [Instances.empty() for _ in tiles]


def test_tile_detector_scores_a_dark_figure_missing_from_the_nuclei():
    from detectors.mitosis.detector import MitosisDetector

    det = MitosisDetector(device="cpu", scorer=_Everything(), nuclei=_NoNuclei())
    rgb = _field()
    xy, p = det.score_candidates(rgb, Instances.empty(), reference=0.5)
    assert xy.shape == (1, 2) and np.allclose(xy[0], (150.5, 120.5), atol=1.0) and p.tolist() == [1.0]
    assert det.score_candidates(rgb, Instances.empty(), reference=0.5, blobs=False)[0].shape == (0, 2)
    # the blob next to a candidate nucleus adds nothing: one candidate per figure
    nuc = _nuclei(np.r_[np.full(30, 0.5), 1.3])
    nuc = Instances(shapely.points(np.r_[np.full((30, 2), 5.0), [[152.0, 121.0]]]), nuc.score, nuc.label,
                    nuc.measurements)
    xy, _ = det.score_candidates(rgb, nuc)  # reference from the nuclei (median 0.5)
    assert len(xy) == 1 and np.allclose(xy[0], (152.0, 121.0))
    res = det.predict(rgb)  # no nuclei at all: the blob still becomes a detection
    assert len(res) == 1 and np.allclose(res.centroids()[0], (150.5, 120.5), atol=1.0)


class _ArraySlide:
    """Test double slide: an in-memory level 0 at ``mpp``; read_region at another mpp resamples."""

    def __init__(self, rgb: np.ndarray, mpp: float) -> None:
        self.rgb, self.mpp, self.dimensions = rgb, (mpp, mpp), (rgb.shape[1], rgb.shape[0])

    def read_region(self, location, size, *, level=None, mpp=None):
        from PIL import Image

        f = (mpp or self.mpp[0]) / self.mpp[0]
        x0, y0 = location
        w, h = round(size[0] * f), round(size[1] * f)
        out = np.full((h, w, 3), 255, np.uint8)
        H, W = self.rgb.shape[:2]
        xs, ys = max(0, x0), max(0, y0)
        xe, ye = min(W, x0 + w), min(H, y0 + h)
        if xe > xs and ye > ys:
            out[ys - y0 : ye - y0, xs - x0 : xe - x0] = self.rgb[ys:ye, xs:xe]
        if f != 1:
            out = np.asarray(Image.fromarray(out).resize(tuple(size), Image.Resampling.BILINEAR))
        return out


def _clumps(shape=(700, 900), seed=0) -> tuple[np.ndarray, np.ndarray]:
    """0.5 µm/px field with dark clumps (r 5 px = ~20 µm²) on a grid, some on tile borders."""
    rng = np.random.default_rng(seed)
    od = np.full(shape, 0.05)
    centres = []
    for cy in range(40, shape[0] - 30, 70):
        for cx in range(40, shape[1] - 30, 70):
            cy2, cx2 = cy + rng.integers(-8, 9), cx + rng.integers(-8, 9)
            od[_disc(shape, cy2, cx2, 5)] = 1.3
            centres.append((cx2 + 0.5, cy2 + 0.5))
    return _he_image(od), np.array(centres)


def test_slide_blob_search_tiled_equals_untiled_without_duplicates():
    from wsi_pipeline.mitosis_stage import blob_centres

    rgb, truth = _clumps()
    slide = _ArraySlide(rgb, 0.5)
    whole = blob_candidates(rgb, mpp=0.5, reference=0.5)
    tiled = blob_centres(slide, reference=0.5, mpp=0.5, tile_size=256)  # many tiles, borders through clumps
    assert len(whole) == len(truth) == len(tiled)
    order = lambda a: a[np.lexsort((a[:, 0], a[:, 1]))]  # noqa: E731
    np.testing.assert_allclose(order(tiled), order(whole), atol=1e-6)
    d = np.hypot(*(tiled[:, None] - tiled[None]).transpose(2, 0, 1)) + np.eye(len(tiled)) * 1e9
    assert d.min() > 20  # no figure twice
    # a slide scanned at 0.25 µm/px: blobs searched at 0.5, centres returned in level-0 pixels
    from PIL import Image

    fine = _ArraySlide(np.asarray(Image.fromarray(rgb).resize((1800, 1400), Image.Resampling.BILINEAR)), 0.25)
    xy = blob_centres(fine, reference=0.5, mpp=0.5, tile_size=256)
    assert len(xy) == len(truth)
    assert np.hypot(*(order(xy) / 2 - order(truth)).T).max() < 1.5
