"""Issue 4, whole slide: the nuclei of a tiled run equal those of an untiled run (weight-free
detector, and StarDist with outlines redrawn)."""

from __future__ import annotations

import numpy as np
import pytest
import shapely

from detectors.base import Instances
from detectors.nuclei.weightfree import WeightFreeNucleiDetector
from tiling import ArraySlide
from tiling.grid import tile_grid
from wsi_pipeline.tile_runner import run_inprocess


def _field(size: int) -> np.ndarray:
    from wsi_pipeline.synthetic import build_scene, render_region

    scene = build_scene(3 * size, 2 * size, mpp=0.25, seed=3, marker=False)
    return render_region(scene, size, size // 2, size, size)  # dermis, tumour nest and epidermis


def _run(slide, detector, tile_size: int) -> Instances:
    spec = detector.spec
    tiles = tile_grid(slide.dimensions, slide_mpp=0.25, working_mpp=spec.mpp, tile_size=tile_size,
                      halo=spec.halo, max_object=spec.max_object_size)
    return Instances.concatenate(list(run_inprocess(slide, detector, tiles, batch_size=2)))


def _matched_fraction(a: Instances, b: Instances, iou: float = 0.9) -> tuple[float, int]:
    """Fraction of ``b`` matched one-to-one in ``a`` at IoU >= iou, and duplicates in ``a``."""
    tree = shapely.STRtree(a.geometry)
    pairs = tree.query(b.geometry, predicate="intersects")
    inter = shapely.area(shapely.intersection(b.geometry[pairs[0]], a.geometry[pairs[1]]))
    union = shapely.area(shapely.union(b.geometry[pairs[0]], a.geometry[pairs[1]]))
    good = inter / union >= iou
    matched_b = np.unique(pairs[0][good])
    used_a = pairs[1][good]
    duplicates = len(used_a) - len(np.unique(used_a))
    return len(matched_b) / max(1, len(b)), duplicates


def _assert_same_nuclei(tiled: Instances, whole: Instances) -> None:
    """>= 99.5 % of each run's nuclei matched in the other at IoU 0.9, and no duplicates."""
    frac, dup = _matched_fraction(tiled, whole)
    frac_back, dup_back = _matched_fraction(whole, tiled)
    assert dup == 0 and dup_back == 0
    assert frac >= 0.995, f"only {frac:.4f} of untiled nuclei found by the tiled run"
    assert frac_back >= 0.995, f"only {frac_back:.4f} of tiled nuclei found by the untiled run"


@pytest.mark.parametrize("size", [pytest.param(2048), pytest.param(4096, marks=pytest.mark.slow)])
def test_tiled_run_equals_untiled_run(size):
    img = _field(size)
    slide = ArraySlide(img, mpp=0.25)
    det = WeightFreeNucleiDetector(device="cpu")
    det.calibrate(img[None, : size // 2, : size // 2])  # one threshold for the whole "slide"
    whole = _run(slide, det, tile_size=size + 2 * det.spec.halo)
    tiled = _run(slide, det, tile_size=512)
    assert len(whole) > 200
    _assert_same_nuclei(tiled, whole)


def test_stardist_with_redrawn_outlines_is_seamless():
    """Redrawing looks ``ring + reach`` px around each object: the halo covers it, so 256-px
    tiles give the nuclei of one untiled run."""
    from pathlib import Path

    from detectors.nuclei.outlines import OutlineRefinement
    from detectors.stardist import compute_percentiles, load_stardist_model

    folder = Path(__file__).parent / "fixtures" / "stardist" / "trained_synthetic"
    if not (folder / "weights_best.h5").is_file():
        pytest.skip("trained_synthetic fixture absent")
    det = load_stardist_model(folder, device="cpu", tile_size=256, halo=48, max_object_size=48)
    det = det.with_refinement(OutlineRefinement())
    size = 1024
    img = _field(size)
    slide = ArraySlide(img, mpp=0.25)
    det = det.with_percentiles(compute_percentiles(img))  # one normalisation for the whole "slide"
    whole = _run(slide, det, tile_size=size + 2 * det.spec.halo)
    tiled = _run(slide, det, tile_size=256)
    assert len(whole) > 100
    _assert_same_nuclei(tiled, whole)


def test_vesicular_nuclei_on_tile_borders_are_seamless():
    """The filled level fills holes only up to ``basin_extent``, so a tile sees the same pale
    ring nuclei as the whole image: rings and dark nuclei scattered over 256-px tiles at
    0.5 µm/px, tiled == untiled."""
    from skimage.draw import disk

    from tests.test_nuclei_tree import _he

    rng = np.random.default_rng(5)
    size = 768
    conc = np.full((size, size), 0.04)
    yy, xx = np.mgrid[:size, :size]
    centres = [(y + rng.uniform(-6, 6), x + rng.uniform(-6, 6)) for y in range(20, size - 10, 31)
               for x in range(20, size - 10, 31)]
    rings = 0
    for k, (cy, cx) in enumerate(centres):
        if k % 3:  # a pale vesicular nucleus: a 1-px ring of chromatin round a pale centre
            r = np.hypot(yy[int(cy) - 12:int(cy) + 13, int(cx) - 12:int(cx) + 13] - cy,
                         xx[int(cy) - 12:int(cy) + 13, int(cx) - 12:int(cx) + 13] - cx)
            patch = conc[int(cy) - 12:int(cy) + 13, int(cx) - 12:int(cx) + 13]
            patch[r <= 10] = 0.1
            patch[(r <= 10) & (r > 9)] = 0.7
            rings += 1
        else:
            conc[disk((cy, cx), 6.5, shape=conc.shape)] = 0.8
    img = _he(conc, rng)
    slide = ArraySlide(img, mpp=0.5)
    det = WeightFreeNucleiDetector(device="cpu", mpp=0.5)
    det.calibrate(img[None, :256, :256])
    spec = det.spec

    def run(tile_size: int) -> Instances:
        tiles = tile_grid(slide.dimensions, slide_mpp=0.5, working_mpp=0.5, tile_size=tile_size, halo=spec.halo,
                          max_object=spec.max_object_size)
        return Instances.concatenate(list(run_inprocess(slide, det, tiles, batch_size=2)))

    whole, tiled = run(size + 2 * spec.halo), run(256)
    assert len(whole) >= 0.9 * len(centres) and rings > 300  # the rings are found (the filled level at work)
    _assert_same_nuclei(tiled, whole)
