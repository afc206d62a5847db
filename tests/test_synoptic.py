"""The synoptic draft on melanoma-like results folders with known answers (µm unless noted).

Skin 6 x 3 mm, surface on top: keratin 0-20 µm (Other), nucleated epidermis 20-100 µm. A
junctional tumour replaces the lower epidermis from 60 µm down, so the granular line is
y = 20 and the Breslow thickness is the tumour's depth below it. Everything is shifted by
:data:`OFF` so the tissue lies inside the scanned area (edges on its border are no margins).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
from shapely import affinity
from shapely.geometry import Point, shape
from shapely.geometry import box as _box

from tiling._array import ArraySlide
from wsi_pipeline.cli import main
from wsi_pipeline.report.breslow import round_tenth_mm
from wsi_pipeline.report.margins.testing import scatter_cells, tissue_image, write_case
from wsi_pipeline.report.staging import pt_category
from wsi_pipeline.report.synoptic import OUTPUTS, build_draft, write_synoptic

MPP = (4.0, 4.0)
OFF = 300.0


def box(x0, y0, x1, y1):
    return affinity.translate(_box(x0, y0, x1, y1), OFF, OFF)


SKIN = box(0, 0, 6_000, 3_000)
SIZE_PX = (1_650, 900)
INKS = {"black": [box(0, 2_900, 6_000, 3_100)], "blue": [box(-100, 300, 100, 3_000)]}
MODEL = {"regions_model": {"model": "tissue-unet-v1", "trained": True}}
# the run's slide-wide densest field (9 per mm²) is not the tumour's rate: the draft counts the invasive part
VALIDATED = {"counts": {"mitoses_validated": True, "mitoses_per_mm2": 9.0, "mitosis_model": "cnn",
                        "mitotic_rate": {"value": 9.0, "area_mm2": 1.0, "assessed": True, "reason": None}}}
# mitoses (µm before OFF): 4 in the invasive nest, 3 in basal keratinocytes beside it, 2 in distant dermis
NEST_MITOSES = [(2_600, 300), (2_700, 420), (2_900, 500), (3_100, 250)]
OTHER_MITOSES = [(1_000, 90), (1_100, 95), (4_200, 92), (5_000, 1_500), (5_100, 1_550)]


def mitoses(points):
    return [(x + OFF, y + OFF) for x, y in points]
UNVALIDATED = {"counts": {"mitoses_validated": False, "mitoses_per_mm2": None, "mitotic_rate": {
    "value": None, "assessed": False, "reason": "not assessed: no validated mitosis model"}}}


def melanoma_case(folder, *, depth_um, ulcer=None, til="brisk", drawn=None, summary=None, tumour=True, mitoses=None):
    """A results folder; returns the tumour (µm). ulcer : (x0, x1) of an ulcer over the tumour."""
    nest = box(2_500, 60, 3_500, 20 + depth_um)
    tissue = SKIN
    keratin, epidermis = box(0, 0, 6_000, 20), box(0, 20, 6_000, 100).difference(nest)
    if ulcer is not None:
        void = box(ulcer[0], -50, ulcer[1], 60)
        tissue, keratin, epidermis = tissue.difference(void), keratin.difference(void), epidermis.difference(void)
    regions = {"Other": [keratin], "Epidermis": [epidermis],
               "Dermis": [tissue.difference(box(0, 0, 6_000, 100)).difference(nest)]}
    if tumour:
        regions["Tumor"] = [nest]
    invasive = nest.difference(box(0, 0, 6_000, 100))
    cells = scatter_cells(invasive, "Tumor", spacing_um=14, seed=1)
    if til == "brisk":
        cells += scatter_cells(invasive, "Lymphocyte", spacing_um=20, seed=2)
    elif til == "non-brisk":
        cells += scatter_cells(Point(2_800 + OFF, 400 + OFF).buffer(50), "Lymphocyte", spacing_um=20, seed=3)
    cells += scatter_cells(box(4_000, 1_500, 4_300, 1_700), "Lymphocyte", spacing_um=8, seed=4)  # dermal aggregate
    write_case(folder, mpp=MPP, tissue=[tissue], inks=INKS, tumour=drawn, regions=regions, regions_properties=MODEL,
               cells=cells, summary=summary, mitoses=mitoses)
    return nest


def _slide():
    return ArraySlide(tissue_image([SKIN], mpp=MPP, size_px=SIZE_PX), mpp=MPP)


def _find(draft_or_dict, name):
    findings = draft_or_dict["findings"] if isinstance(draft_or_dict, dict) else [f.to_dict() for f in draft_or_dict.findings]
    return next(f for f in findings if f["name"] == name)


def test_ulcerated_brisk_melanoma_pt2b(tmp_path, artifacts_dir):
    melanoma_case(tmp_path, depth_um=1_240, ulcer=(2_800, 3_200), til="brisk", summary=VALIDATED,
                  mitoses=mitoses(NEST_MITOSES + OTHER_MITOSES))
    out = write_synoptic(_slide(), tmp_path, diagnosis="Melanoma")
    assert set(OUTPUTS) <= set(out["files"]) and all((tmp_path / n).is_file() for n in out["files"])
    breslow = _find(out, "Breslow thickness")
    assert breslow["value"] == 1.2 and breslow["source"] == "model"
    assert 1_225 <= breslow["details"]["measured_um"] <= 1_241  # the corner under the granular line, or the ulcer base
    ulcer = _find(out, "Ulceration")
    assert ulcer["value"] is True and ulcer["details"]["length_mm"] == pytest.approx(0.4, abs=0.02)
    assert _find(out, "Tumour-infiltrating lymphocytes")["value"] == "brisk"
    rate = _find(out, "Mitotic rate")  # the nest is 1.16 mm² below the epidermis: its densest 1 mm² field
    assert rate["value"] == 4.0 and rate["details"]["mitoses_in_field"] == 4 and rate["details"]["epidermis_excluded"]
    assert rate["display"] == "4 per mm² (densest 1 mm² of the invasive component, around a hotspot)"
    assert _find(out, "pT (AJCC 8th)")["value"] == "pT2b"
    assert out["diagnosis"] == {"value": "melanoma", "stated_by": "user"}
    # the ulcer base is skin surface, not an involved uninked margin; the headline is the deep ink
    assert out["headline"] == "Closest margin: 1.7 mm to black ink (deep). CLEAR."
    assert _find(out, "Peripheral margin")["value"] == pytest.approx(2.5, abs=0.01)
    assert out["margins"]["epidermal_surface"]["identified"]
    assert out["caveat"].startswith("Computer-assisted draft")
    line = np.asarray(out["breslow_line_px"]) * MPP[0]
    assert line[1][1] == pytest.approx(1_260 + OFF, abs=3)  # the deepest point is on the tumour's floor
    geo = json.loads((tmp_path / "synoptic.geojson").read_text())
    classes = {f["properties"]["classification"]["name"] for f in geo["features"]}
    assert {"Breslow thickness", "Ulceration", "Mitotic rate field"} <= classes
    field = next(f for f in geo["features"] if f["properties"]["classification"]["name"] == "Mitotic rate field")
    area_um2 = shape(field["geometry"]).area * MPP[0] * MPP[1]
    assert area_um2 == pytest.approx(1e6, rel=0.01) and field["properties"]["measurements"]["Mitoses"] == 4
    assert json.loads((tmp_path / "synoptic.json").read_text())["summary"]["pT"] == "pT2b"
    assert (tmp_path / "synoptic_report.pdf").read_bytes().startswith(b"%PDF")
    page = (tmp_path / "synoptic_report.html").read_text()
    assert "to be confirmed by the pathologist" in page and "Breslow thickness" in page
    (artifacts_dir / "synoptic_ulcerated.pdf").write_bytes((tmp_path / "synoptic_report.pdf").read_bytes())


def test_thin_non_brisk_melanoma_pt1a(tmp_path):
    melanoma_case(tmp_path, depth_um=520, til="non-brisk", summary=UNVALIDATED)
    draft = build_draft(tmp_path, mpp=MPP, diagnosis="melanoma")
    assert _find(draft, "Breslow thickness")["value"] == 0.5
    assert draft.breslow.thickness_um == pytest.approx(520, abs=3)
    x0, y0, x1, y1 = draft.breslow.line.bounds
    assert x1 - x0 < 5 and y0 == pytest.approx(20 + OFF, abs=3)  # perpendicular: straight down from the granular line
    assert _find(draft, "Ulceration")["value"] is False
    tils = _find(draft, "Tumour-infiltrating lymphocytes")
    assert tils["value"] == "non-brisk" and tils["details"]["lymphocytes_in_invasive_tumour"] > 0
    assert _find(draft, "pT (AJCC 8th)")["value"] == "pT1a"
    rate = _find(draft, "Mitotic rate")
    assert rate["value"] is None and rate["display"] == "not assessed" and "validated" in rate["reason"]


def test_mitotic_rate_counts_the_invasive_component_only(tmp_path):
    """AJCC: the dermal (invasive) component's mitoses; under 1 mm² all of them, as per mm².
    Basal keratinocytes dividing in the epidermis and mitoses in distant dermis do not count."""
    melanoma_case(tmp_path, depth_um=520, summary=VALIDATED, mitoses=mitoses(NEST_MITOSES[:3] + OTHER_MITOSES))
    draft = build_draft(tmp_path, mpp=MPP, diagnosis="melanoma")
    rate = _find(draft, "Mitotic rate")
    assert rate["value"] == 3.0 and rate["details"]["invasive_mm2"] == pytest.approx(0.48, abs=0.01)
    assert rate["display"] == "3 per mm² (all 3 mitoses of the invasive component, 0.48 mm² < 1 mm²)"
    assert rate["details"]["slide_hotspot_per_mm2"] == 9.0
    from wsi_pipeline.batch.report import SlideRow, synoptic_columns

    assert synoptic_columns(SlideRow("s", "done", 1.0, {"synoptic": draft.summary()}))["tumour_mitoses_per_mm2"] == "3"


def test_mitotic_rate_not_assessed_without_a_tumour_or_the_mitoses_file(tmp_path):
    melanoma_case(tmp_path / "a", depth_um=520, summary=VALIDATED, tumour=False, mitoses=mitoses(OTHER_MITOSES))
    rate = _find(build_draft(tmp_path / "a", mpp=MPP, diagnosis="melanoma"), "Mitotic rate")
    assert rate["value"] is None and rate["reason"].startswith("no tumour found: the rate is counted in the invasive")
    melanoma_case(tmp_path / "b", depth_um=520, summary=VALIDATED)  # validated run, mitoses.geojson gone
    rate = _find(build_draft(tmp_path / "b", mpp=MPP, diagnosis="melanoma"), "Mitotic rate")
    assert rate["value"] is None and rate["reason"].startswith("mitoses.geojson missing")


def test_thin_wide_tumour_counts_1_mm2_of_tumour_not_a_square():
    """A thin invasive band (5 x 0.25 mm) with 6 mitoses along 3 mm: the count extends over
    1 mm² of tumour around the hotspot (4 mm of the band: all 6), where a 1 x 1 mm square would
    hold 1 mm of the band (0.25 mm² of tumour) and 3 of them."""
    from shapely.geometry import box as plain_box

    from wsi_pipeline.report.mitotic_rate import count_invasive

    band = plain_box(0, 0, 5_000, 250)
    pts = np.array([(500, 100), (1_000, 120), (1_400, 90), (2_000, 150), (2_600, 100), (3_200, 130),
                    (4_950, 240), (200, 400)])  # the last two: the band's far end, outside the band
    counted = count_invasive(pts, band, 1.0)
    assert counted.count == 6 and counted.rate == 6.0 and counted.invasive_mm2 == pytest.approx(1.25)
    assert counted.field.area == pytest.approx(1e6, rel=0.01) and band.contains(counted.field.buffer(-1))
    in_band = pts[:6]
    square = max(int(((in_band[:, 0] >= x) & (in_band[:, 0] < x + 1_000)).sum()) for x in in_band[:, 0])
    assert square == 3


def test_densest_tumour_field_matches_brute_force():
    """The field around each mitosis holds 1 mm² of tumour; the best one has the most mitoses
    (checked against shapely's own areas on circles around every mitosis)."""
    from shapely.geometry import Point as P

    from wsi_pipeline.report.mitotic_rate import densest_tumour_field

    rng = np.random.default_rng(5)
    tumour = P(1_500, 1_500).buffer(1_400).difference(P(2_300, 1_500).buffer(600))  # a crescent, 4.6 mm²
    pts = rng.uniform(100, 2_900, (200, 2))
    pts[:8] = rng.uniform(600, 900, (8, 2))  # a cluster
    pts = pts[[tumour.contains(P(*p)) for p in pts]][:60]
    count, field = densest_tumour_field(pts, tumour, 1e6)
    assert field.area == pytest.approx(1e6, rel=0.01) and tumour.buffer(1).contains(field)
    assert count == sum(field.buffer(1).contains(P(*p)) for p in pts)

    def best_around(p):  # radius whose circle holds 1 mm² of tumour, by bisection on exact areas
        lo, hi = 0.0, 5_000.0
        for _ in range(40):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if tumour.intersection(P(*p).buffer(mid, quad_segs=64)).area < 1e6 else (lo, mid)
        return int((np.hypot(*(pts - p).T) <= hi).sum())

    assert count == max(best_around(p) for p in pts)
    assert densest_tumour_field(np.zeros((0, 2)), tumour, 1e6) == (0, None)


def test_tumour_transected_at_the_deep_margin_is_at_least_and_no_pt(tmp_path):
    """A tumour cut by the deep (inked) edge goes on below it: Breslow is a minimum ("at
    least"), and pT is not drafted from a minimum (its lower bound is in the reason)."""
    melanoma_case(tmp_path, depth_um=2_980, summary=UNVALIDATED)  # the nest's floor is the deep black edge
    draft = build_draft(tmp_path, mpp=MPP, diagnosis="melanoma")
    breslow = _find(draft, "Breslow thickness")
    assert breslow["value"] == 3.0 and breslow["display"].startswith("at least 3.0 mm")
    assert breslow["details"]["at_least"] is True and breslow["details"]["transected_at"] == "black ink (deep)"
    pt = _find(draft, "pT (AJCC 8th)")
    assert pt["value"] is None and pt["display"] == "not assessed"
    assert "at least pT3a" in pt["reason"] and "transected" in pt["reason"]
    assert draft.summary()["breslow_at_least"] is True and draft.summary()["pT"] is None

    from wsi_pipeline.batch.report import SlideRow, synoptic_columns

    cols = synoptic_columns(SlideRow("s", "done", 1.0, {"synoptic": draft.summary()}))
    assert cols["breslow_mm"] == "at least 3.0" and cols["pT"] == "not assessed"


def test_a_tumour_clear_of_the_deep_edge_is_measured_as_is(tmp_path):
    melanoma_case(tmp_path, depth_um=2_700, summary=UNVALIDATED)  # 0.3 mm above the deep ink
    draft = build_draft(tmp_path, mpp=MPP, diagnosis="melanoma")
    breslow = _find(draft, "Breslow thickness")
    assert breslow["display"] == "2.7 mm" and "at_least" not in breslow["details"]
    assert _find(draft, "pT (AJCC 8th)")["value"] == "pT3a" and draft.summary()["breslow_at_least"] is False


def test_absent_tils_and_no_diagnosis_no_pt(tmp_path):
    melanoma_case(tmp_path, depth_um=2_500, til="absent")
    draft = build_draft(tmp_path, mpp=MPP)
    assert _find(draft, "Tumour-infiltrating lymphocytes")["value"] == "absent"
    assert _find(draft, "Breslow thickness")["value"] == 2.5
    pt = _find(draft, "pT (AJCC 8th)")
    assert pt["value"] is None and "no diagnosis stated" in pt["reason"]
    assert _find(draft, "Mitotic rate")["reason"].startswith("summary.json missing")
    assert draft.summary()["til_grade"] == "absent"


def test_drawn_tumour_wins_and_the_report_says_so(tmp_path):
    drawn = box(1_000, 60, 1_400, 860)  # another place, 0.8 mm deep below the granular line (y = 20)
    melanoma_case(tmp_path, depth_um=1_240, drawn=[drawn])
    draft = build_draft(tmp_path, mpp=MPP, diagnosis="melanoma")
    assert draft.lesion.kind == "drawn" and draft.lesion.source == "annotations.geojson"
    assert _find(draft, "Lesion")["display"].startswith("the Tumor annotation drawn on the slide")
    assert _find(draft, "Breslow thickness")["value"] == 0.8
    assert _find(draft, "Breslow thickness")["source"] == "model"  # drawn tumour, epidermis from the model


def test_no_tumour_found_is_an_answer(tmp_path, capsys):
    melanoma_case(tmp_path / "res", depth_um=500, tumour=False)
    slide = tmp_path / "skin.tif"
    tifffile.imwrite(slide, tissue_image([SKIN], mpp=MPP, size_px=SIZE_PX), tile=(256, 256), photometric="rgb")
    rc = main(["report", str(slide), "--results", str(tmp_path / "res"), "--mpp", str(MPP[0]),
               "--diagnosis", "melanoma"])
    out = capsys.readouterr().out
    assert rc == 0
    assert out.startswith("No tumour found") and "Closest margin" not in out
    data = json.loads((tmp_path / "res" / "synoptic.json").read_text())
    assert data["lesion"]["found"] is False and data["summary"]["closest_margin"] is None
    assert _find(data, "Breslow thickness")["reason"] == "no tumour found"


@pytest.mark.parametrize("args, problem", [
    (["--diagnosis", "melanomma"], "--diagnosis: unknown diagnosis 'melanomma'"),
    (["--lesion", "{tmp}/empty.geojson"], "empty.geojson: holds no polygons"),
    (["--results", "{tmp}/nowhere"], "nowhere: results folder not found"),
    (["--results", "{tmp}/empty_results"], "tissue.geojson: missing"),
    (["--lesion", "{tmp}/points.geojson"], "points.geojson: holds no polygons"),
    (["--lesion", "{tmp}/broken.geojson"], "broken.geojson"),
    (["--lesion", "{tmp}/absent.geojson"], "absent.geojson"),
])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, args, problem):
    melanoma_case(tmp_path / "res", depth_um=500)
    (tmp_path / "empty.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": []}))
    (tmp_path / "points.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [10, 10]},
         "properties": {"classification": {"name": "Tumor"}}}]}))
    (tmp_path / "broken.geojson").write_text('{"type": "FeatureCollection", "features": [')
    (tmp_path / "empty_results").mkdir()
    slide = tmp_path / "skin.tif"
    tifffile.imwrite(slide, tissue_image([SKIN], mpp=MPP, size_px=SIZE_PX), tile=(256, 256), photometric="rgb")
    argv = ["report", str(slide), "--results", str(tmp_path / "res"), "--mpp", str(MPP[0])]
    argv += [a.format(tmp=tmp_path) for a in args]
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc != 0 and err.count("\n") == 1 and problem in err
    for folder in (tmp_path / "res", tmp_path / "empty_results"):
        assert not any((folder / n).exists() for n in (*OUTPUTS, "margins.json", "margin_report.pdf"))


def test_missing_tissue_geojson_names_the_file(tmp_path):
    from tiling.errors import InputError

    with pytest.raises(InputError, match="tissue.geojson: missing"):
        build_draft(tmp_path, mpp=MPP)


@pytest.mark.parametrize("mm, ulcerated, expected", [
    (0.7, False, "pT1a"), (0.7, True, "pT1b"), (0.8, False, "pT1b"), (1.0, False, "pT1b"), (1.1, False, "pT2a"),
    (2.0, True, "pT2b"), (2.1, False, "pT3a"), (4.0, True, "pT3b"), (4.1, True, "pT4b"), (1.5, None, "pT2"),
])
def test_ajcc8_pt(mm, ulcerated, expected):
    assert pt_category(mm, ulcerated) == expected


def test_thickness_rounds_halves_up():
    assert round_tenth_mm(0.75) == 0.8 and round_tenth_mm(0.749) == 0.7 and round_tenth_mm(1.05) == 1.1


def test_epidermis_missed_over_the_tumour_is_not_assessed_and_no_uninked_headline(tmp_path):
    """A map that misses the epidermis over the tumour (it only finds a scrap near the inked
    deep edge): Breslow and ulceration are not assessed (not measured from the deep edge), and
    the uninked top edge the tumour reaches is listed, never the headline."""
    nest = box(2_500, 0, 3_500, 900)  # reaches the top edge (the map took the epidermis for tumour)
    scrap = box(1_000, 2_800, 1_300, 2_880)  # "epidermis" beside the black-inked bottom
    regions = {"Epidermis": [scrap], "Tumor": [nest], "Dermis": [SKIN.difference(nest).difference(scrap)]}
    write_case(tmp_path, mpp=MPP, tissue=[SKIN], inks=INKS, regions=regions,
               regions_properties={"regionsSource": "weight-free"})
    draft = build_draft(tmp_path, mpp=MPP, diagnosis="melanoma")
    assert draft.lesion.proposed
    assert _find(draft, "Breslow thickness")["value"] is None
    assert _find(draft, "Ulceration")["reason"] == "no epidermal surface found over the tumour"
    assert _find(draft, "pT (AJCC 8th)")["value"] is None
    assert _find(draft, "Uninked edge (margin?)")["details"]["status"] == "involved"
    assert draft.headline == "Closest margin: 2.1 mm to black ink (deep). CLEAR."


def test_ulcer_base_under_epidermal_nuclei_is_not_ulcerated():
    """The map may take a thin epidermis over tumour into Tumor; epidermal nuclei at the surface
    keep that stretch out of the ulcer, tumour nuclei (or none) leave the map's call."""
    import numpy as np
    from shapely.geometry import LineString

    from wsi_pipeline.report.skin_surface import Ulcer, ulcers_seen_by_cells

    ulcer = Ulcer(0, LineString([(0, 0), (200, 0)]))  # µm along the surface
    epithelial = np.array([[x, 8.0] for x in range(0, 101, 10)])  # epidermis over the first 100 µm
    tumour = np.array([[x, 10.0] for x in range(130, 201, 10)])  # tumour bare over the last 70 µm
    (kept,) = ulcers_seen_by_cells((ulcer,), epithelial, tumour, within_um=20.0, min_ulcer_um=30.0)
    x0, x1 = sorted(c[0] for c in kept.base.coords)[::len(kept.base.coords) - 1]
    assert 110 <= x0 <= 120 and x1 == 200  # from half-way between the last epithelial and first tumour nucleus
    # all epithelial: no ulcer; none typed nearby: the map's call stands
    assert ulcers_seen_by_cells((ulcer,), np.array([[x, 5.0] for x in range(0, 201, 10)]), np.empty((0, 2)),
                                within_um=20.0, min_ulcer_um=30.0) == ()
    far = ulcers_seen_by_cells((ulcer,), np.array([[100.0, 500.0]]), np.empty((0, 2)), within_um=20.0, min_ulcer_um=30.0)
    assert len(far) == 1 and far[0].length_um == 200


def test_report_geojson_ids_are_the_same_on_rerun(tmp_path):
    """margins.geojson / synoptic.geojson: ids derived from content, so a rerun writes the same file."""
    from shapely.geometry import LineString

    from wsi_pipeline.report.margins._io import GeoFeature, write_features

    feats = [GeoFeature(LineString([(0, 0), (10, 5)]), "Breslow thickness", name="Breslow 0.5 mm"),
             GeoFeature(LineString([(0, 0), (10, 6)]), "Ulceration", name="ulcer")]
    (tmp_path / "b").mkdir()
    (tmp_path / "c").mkdir()
    write_features(tmp_path / "a.geojson", feats)
    write_features(tmp_path / "b" / "a.geojson", feats)
    a, b = (tmp_path / "a.geojson").read_bytes(), (tmp_path / "b" / "a.geojson").read_bytes()
    assert a == b
    ids = [f["id"] for f in json.loads(a)["features"]]
    assert len(set(ids)) == 2
    moved = [GeoFeature(LineString([(0, 0), (10, 7)]), "Breslow thickness", name="Breslow 0.5 mm"), feats[1]]
    write_features(tmp_path / "c" / "a.geojson", moved)
    assert json.loads((tmp_path / "c" / "a.geojson").read_bytes())["features"][0]["id"] != ids[0]


def test_a_slide_that_is_not_h_and_e_says_why_it_has_no_tumour_outline(tmp_path):
    """An IHC slide gets no tissue map (the run's stain check): the draft names the stain rather
    than only "no tissue map"."""
    not_he = {"counts": {"stain": {"he": False, "pink_fraction": 0.002, "checked": True}}}
    write_case(tmp_path / "ihc", mpp=MPP, tissue=[SKIN], summary=not_he)
    draft = build_draft(tmp_path / "ihc", mpp=MPP, diagnosis="melanoma")
    assert _find(draft, "Breslow thickness")["reason"].endswith("no tissue map: not an H&E slide, stain check)")
    assert "not an H&E slide" in _find(draft, "Margins")["reason"]
    write_case(tmp_path / "he", mpp=MPP, tissue=[SKIN], summary={"counts": {}})
    assert _find(build_draft(tmp_path / "he", mpp=MPP), "Breslow thickness")["reason"] == \
        "no tumour outline (no Tumor annotation, no tissue map)"


def test_no_mitosis_in_a_large_invasive_component_is_zero_with_no_field():
    from shapely.geometry import box as plain_box

    from wsi_pipeline.report.mitotic_rate import count_invasive, mitotic_rate_finding

    counted = count_invasive(np.array([(9_000.0, 9_000.0)]), plain_box(0, 0, 2_000, 1_000), 1.0)
    assert counted.count == 0 and counted.field is None
    rate = mitotic_rate_finding(VALIDATED, counted=counted)
    assert rate.value == 0.0 and rate.display == "0 per mm² (no mitosis in the invasive component, 2.00 mm²)"
    assert rate.details["field_um"] is None
