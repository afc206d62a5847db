"""Outline redrawing shared by the nucleus detectors (detectors/nuclei/outlines.py)."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from scipy import ndimage

from detectors.nuclei.outlines import OutlineRefinement, refine_instances
from detectors.nuclei.weightfree import WeightFreeParams

STROMA, NUCLEUS = np.array((236, 188, 214), float), np.array((88, 58, 140), float)


def disks_image(size: int, centres, radius: float) -> np.ndarray:
    """(size, size, 3) uint8: pink stroma with hematoxylin disks of ``radius`` px, edges blurred 1 px."""
    yy, xx = np.mgrid[:size, :size]
    inside = np.zeros((size, size))
    for cy, cx in centres:
        inside = np.maximum(inside, ((yy - cy) ** 2 + (xx - cx) ** 2 <= radius ** 2).astype(float))
    inside = ndimage.gaussian_filter(inside, 1.0)
    img = STROMA[None, None] * (1 - inside[..., None]) + NUCLEUS[None, None] * inside[..., None]
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def disk_labels(size: int, discs) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    labels = np.zeros((size, size), np.int32)
    for i, (cy, cx, r) in enumerate(discs, start=1):
        labels[(yy - cy) ** 2 + (xx - cx) ** 2 <= r ** 2] = i
    return labels


def test_lengths_in_microns_are_the_weightfree_settings_at_its_resolution():
    wf, ref = WeightFreeParams(), OutlineRefinement()
    px = ref.pixels(0.25)
    assert (px["reach"], px["ring"], px["sigma"], px["grow"]) == (wf.refine_reach, wf.ring, wf.sigma, wf.grow)
    assert ref.alpha == wf.refine and ref.ray_smooth == wf.ray_smooth and ref.eosin_weight == wf.eosin_weight
    half = ref.pixels(0.5)
    assert half["ring"] == wf.ring // 2 and half["sigma"] == wf.sigma / 2 and half["reach"] >= 1
    assert OutlineRefinement.from_dict({**ref.to_dict(), "unknown": 1}) == ref


def test_outlines_move_to_the_edge_in_the_image():
    """A label drawn too small grows towards the disk, one drawn too large shrinks towards it
    (each moves at least half way; growth is limited by ``reach_um``)."""
    size, r = 96, 8.0
    img = disks_image(size, [(30, 30), (66, 66)], r)
    labels = disk_labels(size, [(30, 30, 5.5), (66, 66, 10.5)])
    polys, ids = refine_instances(labels, img, mpp=0.25, refinement=OutlineRefinement(), max_radius=40)
    assert list(ids) == [1, 2]
    truth = np.pi * r * r
    before = np.bincount(labels.ravel())[1:]
    assert before[0] < 0.5 * truth and before[1] > 1.6 * truth
    for g, b in zip(polys, before):
        assert g.is_valid and abs(g.area - truth) < 0.5 * abs(b - truth), (g.area, b, truth)
    # centred on the disks
    c = shapely.centroid(polys)
    np.testing.assert_allclose(np.c_[shapely.get_x(c), shapely.get_y(c)], [[30.5, 30.5], [66.5, 66.5]], atol=1.0)


def test_an_object_with_no_nucleus_under_it_is_dropped():
    size = 96
    img = disks_image(size, [(30, 30)], 8.0)
    labels = disk_labels(size, [(30, 30, 8), (70, 70, 8)])  # the second lies on flat stroma
    img[50:, 50:] = STROMA.astype(np.uint8)  # exactly flat: nothing exceeds its rim level
    polys, ids = refine_instances(labels, img, mpp=0.25, refinement=OutlineRefinement(), max_radius=40)
    assert list(ids) == [1] and len(polys) == 1


@pytest.mark.parametrize("mpp", [0.25, 0.5])
def test_empty_labels_give_no_polygons(mpp):
    polys, ids = refine_instances(np.zeros((32, 32), np.int32), np.full((32, 32, 3), 200, np.uint8), mpp=mpp,
                                  refinement=OutlineRefinement(), max_radius=20)
    assert len(polys) == 0 and len(ids) == 0


def test_only_holes_of_a_single_object_are_filled():
    from detectors.nuclei.watershed import fill_own_holes

    labels = np.zeros((20, 30), np.int32)
    labels[2:9, 2:9] = 1
    labels[4:7, 4:7] = 0  # a hole inside object 1
    labels[10:19, 2:20] = 2  # objects 2 and 3 enclose a gap together
    labels[10:19, 20:28] = 3
    labels[13:16, 17:23] = 0
    out = fill_own_holes(labels)
    assert (out[4:7, 4:7] == 1).all()
    assert (out[13:16, 17:23] == 0).all()
    assert np.array_equal(out[labels > 0], labels[labels > 0])
