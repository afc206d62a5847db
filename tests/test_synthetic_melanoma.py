"""Melanoma-like synthetic excisions: exact Breslow thickness, ulceration, TIL grade, pT."""

from __future__ import annotations

import json

import numpy as np
import pytest
import shapely
import shapely.ops

from wsi_pipeline.annotations import read_geojson
from wsi_pipeline.synthetic import build_scene
from wsi_pipeline.synthetic.melanoma import TIL_PER_MM2, ajcc_pt
from wsi_pipeline.synthetic.nuclei import LYMPHOCYTE
from wsi_pipeline.synthetic.regions import region_geometries
from wsi_pipeline.synthetic.truth import write_truth

# (breslow um, ulcer um, TIL grade, slide w, h, mpp, pT): thin at 40x, thick at low power
CASES = [
    (500.0, 0.0, "absent", 6144, 4096, 0.25, "pT1a"),
    (1500.0, 200.0, "non-brisk", 4000, 2800, 1.0, "pT2b"),
    (3200.0, 400.0, "brisk", 5000, 3400, 2.0, "pT3b"),
]


@pytest.fixture(scope="module", params=CASES, ids=lambda c: f"{c[0]:.0f}um-{c[2]}")
def case(request, tmp_path_factory):
    breslow, ulcer, til, w, h, mpp, pt = request.param
    scene = build_scene(w, h, mpp=mpp, seed=3, lesion="melanoma", breslow_um=breslow, ulceration_um=ulcer, til=til,
                        nuclei_density=0.3, vessels=False, marker=False)  # fmt: skip
    folder = tmp_path_factory.mktemp("melanoma")
    write_truth(scene, folder)
    return request.param, scene, folder


def test_breslow_line_is_the_thickness(case):
    (breslow, ulcer, _, _, _, mpp, _), scene, folder = case
    info = json.loads((folder / "scene.json").read_text())["melanoma"]
    assert info["breslow_mm"] == pytest.approx(breslow / 1000, abs=1e-4)
    (line,) = read_geojson(folder / "breslow.geojson").features
    assert line.classification == "Breslow thickness" and line.geometry.geom_type == "LineString"
    assert line.measurements["Thickness mm"] == pytest.approx(breslow / 1000, abs=1e-4)
    assert line.geometry.length * mpp == pytest.approx(breslow, abs=0.5)
    foot, deepest = (shapely.Point(c) for c in line.geometry.coords)
    m = scene.melanoma
    assert scene.tumor.boundary.distance(deepest) < 1.0  # ends on the tumour
    assert m.reference.distance(foot) < 1e-6  # starts on the granular layer / ulcer base
    # the deepest point: no tumour point lies farther from the reference surface
    outline = shapely.get_coordinates(shapely.segmentize(scene.tumor.exterior, 1.0))
    far = shapely.distance(shapely.points(outline), m.reference).max() * mpp
    assert far == pytest.approx(breslow, abs=0.5)
    # measured from the ulcer base when ulcerated, else from the granular layer
    assert info["breslow_measured_from"] == ("ulcer base" if ulcer else "granular layer")


def test_granular_layer_is_the_top_of_the_nucleated_epidermis(case):
    (_, ulcer, _, _, _, mpp, _), scene, _ = case
    regions = region_geometries(scene)
    granular = scene.melanoma.reference
    if ulcer:
        granular = granular.difference(scene.melanoma.ulcer_base.buffer(1.0))
    # it separates keratin (Other) above from nucleated Epidermis below, all along
    probe = shapely.get_coordinates(shapely.segmentize(granular, 20.0 / mpp))
    assert regions["Other"].buffer(1.0).contains(shapely.points(probe)).mean() > 0.98
    assert regions["Epidermis"].buffer(1.0).contains(shapely.points(probe)).mean() > 0.98
    # junctional: the tumour hangs from the epidermis
    assert scene.tumor.distance(regions["Epidermis"]) < 1.0


def test_ulceration(case):
    (_, ulcer, _, _, _, mpp, _), scene, folder = case
    info = json.loads((folder / "scene.json").read_text())["melanoma"]
    assert info["ulceration"] is bool(ulcer)
    assert info["ulcer_length_mm"] == pytest.approx(ulcer / 1000, abs=1e-4)
    if not ulcer:
        assert not (folder / "ulcer.geojson").exists()
        return
    (feat,) = read_geojson(folder / "ulcer.geojson").features
    base = feat.geometry
    assert feat.classification == "Ulceration"
    assert base.length * mpp == pytest.approx(ulcer, abs=0.01)
    assert feat.measurements["Length mm"] == pytest.approx(ulcer / 1000, abs=1e-4)
    # the base is tissue surface, on tumour, with no epidermis or keratin over it
    trim = 10.0 / mpp
    inner = shapely.ops.substring(base, trim, base.length - trim)
    assert scene.tissue.exterior.distance(shapely.Point(inner.interpolate(0.5, normalized=True))) < 1e-3
    assert base.difference(scene.tumor.buffer(0.5)).length < 1.0
    assert scene.epidermis.intersection(inner.buffer(trim)).area < 1e-3 * inner.buffer(trim).area


def test_til_density_follows_the_grade(case):
    (_, _, til, _, _, mpp, _), scene, folder = case
    info = json.loads((folder / "scene.json").read_text())["melanoma"]
    assert info["til_grade"] == til
    nuc = scene.nuclei
    lymph = nuc.kind == LYMPHOCYTE
    in_tumor = shapely.contains_xy(scene.tumor, nuc.x, nuc.y) & lymph
    assert info["til_lymphocytes"] == in_tumor.sum()
    invasive = scene.melanoma.invasive
    if til == "absent":
        assert in_tumor.sum() == 0 and info["til_area_fraction"] == 0
        return
    # the share of 50-um squares of the invasive component that hold a lymphocyte
    step = 50.0 / mpp
    x0, y0, x1, y1 = invasive.bounds
    cells = [shapely.box(x, y, x + step, y + step) for x in np.arange(x0, x1, step) for y in np.arange(y0, y1, step)]
    cells = [c for c in cells if invasive.contains(c)]
    ix = np.floor((nuc.x[in_tumor] - x0) / step).astype(int), np.floor((nuc.y[in_tumor] - y0) / step).astype(int)
    occupied = set(zip(*ix))
    share = np.mean([(int((c.bounds[0] - x0) / step + 0.5), int((c.bounds[1] - y0) / step + 0.5)) in occupied for c in cells])
    density = info["til_per_mm2_invasive"]
    if til == "brisk":  # diffusely through the whole invasive component
        assert share > 0.85 and density > 0.6 * TIL_PER_MM2
        assert info["til_area_fraction"] == 1.0
    else:  # focal
        assert 0 < info["til_area_fraction"] < 0.5 and share < 0.5 and density < 0.5 * TIL_PER_MM2
        assert scene.melanoma.til_region.buffer(1.0).contains(shapely.points(nuc.x[in_tumor], nuc.y[in_tumor])).all()


def test_pt_and_ink_distances(case):
    (*_, pt), scene, folder = case
    info = json.loads((folder / "scene.json").read_text())
    assert info["melanoma"]["pT"] == pt
    (tumor,) = read_geojson(folder / "tumor.geojson").features
    for ink in scene.inks:
        want = tumor.geometry.distance(ink.edge) * scene.mpp
        assert tumor.measurements[f"Distance to {ink.color} inked edge um"] == pytest.approx(want, abs=0.01)
        assert info["tumor_inked_edge_distances_um"][ink.color] == pytest.approx(want, abs=0.01)


def test_regions_partition_a_melanoma_scene(case):
    _, scene, _ = case
    geoms = list(region_geometries(scene).values())
    union = shapely.union_all(geoms)
    assert union.symmetric_difference(scene.tissue).area < 1e-4 * scene.tissue.area
    assert sum(g.area for g in geoms) == pytest.approx(scene.tissue.area, rel=1e-4)


@pytest.mark.parametrize(
    ("mm", "ulcerated", "want"),
    [(0.5, False, "pT1a"), (0.74, False, "pT1a"), (0.75, False, "pT1b"), (0.5, True, "pT1b"), (1.0, False, "pT1b"),
     (1.04, True, "pT1b"), (1.06, False, "pT2a"), (2.0, True, "pT2b"), (2.1, False, "pT3a"), (4.0, True, "pT3b"),
     (4.1, False, "pT4a"), (6.0, True, "pT4b")],
)  # fmt: skip
def test_ajcc_pt(mm, ulcerated, want):
    assert ajcc_pt(mm, ulcerated=ulcerated) == want


def test_bad_melanoma_options():
    kw = {"mpp": 1.0, "lesion": "melanoma", "nuclei_density": 0.05, "marker": False, "vessels": False}
    with pytest.raises(ValueError, match="does not fit"):
        build_scene(2000, 1400, breslow_um=5000, **kw)
    with pytest.raises(ValueError, match="wider than the tumour"):
        build_scene(2000, 1400, breslow_um=400, ulceration_um=900, tumor_radius_um=250, **kw)
    with pytest.raises(ValueError, match="TIL grade"):
        build_scene(2000, 1400, til="many", **kw)
    with pytest.raises(ValueError, match="does not apply"):
        build_scene(2000, 1400, tumor_ink_distance_um=100, **kw)
    with pytest.raises(ValueError, match="unknown lesion"):
        build_scene(2000, 1400, lesion="bcc")


def test_synth_command_writes_a_melanoma(tmp_path, capsys):
    from wsi_pipeline.cli import main
    from wsi_pipeline.synthetic.slide import SyntheticSlide

    args = ["synth", "--out", str(tmp_path), "--width", "1200", "--height", "900", "--mpp", "1.0", "--no-progress",
            "--lesion", "melanoma", "--breslow-um", "300", "--ulceration-um", "100", "--til", "brisk"]  # fmt: skip
    assert main(args) == 0
    assert "Breslow 0.30 mm, ulcerated 0.10 mm, TILs brisk, pT1b" in capsys.readouterr().out
    truth = tmp_path / "synthetic_truth"
    info = json.loads((truth / "scene.json").read_text())
    assert info["melanoma"]["pT"] == "pT1b" and info["scene_options"]["lesion"] == "melanoma"
    (line,) = read_geojson(truth / "breslow.geojson").features
    assert line.geometry.length == pytest.approx(300.0, abs=0.5)
    rebuilt = SyntheticSlide(tmp_path / "synthetic.svs", truth, 1200, 900, 1.0, 0).scene()
    assert rebuilt.melanoma.breslow_line.equals(line.geometry.normalize()) or \
        rebuilt.melanoma.breslow_line.length == pytest.approx(line.geometry.length, abs=1e-6)
    assert main(args[:-6] + ["--lesion", "melanoma", "--breslow-um", "5000"]) == 2
    assert "does not fit" in capsys.readouterr().err
