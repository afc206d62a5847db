"""StarDist's NMS in torch (detectors/stardist/nms.py) against exact geometry and stardist's own."""

from pathlib import Path

import numpy as np
import pytest
import shapely
import torch

from detectors.stardist.nms import intersection_areas, nms_sparse, polygon_areas, resolve_greedy

TRAINED = Path(__file__).parent / "fixtures" / "stardist" / "trained_synthetic"


def random_candidates(n, seed, extent=200):
    rng = np.random.default_rng(seed)
    points = rng.integers(0, extent, (n, 2)).astype(np.int64)
    dist = (rng.uniform(3, 12, (n, 1)) * rng.uniform(0.6, 1.4, (n, 32))).astype(np.float32)
    prob = rng.uniform(0.5, 1, n).astype(np.float32)
    return points, dist, prob


def star_polygons(points, dist):
    phi = np.arange(dist.shape[1]) * 2 * np.pi / dist.shape[1]
    return [shapely.Polygon(np.stack([p[1] + d * np.cos(phi), p[0] + d * np.sin(phi)], 1))
            for p, d in zip(points, dist)]


def exact_greedy(points, dist, prob, thresh):
    """The sequential rule with exact (shapely) intersections: indices kept, in rank order."""
    polys = star_polygons(points, dist)
    tree = shapely.STRtree(polys)
    order = np.argsort(-prob, kind="stable")
    rank = np.empty(len(prob), int)
    rank[order] = np.arange(len(prob))
    suppressed, kept = np.zeros(len(prob), bool), []
    for i in order:
        if suppressed[i]:
            continue
        kept.append(i)
        for j in tree.query(polys[i]):
            if rank[j] > rank[i] and not suppressed[j]:
                inter = polys[i].intersection(polys[j]).area
                suppressed[j] |= inter / min(polys[i].area, polys[j].area) > thresh
    return np.array(kept)


def test_areas_and_intersections_match_exact_geometry():
    points, dist, _ = random_candidates(200, seed=1, extent=30)
    polys = star_polygons(points, dist)
    t_pts, t_dist = torch.from_numpy(points).float(), torch.from_numpy(dist)
    np.testing.assert_allclose(polygon_areas(t_dist).numpy(), [p.area for p in polys], rtol=1e-5)
    a, b = torch.arange(0, 200, 2), torch.arange(1, 200, 2)
    areas = polygon_areas(t_dist)
    first_smaller = areas[a] <= areas[b]  # the NMS samples the smaller polygon of a pair
    a, b = torch.where(first_smaller, a, b), torch.where(first_smaller, b, a)
    exact = np.array([polys[i].intersection(polys[j]).area for i, j in zip(a.tolist(), b.tolist())])
    smaller = np.minimum([polys[i].area for i in a.tolist()], [polys[j].area for j in b.tolist()])
    assert exact.max() > 0.5 * smaller.max()  # the pairs really overlap
    for m, tol in ((4, 0.05), (16, 0.005)):  # nms.COARSE_ERROR for m = 4
        got = intersection_areas(t_pts, t_dist, a, b, m=m).numpy()
        assert (np.abs(got - exact) / smaller).max() < tol


def test_greedy_rounds_give_the_sequential_result():
    # 0 suppresses 1, 1 would suppress 2: 1 is gone, so 2 stays; 3 is suppressed by 2
    keep = resolve_greedy(4, torch.tensor([0, 1, 2]), torch.tensor([1, 2, 3]))
    assert keep.tolist() == [True, False, True, False]
    assert resolve_greedy(3, torch.empty(0, dtype=torch.long), torch.empty(0, dtype=torch.long)).all()


@pytest.mark.parametrize("thresh", [0.3, 0.5])
def test_nms_equals_the_exact_sequential_rule(thresh):
    points, dist, prob = random_candidates(600, seed=2)
    got = nms_sparse(torch.from_numpy(dist), torch.from_numpy(prob), torch.from_numpy(points), nms_thresh=thresh)
    expected = exact_greedy(points, dist, prob, thresh)
    assert 100 < len(expected) < 500
    assert got.tolist() == expected.tolist()


def test_nms_agrees_with_stardist():
    """stardist clips polygons with integer (pixel-rounded) vertices, so a few borderline
    overlaps come out the other way; all but a handful of the kept candidates are the same."""
    from stardist.nms import non_maximum_suppression_sparse

    points, dist, prob = random_candidates(600, seed=3)
    *_, ref = non_maximum_suppression_sparse(dist, prob, points, nms_thresh=0.4)
    got = nms_sparse(torch.from_numpy(dist), torch.from_numpy(prob), torch.from_numpy(points), nms_thresh=0.4)
    common = len(set(ref.tolist()) & set(got.tolist()))
    assert common >= 0.95 * max(len(ref), len(got))


@pytest.mark.skipif(not (TRAINED / "weights_best.h5").is_file(), reason="trained_synthetic fixture absent")
def test_detector_with_torch_nms_finds_the_same_nuclei():
    from detectors.stardist import load_stardist_model
    from wsi_pipeline.training.synthetic import synthetic_nuclei

    det = load_stardist_model(TRAINED, device="cpu", tile_size=256, halo=32, max_object_size=64)
    assert det.nms == "stardist"  # the CPU default
    tile, _ = synthetic_nuclei((256, 256), seed=101)
    ref = det.predict(tile)
    torch_det = det.with_nms("torch")
    got = torch_det.predict(tile)
    assert "NMS in torch" in torch_det.description and len(ref) > 10
    tree = shapely.STRtree(list(got.geometry))
    matched = 0
    for g in ref.geometry:
        ious = [g.intersection(h).area / g.union(h).area for h in got.geometry[tree.query(g)]]
        matched += max(ious, default=0) >= 0.9
    assert matched >= 0.98 * len(ref) and abs(len(got) - len(ref)) <= 0.02 * len(ref)
