"""The weight-free detector's choice of a threshold level per nucleus (detectors.nuclei.tree)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch
from skimage.draw import disk, polygon

from detectors.nuclei.polygons import rasterise
from detectors.nuclei.stain import RUIFROK_HE, stain_matrix
from detectors.nuclei.tree import NodeScore, choose, convex_areas, parents, select
from detectors.nuclei.weightfree import SINGLE_LEVEL, WeightFreeNucleiDetector
from wsi_pipeline.evaluation import score_labels


def test_convex_areas_of_convex_and_concave_shapes():
    lab = np.zeros((200, 200), np.int32)
    lab[100:130, 20:80] = 1  # rectangle: its own hull
    rr, cc = disk((50, 50), 20)
    lab[rr, cc] = 2
    lab[10:40, 120:130] = 3  # an L: hull 30x10 + the triangle to the foot's end
    lab[10:20, 130:180] = 3
    rr, cc = polygon([150, 190, 190], [100, 100, 180])
    lab[rr, cc] = 4
    hull = convex_areas(lab, 5)  # id 5 absent: 0
    pixels = np.bincount(lab.ravel(), minlength=6)[1:].astype(float)
    assert pixels[0] == 1800 and abs(hull[0] - 1800) < 1e-6
    assert 1.0 < hull[1] / pixels[1] < 1.05
    assert abs(hull[2] - (30 * 10 + 10 * 50 + 0.5 * 50 * 20)) / hull[2] < 0.05
    assert hull[3] >= pixels[3]
    assert hull[4] == 0


def test_parents_by_majority():
    lower = np.zeros((10, 10), np.int32)
    lower[:, :5] = 1
    lower[:, 5:] = 2
    upper = np.zeros((10, 10), np.int32)
    upper[2:4, 1:3] = 1  # inside 1
    upper[6:8, 3:9] = 2  # mostly inside 2
    area = np.bincount(upper.ravel())[1:]
    par, straddled = parents(lower, upper, area)
    np.testing.assert_array_equal(par, [0, 1])
    np.testing.assert_array_equal(straddled, [True, True])  # object 2 lies 1/3 in 1, 2/3 in 2
    np.testing.assert_array_equal(parents(np.zeros_like(lower), upper, area)[0], [-1, -1])
    upper[6:8, 3:5] = 0
    np.testing.assert_array_equal(parents(lower, upper, np.bincount(upper.ravel())[1:])[1], [False, False])


def _two_levels():
    low = np.zeros((20, 30), np.int32)
    low[5:15, 2:28] = 1  # one merged blob
    high = np.zeros((20, 30), np.int32)
    high[6:14, 3:13] = 1  # which splits into two at the higher level
    high[6:14, 16:27] = 2
    levels = [low, high]
    return levels, [np.array([-1]), parents(low, high, np.bincount(high.ravel())[1:])[0]]


def test_select_takes_the_children_or_the_parent_whichever_is_worth_more():
    levels, par = _two_levels()
    split = select(levels, par, [np.array([0.2]), np.array([0.3, 0.15])])
    assert split.max() == 2 and (split > 0).sum() == (levels[1] > 0).sum()
    merged = select(levels, par, [np.array([0.5]), np.array([0.3, 0.15])])
    assert merged.max() == 1 and (merged > 0).sum() == (levels[0] > 0).sum()
    one_child = select(levels, par, [np.array([-0.1]), np.array([0.3, -0.2])])  # worthless ones are left out
    np.testing.assert_array_equal(one_child > 0, levels[1] == 1)
    assert select(levels, par, [np.array([-0.1]), np.array([-0.3, -0.2])]).max() == 0


def _he(h_conc: np.ndarray, rng) -> np.ndarray:
    m = stain_matrix(RUIFROK_HE)
    e_conc = np.where(h_conc > 0.1, 0.1, 0.3)
    od = h_conc[..., None] * m[0] + e_conc[..., None] * m[1] + rng.normal(0, 0.01, h_conc.shape + (3,))
    return np.clip(255 * 10 ** (-np.clip(od, 0, None)), 0, 255).astype(np.uint8)


def test_touching_nuclei_come_apart_and_a_pale_nucleus_is_kept():
    """Two touching nuclei with a paler seam (not separable by shape alone: together they
    are a fat oval) and a pale nucleus among dark ones: the tree finds all of them, the
    single global level does not."""
    rng = np.random.default_rng(0)
    size = 256
    truth = np.zeros((size, size), np.int32)
    conc = np.full((size, size), 0.04)
    k = 0
    for cy, cx in [(40, 40), (40, 120), (40, 200), (200, 40), (200, 200), (128, 200)]:  # dark, round
        rr, cc = disk((cy, cx), 13, shape=truth.shape)
        k += 1
        truth[rr, cc], conc[rr, cc] = k, 0.8
    rr, cc = disk((128, 60), 16, shape=truth.shape)  # pale, large
    k += 1
    truth[rr, cc], conc[rr, cc] = k, 0.28
    yy, xx = np.mgrid[:size, :size]
    for cx in (112, 136):  # two touching nuclei, the seam paler than both
        m = (yy - 128) ** 2 + (xx - cx) ** 2 <= 12.5**2
        m &= (xx < 124) if cx == 112 else (xx >= 124)
        k += 1
        truth[m], conc[m] = k, 0.8
    conc[(truth > k - 2) & (np.abs(xx - 123.5) < 2)] = 0.45
    rgb = _he(conc, rng)
    tree = WeightFreeNucleiDetector(device="cpu")
    single = tree.with_params(**SINGLE_LEVEL)
    found = {}
    for name, det in (("tree", tree), ("single", single)):
        pred = rasterise(det.predict(rgb).geometry, truth.shape)
        found[name] = score_labels(truth, pred).at(0.5)
    assert found["tree"]["tp"] == k, found
    assert found["single"]["tp"] < k, found


def test_choose_uses_the_score():
    """The same levels give nothing when every object is worth less than the bias."""
    levels, _ = _two_levels()
    nmap = torch.from_numpy(np.where(levels[0] > 0, 1.0, 0.1).astype(np.float32))
    kept = choose(levels, nmap, 0.5, NodeScore(), ring=2)
    assert kept.max() >= 1
    none = choose(levels, nmap, 0.5, replace(NodeScore(), bias=1.0), ring=2)
    assert none.max() == 0


def test_weightfree_fast_is_the_single_level_detector():
    from wsi_pipeline.detection import build_nuclei_detector, nuclei_factory, resolve_nuclei_model

    assert resolve_nuclei_model("weightfree-fast") == ("weightfree-fast", None)
    fast = build_nuclei_detector("weightfree-fast", None, "cpu")
    full = build_nuclei_detector("weightfree", None, "cpu", None, 0.3)
    assert fast.params.levels == () and fast.params.min_score == 0.5 and fast.threshold is None
    assert len(full.params.levels) > 1 and full.threshold == 0.3
    _, note = nuclei_factory("weightfree-fast", "cpu")
    assert "one threshold level" in note


def test_fill_small_holes_fills_only_small_closed_holes():
    from detectors.nuclei.watershed import fill_small_holes

    mask = np.zeros((60, 90), bool)
    rr, cc = disk((20, 20), 9)
    mask[rr, cc] = True
    mask[disk((20, 20), 6)] = False  # a ring: hole 11 px across
    mask[35:58, 40:88] = True
    mask[38:55, 43:85] = False  # a frame: hole 42 px across
    mask[0:10, 70:80] = True
    mask[0:6, 73:77] = False  # a notch open to the border: not a hole
    out = fill_small_holes(mask, max_extent=20)
    assert out[20, 20] and out[disk((20, 20), 6)].all()  # the ring became a disc
    assert not out[45, 60] and not out[2, 75]  # the wide hole and the open notch stay
    assert (out >= mask).all()
    assert fill_small_holes(np.ones((5, 5), bool), max_extent=3).all()


def test_a_vesicular_nucleus_is_found_whole():
    """A pale vesicular nucleus, at 0.5 µm/px a 0.5 µm ring of chromatin on its membrane
    round a pale centre: the opening and the local-mean condition leave the ordinary levels
    nothing of it; the filled level (holes filled before the opening) holds it whole, and
    the detector finds it with the dark nuclei around it; without that level it does not."""
    from wsi_pipeline.evaluation.metrics import overlaps
    from detectors.nuclei.weightfree import WeightFreeParams

    rng = np.random.default_rng(0)
    size = 160
    truth = np.zeros((size, size), np.int32)
    conc = np.full((size, size), 0.04)
    for k, (cy, cx) in enumerate([(25, 25), (25, 135), (135, 25), (135, 135), (80, 30)], start=1):
        rr, cc = disk((cy, cx), 6.5, shape=truth.shape)
        truth[rr, cc], conc[rr, cc] = k, 0.8
    yy, xx = np.mgrid[:size, :size]
    r = np.hypot(yy - 80, xx - 90)
    ring_nucleus = r <= 10  # 10 µm across
    truth[ring_nucleus], conc[ring_nucleus] = 6, 0.1
    conc[ring_nucleus & (r > 9)] = 0.7
    rgb = _he(conc, rng)
    det = WeightFreeNucleiDetector(device="cpu", mpp=0.5)
    levels, _, _ = det.level_labels(rgb)
    assert len(levels) == len(det.params.levels) + 1
    best = [overlaps(ring_nucleus.astype(np.int32), lab).iou.max() if lab.max() else 0.0 for lab in levels]
    assert best[0] >= 0.9 and max(best[1:]) < 0.5, best
    tp = {}
    for filled in (1.0, 0.0):
        d = WeightFreeNucleiDetector(device="cpu", mpp=0.5, params=WeightFreeParams(filled_level=filled))
        tp[filled] = score_labels(truth, rasterise(d.predict(rgb).geometry, truth.shape)).at(0.5)["tp"]
    assert tp == {1.0: 6, 0.0: 5}
