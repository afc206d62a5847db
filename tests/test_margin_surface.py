"""Margins with a tissue map: the epidermal surface is no margin; where the lesion comes from."""

from __future__ import annotations

import json

import pytest
from shapely.geometry import box

from tiling.errors import InputError
from wsi_pipeline.report.margins import assess_margins
from wsi_pipeline.report.margins.compute import NO_LESION
from wsi_pipeline.report.margins.config import SURFACE, UNINKED, MarginConfig
from wsi_pipeline.report.margins.report import geojson_features, headline
from wsi_pipeline.report.margins.testing import write_case

MPP = (0.5, 0.5)
TISSUE = box(0, 0, 6_000, 3_000)  # 6 x 3 mm; skin surface on top (y = 0)
KERATIN = box(0, 0, 6_000, 20)
EPIDERMIS = box(0, 20, 6_000, 100)
INKS = {"black": [box(0, 2_900, 6_000, 3_100)], "blue": [box(-100, 0, 100, 3_000)]}
NEST = box(2_500, 150, 3_500, 900)  # 0.15 mm under the surface, 2.1 mm from black, 2.5 from blue
CONFIG = MarginConfig(margins={"black": "deep", "blue": "9 o'clock peripheral"})
MODEL = {"regions": {"model": "tissue-unet-v1", "trained": True}}
WEIGHT_FREE = {"regions": {"model": "weight-free tissue map", "trained": False}}


def _regions(tumour=True):
    out = {"Other": [KERATIN], "Epidermis": [EPIDERMIS], "Dermis": [TISSUE.difference(box(0, 0, 6_000, 100))]}
    if tumour:
        out["Tumor"] = [NEST]
    return out


def test_uninked_edge_along_epidermis_is_surface_not_margin(tmp_path):
    write_case(tmp_path, mpp=MPP, tissue=[TISSUE], inks=INKS, regions=_regions(), regions_properties=MODEL)
    a = assess_margins(tmp_path, mpp=MPP, config=CONFIG)
    assert a.lesion.source == "tissue model" and a.lesion.kind == "model" and not a.lesion.proposed
    top = sum(s.line.length for s in a.surface)
    assert top == pytest.approx(6_000, abs=300)  # the top edge (plus the epidermis' cut ends)
    assert all(m.colour != SURFACE for m in a.margins)
    assert a.closest.colour == "black" and a.closest.clearance_mm == pytest.approx(2.1, abs=0.03)
    assert "surface" not in headline(a) and "black ink (deep)" in headline(a)
    right = next(m for m in a.margins if m.colour == UNINKED)  # the uninked right edge is a real margin
    assert right.clearance_mm == pytest.approx(2.5, abs=0.03)
    feats = geojson_features(a, mpp=MPP)
    surface = [f for f in feats if f.classification == "Epidermal surface"]
    assert surface and all(f.name == "epidermal surface" for f in surface)
    assert not any(f.classification.startswith("Margin") and "surface" in (f.name or "") for f in feats)
    d = a.to_dict(MPP)
    assert d["epidermal_surface"]["identified"] and not d["epidermal_surface"]["is_margin"]
    json.dumps(d)


def test_surface_is_margin_when_the_lab_says_so(tmp_path):
    write_case(tmp_path, mpp=MPP, tissue=[TISSUE], inks=INKS, regions=_regions(), regions_properties=MODEL)
    cfg = CONFIG.model_copy(update={"surface_is_margin": True})
    a = assess_margins(tmp_path, mpp=MPP, config=cfg)
    assert a.closest.colour == SURFACE and a.closest.clearance_mm == pytest.approx(0.15, abs=0.01)
    assert headline(a).startswith("Closest margin: 0.1 mm to epidermal surface")


def test_ink_reach_past_its_end_does_not_colour_the_epidermal_surface(tmp_path):
    """Blue ink stops 120 µm below the top-left corner. The nearest-ink rule (150 µm, to bridge
    gaps in detected ink) would colour the top edge blue up to x ~ 190; past the ink's end
    that stretch is not ink, and with the epidermis under it it is surface: the nest (220 µm
    from the inked left edge, 153 µm from the top edge at x = 190) is 0.22 mm from the blue
    margin, not 0.15."""
    inks = {"black": INKS["black"], "blue": [box(-100, 120, 100, 3_000)]}
    nest = box(220, 150, 1_200, 900)
    regions = {"Other": [KERATIN], "Epidermis": [EPIDERMIS], "Tumor": [nest],
               "Dermis": [TISSUE.difference(box(0, 0, 6_000, 100)).difference(nest)]}
    write_case(tmp_path, mpp=MPP, tissue=[TISSUE], inks=inks, regions=regions, regions_properties=MODEL)
    a = assess_margins(tmp_path, mpp=MPP, config=CONFIG)
    blue = next(m for m in a.margins if m.colour == "blue")
    assert blue.clearance_mm == pytest.approx(0.22, abs=0.01)
    assert a.closest.colour == "blue" and "blue ink" in headline(a)
    top_left = box(100, -10, 200, 10)  # where the ink's reach ends on the top edge
    assert any(s.line.intersects(top_left) for s in a.surface)
    # without a map the stretch past the ink's end is no longer blue either (the reach bridges gaps only)
    write_case(tmp_path / "no_map", mpp=MPP, tissue=[TISSUE], inks=inks, tumour=[nest])
    a = assess_margins(tmp_path / "no_map", mpp=MPP, config=CONFIG)
    assert next(m for m in a.margins if m.colour == "blue").clearance_mm == pytest.approx(0.22, abs=0.01)


def test_without_a_map_uninked_edges_stay_out_of_the_headline(tmp_path):
    write_case(tmp_path, mpp=MPP, tissue=[TISSUE], inks=INKS, tumour=[NEST])
    a = assess_margins(tmp_path, mpp=MPP, config=CONFIG)
    assert not a.surface and not a.surface_known
    uninked = next(m for m in a.margins if m.colour == UNINKED)
    assert uninked.clearance_mm == pytest.approx(0.15, abs=0.01)  # listed (it may be a margin)...
    assert a.closest.colour == "black"  # ...but the headline names the closest inked margin


def test_drawn_tumour_wins_over_the_map(tmp_path):
    drawn = box(1_000, 1_500, 1_500, 1_800)  # somewhere else than the map's nest
    write_case(tmp_path, mpp=MPP, tissue=[TISSUE], inks=INKS, tumour=[drawn], regions=_regions(),
               regions_properties=MODEL)
    a = assess_margins(tmp_path, mpp=MPP, config=CONFIG)
    assert a.lesion.source == "annotations.geojson" and a.lesion.kind == "drawn"
    assert a.lesion.foci[0].equals_exact(drawn, 1e-6) or a.lesion.foci[0].symmetric_difference(drawn).area < 1
    assert "drawn" in a.lesion.description
    assert a.closest.colour == "blue" and a.closest.clearance_mm == pytest.approx(1.0, abs=0.03)


def test_weight_free_map_tumour_is_proposed(tmp_path):
    write_case(tmp_path, mpp=MPP, tissue=[TISSUE], inks=INKS, regions=_regions(), regions_properties=WEIGHT_FREE)
    a = assess_margins(tmp_path, mpp=MPP, config=CONFIG)
    assert a.lesion.source == "tissue map" and a.lesion.proposed
    assert "proposed" in a.lesion.label


def test_map_without_tumour_is_no_tumour_found(tmp_path):
    write_case(tmp_path, mpp=MPP, tissue=[TISSUE], inks=INKS, regions=_regions(tumour=False))
    a = assess_margins(tmp_path, mpp=MPP, config=CONFIG)
    assert a.status == NO_LESION and a.closest is None
    assert headline(a).startswith("No tumour found")


def test_lesion_file_without_polygons_is_an_error(tmp_path):
    write_case(tmp_path, mpp=MPP, tissue=[TISSUE], inks=INKS)
    bad = tmp_path / "lesion.geojson"
    bad.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [1, 2]}, "properties": {}}]}))
    with pytest.raises(InputError, match="lesion.geojson: holds no polygons"):
        assess_margins(tmp_path, mpp=MPP, config=CONFIG, lesion_file=bad)


@pytest.mark.parametrize("props, source", [
    ({"regionsSource": "model", "regionsModel": "tissue model skin-v2"}, "model"),
    ({"regionsSource": "weight-free", "regionsModel": "weight-free rules"}, "proposed"),
    ({"regions": {"um_per_px": 8.0, "downsample": 32.0}}, "proposed"),  # names no model: the weight-free map
    ({"regions_model": {"model": "tissue-unet-v1", "trained": True}}, "model"),
    ({"synthetic": True}, "drawn"),
])
def test_map_source_from_the_collection_properties(props, source):
    from wsi_pipeline.report.tissue_map import map_source

    assert map_source(props)[0] == source
