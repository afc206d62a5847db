"""Synthetic region truth: the five classes partition the tissue; the inflammation focus is a
dense lymphoid aggregate in the dermis that the renderer paints dark."""

from __future__ import annotations

import json

import numpy as np
import pytest
import shapely

from wsi_pipeline.annotations import read_geojson
from wsi_pipeline.synthetic import build_scene, render_region
from wsi_pipeline.synthetic.nuclei import LYMPHOCYTE
from wsi_pipeline.synthetic.regions import REGION_LABELS, region_geometries, region_label_map
from wsi_pipeline.synthetic.truth import write_truth

MPP = 0.25
MM2 = (MPP * 1e-3) ** 2


@pytest.fixture(scope="module")
def demo_like():
    """The conftest slide's scene (6144 x 4096 at 0.25 um/px, seed 0), truth written once."""
    return build_scene(6144, 4096, mpp=MPP, seed=0)


def test_regions_partition_the_tissue(demo_like, tmp_path):
    write_truth(demo_like, tmp_path)
    feats = read_geojson(tmp_path / "regions.geojson").features
    assert [f.classification for f in feats] == ["Epidermis", "Dermis", "Tumor", "Inflammation", "Other"]
    assert all(f.object_type == "annotation" for f in feats)
    geoms = [f.geometry for f in feats]
    tissue = demo_like.tissue
    union = shapely.union_all(geoms)
    assert abs(union.area - tissue.area) < 1e-4 * tissue.area
    assert union.symmetric_difference(tissue).area < 1e-4 * tissue.area
    for i in range(len(geoms)):
        for j in range(i + 1, len(geoms)):
            assert geoms[i].intersection(geoms[j]).area < 1e-6 * tissue.area, (feats[i].classification, feats[j].classification)
    for f in feats:
        assert f.measurements["Area mm^2"] == pytest.approx(f.geometry.area * MM2, abs=2e-6)
    by = {f.classification: f.geometry for f in feats}
    # Epidermis is the nucleated layer only: the keratin (Other) lies above it, apart
    assert by["Other"].area == pytest.approx(demo_like.keratin.area, rel=1e-3)
    assert by["Epidermis"].intersection(demo_like.keratin).area < 1e-6 * tissue.area
    assert by["Tumor"].symmetric_difference(demo_like.tumor).area < 1e-6 * tissue.area
    summary = json.loads((tmp_path / "scene.json").read_text())
    assert summary["regions_mm2"]["Inflammation"] == pytest.approx(by["Inflammation"].area * MM2, abs=2e-6)
    assert set(summary["tumor_inked_edge_distances_um"]) == {"blue", "black"}


def test_label_map_matches_the_polygons(demo_like):
    labels = region_label_map(demo_like, downsample=32)
    assert labels.shape == (128, 192) and labels.dtype == np.uint8
    geoms = region_geometries(demo_like)
    px_mm2 = (32 * MPP * 1e-3) ** 2
    for name, value in REGION_LABELS.items():
        assert (labels == value).sum() * px_mm2 == pytest.approx(geoms[name].area * MM2, rel=0.15, abs=0.002)
    assert (labels == 0).mean() > 0.2  # glass around the excision


def test_inflammation_focus_is_a_dense_aggregate_in_the_dermis(demo_like):
    focus = demo_like.inflammation
    x0, y0, x1, y1 = focus.bounds
    assert 150 <= (x1 - x0) * MPP <= 300 and 80 <= (y1 - y0) * MPP <= 300
    assert focus.distance(demo_like.epidermis) * MPP >= 80
    assert focus.distance(demo_like.tumor) * MPP >= 150
    assert demo_like.tissue.buffer(-100 / MPP).contains(focus)
    nuc = demo_like.nuclei
    inside = shapely.contains_xy(focus, nuc.x, nuc.y)
    lymph = inside & (nuc.kind == LYMPHOCYTE)
    density = lymph.sum() / (focus.area * MM2)
    assert density > 10000  # packed: a real aggregate, not scattered cells
    assert lymph.sum() >= 0.95 * inside.sum()
    dermis = region_geometries(demo_like)["Dermis"]
    in_dermis = shapely.contains_xy(dermis, nuc.x, nuc.y)
    dermis_density = (in_dermis & (nuc.kind == LYMPHOCYTE)).sum() / (dermis.area * MM2)
    assert density > 10 * dermis_density


def test_focus_leaves_the_rest_of_the_scene_alone(demo_like):
    plain = build_scene(6144, 4096, mpp=MPP, seed=0, inflammation=False)
    assert plain.inflammation is None
    assert not region_geometries(plain)["Inflammation"].geoms
    assert plain.tumor.equals(demo_like.tumor) and plain.epidermis.equals(demo_like.epidermis)
    far = demo_like.inflammation.buffer(40 / MPP)  # the focus and its halo

    def outside(sc):
        keep = ~shapely.contains_xy(far, sc.nuclei.x, sc.nuclei.y)
        return np.column_stack([sc.nuclei.x[keep], sc.nuclei.y[keep]])

    assert np.array_equal(outside(plain), outside(demo_like))


def test_focus_renders_as_dark_small_round_nuclei(demo_like):
    c = demo_like.inflammation.centroid
    rgb = render_region(demo_like, int(c.x) - 150, int(c.y) - 100, 300, 200).astype(np.float32)
    focus_dark = (rgb.mean(axis=2) < 120).mean()
    p = demo_like.inflammation.centroid
    away = region_geometries(demo_like)["Dermis"].buffer(-300)
    q = away.representative_point()
    ref = render_region(demo_like, int(q.x) - 150, int(q.y) - 100, 300, 200).astype(np.float32)
    dermis_dark = (ref.mean(axis=2) < 120).mean()
    assert focus_dark > 0.2 and focus_dark > 4 * dermis_dark, (focus_dark, dermis_dark, p)
