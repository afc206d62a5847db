"""The weight-free detector at 0.5 µm/px (its default in a run) and the CPU fast paths of its steps."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
import torch
import torch.nn.functional as F
from PIL import Image

from detectors.nuclei.polygons import rasterise
from detectors.nuclei.watershed import _dilate3, gaussian_blur, h_maxima, label_means
from detectors.nuclei.weightfree import WeightFreeNucleiDetector, WeightFreeParams
from tests.test_nuclei_weightfree import synthetic_he
from wsi_pipeline.detection import WEIGHTFREE_MPP, build_nuclei_detector, nuclei_factory, working_mpp
from wsi_pipeline.evaluation import score_labels


def test_params_scale_with_the_resolution():
    p = WeightFreeParams()
    assert p.at_mpp(0.25) is p
    q = p.at_mpp(0.5)
    assert q.sigma == pytest.approx(p.sigma / 2) and q.local_sigma == pytest.approx(p.local_sigma / 2)
    assert q.min_area == round(p.min_area / 4) and q.level_min_area == round(p.level_min_area / 4)
    assert q.area_unit == pytest.approx(p.area_unit / 4) and q.marker_h == pytest.approx(p.marker_h / 2)
    assert q.ring == p.ring // 2 and q.open_radius == 1 and q.max_radius == round(p.max_radius / 2)
    # lengths never round to nothing, and what was off stays off
    r = WeightFreeParams(open_radius=0, ring=1).at_mpp(1.0)
    assert r.open_radius == 0 and r.ring == 1
    # unitless settings do not change
    assert (q.threshold_factor, q.levels, q.min_score, q.node_score) == (p.threshold_factor, p.levels, p.min_score,
                                                                         p.node_score)


def test_detector_at_half_resolution_finds_the_same_nuclei():
    """The synthetic tile (0.25 µm/px) box-averaged to 0.5 µm/px: the detector at 0.5 finds the
    drawn nuclei, and their areas in µm² match the ones found at 0.25."""
    rgb, truth = synthetic_he(512, seed=3, n=40)
    small = np.asarray(Image.fromarray(rgb).resize((256, 256), Image.Resampling.BOX))
    fine = WeightFreeNucleiDetector(device="cpu").predict(rgb)
    det = WeightFreeNucleiDetector(device="cpu", mpp=0.5)
    assert det.spec.mpp == 0.5 and det.spec.halo == 40 and det.spec.max_object_size == 40
    coarse = det.predict(small)
    back = shapely.transform(coarse.geometry, lambda c: c * 2)  # pixel-edge coordinates: x 2
    s = score_labels(truth, rasterise(back, truth.shape))
    assert s.at(0.5)["f1"] >= 0.9, s.to_dict()
    assert s.aji >= 0.7, s.to_dict()
    a_fine = np.median(fine.measurements["Area µm^2"])
    a_coarse = np.median(coarse.measurements["Area µm^2"])
    assert abs(a_coarse - a_fine) / a_fine < 0.15
    # with_params keeps the resolution
    assert det.with_params(min_score=0.4).spec.mpp == 0.5


def test_bad_mpp_is_refused():
    with pytest.raises(ValueError, match="mpp"):
        WeightFreeNucleiDetector(device="cpu", mpp=-1.0)


def test_working_resolution_never_upsamples():
    assert working_mpp(0.25) == WEIGHTFREE_MPP == 0.5
    assert working_mpp(0.499) == 0.5  # a 20x slide runs at 0.5 (within 2%)
    assert working_mpp(1.0) == 1.0  # a 10x slide is not upsampled
    assert working_mpp(0.25, 0.25) == 0.25  # asked for explicitly
    assert working_mpp(None) == 0.5


def test_factory_carries_the_resolution_through_calibration():
    from wsi_pipeline.detection import calibrated

    class _Slide:
        mpp = (0.25, 0.25)

    factory, note = nuclei_factory("weightfree", "cpu", slide=_Slide())
    assert "0.5 µm/px" in note
    det = factory()
    assert det.spec.mpp == 0.5
    rgb, _ = synthetic_he(256, seed=1, n=10)
    again = calibrated(factory, det, rgb[None])()
    assert again.spec.mpp == 0.5 and again.threshold is not None
    assert build_nuclei_detector("weightfree-fast", None, "cpu", mpp=1.0).spec.mpp == 1.0


def test_cpu_gaussian_blur_equals_the_convolution():
    x = torch.rand(2, 1, 50, 40)
    for sigma in (0.5, 1.0, 5.0):
        r = max(1, int(np.ceil(3 * sigma)))
        t = torch.arange(-r, r + 1, dtype=torch.float32)
        k = torch.exp(-0.5 * (t / sigma) ** 2)
        k = k / k.sum()
        ref = F.conv2d(F.pad(x, (r, r, 0, 0), mode="reflect"), k.view(1, 1, 1, -1))
        ref = F.conv2d(F.pad(ref, (0, 0, r, r), mode="reflect"), k.view(1, 1, -1, 1))
        assert torch.allclose(gaussian_blur(x, sigma), ref, atol=1e-6), sigma


def _h_maxima_reference(x: torch.Tensor, h: float, min_value: float) -> torch.Tensor:
    rec = (x - h).clamp(min=0.0)
    while True:
        nxt = torch.minimum(_dilate3(rec), x)
        if torch.equal(nxt, rec):
            break
        rec = nxt
    return (x - rec >= h - 1e-4) & (x >= min_value)


def test_h_maxima_with_shrinking_boxes_equals_plain_reconstruction():
    """Long ridges need many steps; the shrinking work box must give the plain result."""
    from scipy import ndimage

    rng = np.random.default_rng(0)
    m = ndimage.gaussian_filter(rng.random((3, 1, 120, 90)), (0, 0, 3, 3)) > 0.5
    m[1, 0, 60:62, :] = True  # a long thin bridge
    d = np.stack([ndimage.distance_transform_edt(m[i, 0]) for i in range(3)])[:, None].astype(np.float32)
    x = torch.from_numpy(d) + torch.from_numpy(rng.random(d.shape).astype(np.float32)) * 0.2 * torch.from_numpy(m)
    for h in (0.25, 0.5, 1.0):
        got = h_maxima(x, h=h, min_value=1.0, check_every=4)
        assert torch.equal(got, _h_maxima_reference(x, h, 1.0)), h


def test_label_means_cpu():
    lab = torch.tensor([[0, 1, 1], [2, 2, 0], [0, 0, 4]])
    vals = torch.tensor([[9.0, 1.0, 3.0], [4.0, 6.0, 9.0], [9.0, 9.0, 7.0]])
    assert label_means(lab, vals, 4).tolist() == [2.0, 5.0, 0.0, 7.0]


def test_fill_holes_equals_scipy():
    from scipy import ndimage

    from detectors.nuclei.watershed import fill_holes

    rng = np.random.default_rng(2)
    for i in range(5):
        m = ndimage.gaussian_filter(rng.random((70, 90)), 1.5 + i) > 0.5
        assert np.array_equal(fill_holes(m), ndimage.binary_fill_holes(m))
    assert np.array_equal(fill_holes(np.ones((4, 4), bool)), np.ones((4, 4), bool))
    ring = np.zeros((7, 7), bool)
    ring[1:6, 1:6] = True
    ring[3, 3] = False
    assert fill_holes(ring)[3, 3] and not fill_holes(ring)[0, 0]
