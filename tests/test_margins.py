"""Margin geometry on synthetic cases with known answers (distances in µm unless noted)."""

from __future__ import annotations

import json

import pytest
import shapely
from shapely.geometry import Point, Polygon, box

from tiling.errors import InputError
from wsi_pipeline.report.margins import assess_margins, load_margin_config
from wsi_pipeline.report.margins.compute import CLEAR, CLOSE, INVOLVED, NO_LESION, NOT_ASSESSED
from wsi_pipeline.report.margins.config import MarginConfig
from wsi_pipeline.report.margins.lesion import PROPOSED
from wsi_pipeline.report.margins.testing import scatter_nuclei, write_case

MPP = (0.5, 0.5)
TISSUE = box(0, 0, 10_000, 8_000)  # 10 x 8 mm
BLUE = box(2_000, -100, 8_000, 100)  # ink along the top edge
BLACK = box(0, 7_900, 10_000, 8_100)  # ink along the bottom edge
INKS = {"blue": [BLUE], "black": [BLACK]}


@pytest.fixture(scope="module")
def config() -> MarginConfig:
    return load_margin_config()


def margin(assessment, colour):
    return next(m for m in assessment.margins if m.colour == colour)


def test_lesion_1_5_mm_from_blue_edge(tmp_path, config):
    tumour = Point(5_000, 2_500).buffer(1_000)  # top of the circle is 1500 µm below the top edge
    write_case(tmp_path, mpp=MPP, tissue=[TISSUE], inks=INKS, tumour=[tumour])
    a = assess_margins(tmp_path, mpp=MPP, config=config)
    assert a.status == "ok"
    assert a.closest.colour == "blue"
    assert a.closest.clearance_mm == pytest.approx(1.5, abs=0.05)
    assert a.closest.status == CLEAR
    assert a.closest.label() == "1.5 mm to blue (12 o'clock peripheral)"
    assert margin(a, "black").clearance_mm == pytest.approx(4.5, abs=0.05)
    edge_x, edge_y = a.closest.approach.edge_point
    assert edge_y == pytest.approx(0, abs=1) and 2_000 <= edge_x <= 8_000
    d = a.to_dict(MPP)
    assert d["closest"]["closest"]["edge_point_px"][1] == pytest.approx(0, abs=2)
    json.dumps(d)  # serialisable


def test_close_threshold_from_config(tmp_path):
    write_case(tmp_path, mpp=MPP, tissue=[TISSUE], inks=INKS, tumour=[Point(5_000, 2_500).buffer(1_000)])
    a = assess_margins(tmp_path, mpp=MPP, config=MarginConfig(margins={"blue": "superior"}, close_mm=2.0))
    assert a.closest.status == CLOSE
    assert a.closest.name == "superior"


def test_lesion_touching_or_crossing_edge_is_involved(tmp_path, config):
    touching = Point(2_000, 7_000).buffer(1_000)  # touches the black (deep) edge at one point
    crossing = Point(7_000, 7_500).buffer(1_000)  # runs over it
    write_case(tmp_path, mpp=MPP, tissue=[TISSUE], inks=INKS, tumour=[touching, crossing])
    a = assess_margins(tmp_path, mpp=MPP, config=config)
    deep = margin(a, "black")
    assert deep.status == INVOLVED
    assert deep.clearance_mm == 0
    assert deep.involved_length_um == pytest.approx(2 * (1_000**2 - 500**2) ** 0.5, rel=0.05)
    assert a.closest is deep
    assert a.closest.label() == "involved: black (deep)"
    assert margin(a, "blue").status == CLEAR
    assert [f.nearest.status for f in a.foci] == [INVOLVED, INVOLVED]


def test_two_pieces_lesion_measured_in_its_own_piece(tmp_path, config):
    left = box(0, 0, 5_000, 5_000)
    right = box(5_300, 0, 10_300, 5_000)  # 300 µm gap: the right piece's edge is near the tumour
    tumour = Point(4_000, 2_500).buffer(500)  # 500 µm from left piece's right edge, 800 from the right piece
    inks = {"black": [box(4_950, 0, 5_050, 5_000)], "blue": [box(5_250, 0, 5_350, 5_000)]}
    write_case(tmp_path, mpp=MPP, tissue=[left, right], inks=inks, tumour=[tumour])
    a = assess_margins(tmp_path, mpp=MPP, config=config)
    assert len(a.pieces) == 2
    assert sorted(a.lesion_by_piece) == [a.pieces.index(next(p for p in a.pieces if p.bounds[0] == 0))]
    assert a.closest.colour == "black" and a.closest.clearance_mm == pytest.approx(0.5, abs=0.01)
    assert margin(a, "blue").status == NOT_ASSESSED and margin(a, "blue").clearance_mm is None
    pieces = a.to_dict(MPP)["pieces"]
    assert sorted(p["has_lesion"] for p in pieces) == [False, True]


def test_two_foci_each_get_their_nearest_margin(tmp_path, config):
    near_top = Point(5_000, 1_500).buffer(500)  # 1.0 mm from blue
    near_bottom = Point(5_000, 6_000).buffer(500)  # 1.5 mm from black
    write_case(tmp_path, mpp=MPP, tissue=[TISSUE], inks=INKS, tumour=[near_top, near_bottom])
    a = assess_margins(tmp_path, mpp=MPP, config=config)
    assert len(a.foci) == 2
    got = sorted((f.nearest.colour, round(f.nearest.clearance_mm, 2)) for f in a.foci)
    assert got == [("black", 1.5), ("blue", 1.0)]


def test_holes_are_not_margins(tmp_path, config):
    follicle = Point(5_000, 4_000).buffer(400)
    tissue = Polygon(TISSUE.exterior.coords, [follicle.exterior.coords])
    tumour = Point(5_000, 4_900).buffer(300)  # 200 µm from the hole, 2.8 mm from the black edge
    write_case(tmp_path, mpp=MPP, tissue=[tissue], inks=INKS, tumour=[tumour])
    a = assess_margins(tmp_path, mpp=MPP, config=config)
    assert a.closest.clearance_mm == pytest.approx(2.8, abs=0.01)
    assert a.closest.colour == "black"
    assert sum(s.line.length for s in a.segments) == pytest.approx(TISSUE.exterior.length, rel=1e-6)


def test_no_lesion_gives_a_clear_status(tmp_path, config):
    write_case(tmp_path, mpp=MPP, tissue=[TISSUE], inks=INKS)
    a = assess_margins(tmp_path, mpp=MPP, config=config)
    assert a.status == NO_LESION
    assert a.closest is None
    assert {m.status for m in a.margins} == {NOT_ASSESSED}
    assert a.to_dict(MPP)["status"] == "no lesion found"


def test_anisotropic_pixels(tmp_path, config):
    mpp = (0.5, 0.25)  # pixels twice as tall in µm as... half as tall: y distances in px double
    tumour = Point(3_000, 2_500).buffer(1_000)  # 1.5 mm below the top (blue), 2.0 mm from the left
    write_case(tmp_path, mpp=mpp, tissue=[TISSUE], inks={"blue": [BLUE], "green": [box(-100, 0, 100, 8_000)]},
               tumour=[tumour])
    a = assess_margins(tmp_path, mpp=mpp, config=config)
    assert margin(a, "blue").clearance_mm == pytest.approx(1.5, abs=0.05)
    assert margin(a, "green").clearance_mm == pytest.approx(2.0, abs=0.05)
    assert a.closest.colour == "blue"
    # the closest edge point comes back in pixels: 2500-1000-1500 -> y 0 px; x 3000 µm / 0.5 = 6000 px
    px = a.to_dict(mpp)["closest"]["closest"]["edge_point_px"]
    assert px == pytest.approx([6_000, 0], abs=2)


def test_edge_on_the_scan_border_is_not_a_margin(tmp_path, config):
    tissue = box(0, 1_000, 5_000, 4_000)  # cut by the left border of the scanned area
    tumour = Point(700, 2_500).buffer(400)  # 0.3 mm from the cut, 1.1 mm from top and bottom
    write_case(tmp_path, mpp=MPP, tissue=[tissue], tumour=[tumour])
    a = assess_margins(tmp_path, mpp=MPP, config=config, frame_px=(0, 0, 20_000, 20_000))
    assert {s.colour for s in a.segments} == {"uninked", "scan border"}
    assert [m.colour for m in a.margins] == ["uninked"]
    assert a.closest.clearance_mm == pytest.approx(1.1, abs=0.01)
    assert assess_margins(tmp_path, mpp=MPP, config=config).closest.clearance_mm == pytest.approx(0.3, abs=0.01)


def test_edges_split_by_nearest_ink(tmp_path):
    cfg = MarginConfig(margins={"blue": "12 o'clock"}, ink_distance_um=150, profile_step_um=20)
    write_case(tmp_path, mpp=MPP, tissue=[TISSUE], inks={"blue": [BLUE]}, tumour=[Point(5_000, 4_000).buffer(500)])
    a = assess_margins(tmp_path, mpp=MPP, config=cfg)
    blue = [s for s in a.segments if s.colour == "blue"]
    assert len(blue) == 1
    x0, _, x1, _ = blue[0].line.bounds
    # the reach bridges gaps only: the inked stretch ends where the ink does (sampled every 10 µm)
    assert x0 == pytest.approx(2_000, abs=10) and x1 == pytest.approx(8_000, abs=10)
    assert {s.colour for s in a.segments} == {"blue", "uninked"}
    assert margin(a, "uninked").name == "uninked edge"


def test_ink_reach_bridges_a_gap_in_the_ink(tmp_path):
    cfg = MarginConfig(margins={"blue": "12 o'clock"}, ink_distance_um=150, profile_step_um=20)
    patchy = [box(2_000, -100, 4_900, 100), box(5_100, -100, 8_000, 100)]  # 200 µm unpainted in the middle
    write_case(tmp_path, mpp=MPP, tissue=[TISSUE], inks={"blue": patchy}, tumour=[Point(5_000, 600).buffer(100)])
    a = assess_margins(tmp_path, mpp=MPP, config=cfg)
    blue = [s for s in a.segments if s.colour == "blue"]
    assert len(blue) == 1 and blue[0].line.bounds[0] < 2_000 and blue[0].line.bounds[2] > 8_000
    assert a.closest.colour == "blue" and a.closest.clearance_mm == pytest.approx(0.5, abs=0.005)
    # ink found only inside the edge (never within 25 µm of it): its reach still colours the edge
    write_case(tmp_path / "inside", mpp=MPP, tissue=[TISSUE], inks={"blue": [box(2_000, 60, 8_000, 200)]},
               tumour=[Point(5_000, 4_000).buffer(500)])
    a = assess_margins(tmp_path / "inside", mpp=MPP, config=cfg)
    x0, _, x1, _ = next(s for s in a.segments if s.colour == "blue").line.bounds
    assert x0 < 2_000 - 100 and x1 > 8_000 + 100


def test_profile_samples_the_edge(tmp_path, config):
    write_case(tmp_path, mpp=MPP, tissue=[TISSUE], inks=INKS, tumour=[Point(5_000, 2_500).buffer(1_000)])
    a = assess_margins(tmp_path, mpp=MPP, config=config)
    blue = next(p for p in a.profile if p.colour == "blue")
    assert blue.clearance_um.min() == pytest.approx(1_500, abs=5)
    total = sum(len(p.position_um) for p in a.profile)
    assert total >= TISSUE.exterior.length / config.profile_step_um


def test_lesion_file_qupath_export(tmp_path, config):
    write_case(tmp_path, mpp=MPP, tissue=[TISSUE], inks=INKS, tumour=[Point(5_000, 4_000).buffer(100)])
    # an old-style QuPath export: bare list, PathAnnotationObject, unclassified polygon
    poly = shapely.affinity.scale(Point(5_000, 2_500).buffer(1_000), 1 / MPP[0], 1 / MPP[1], origin=(0, 0))
    export = [{"type": "Feature", "id": "PathAnnotationObject", "geometry": shapely.geometry.mapping(poly),
               "properties": {"name": "lesion", "isLocked": False, "measurements": []}}]
    path = tmp_path / "qupath.json"
    path.write_text(json.dumps(export))
    a = assess_margins(tmp_path, mpp=MPP, config=config, lesion_file=path)
    assert a.lesion.source == "lesion file"
    assert a.closest.clearance_mm == pytest.approx(1.5, abs=0.05)


def test_lesion_proposed_from_nuclei(tmp_path, config):
    tissue = box(0, 0, 4_000, 3_000)
    inks = {"blue": [box(0, -100, 4_000, 100)], "black": [box(0, 2_900, 4_000, 3_100)]}
    dense = box(1_250, 750, 2_750, 1_750)  # 1.5 x 1 mm of crowded, large nuclei
    nuclei = scatter_nuclei(tissue.buffer(-100), spacing_um=60, radius_um=2.5, seed=1)  # ~280/mm², ~20 µm²
    nuclei = [n for n in nuclei if not dense.intersects(n)]
    nuclei += scatter_nuclei(dense, spacing_um=15, radius_um=4.5, seed=2)  # ~4400/mm², ~60 µm²
    write_case(tmp_path, mpp=MPP, tissue=[tissue], inks=inks, nuclei=nuclei)
    off = assess_margins(tmp_path, mpp=MPP, config=config)  # opt-in only: it takes epidermis for tumour
    assert not off.lesion.found and off.status == NO_LESION
    config = config.model_copy(update={"proposal": config.proposal.model_copy(update={"enabled": True})})
    a = assess_margins(tmp_path, mpp=MPP, config=config)
    assert a.lesion.proposed and a.lesion.label == PROPOSED
    assert len(a.lesion.foci) == 1
    focus = a.lesion.foci[0]
    assert focus.intersection(dense).area / focus.union(dense).area > 0.85
    assert a.closest.colour == "blue"  # 0.75 mm above, 1.25 mm below
    assert a.closest.clearance_mm == pytest.approx(0.75, abs=0.06)


def test_config_rejects_unknown_keys(tmp_path):
    bad = tmp_path / "m.yaml"
    bad.write_text("margins:\n  blue: superior\nclose_mn: 2\n")
    with pytest.raises(InputError, match="unknown key 'close_mn'"):
        load_margin_config(bad)
    bad.write_text("margins:\n  teal: superior\n")
    with pytest.raises(InputError, match="teal"):
        load_margin_config(bad)
    bad.write_text("proposal:\n  grid: 20\n")
    with pytest.raises(InputError, match="proposal.grid"):
        load_margin_config(bad)


def test_missing_tissue_is_an_input_error(tmp_path, config):
    with pytest.raises(InputError, match="tissue.geojson"):
        assess_margins(tmp_path, mpp=MPP, config=config)


def test_proposal_ignores_nuclei_under_ink(tmp_path):
    """Dark ink on the edge is blob-like; its 'nuclei' must not become a proposed lesion."""
    import numpy as np
    import shapely

    from wsi_pipeline.annotations import Feature, write_geojson
    from wsi_pipeline.report.margins.config import ProposalConfig
    from wsi_pipeline.report.margins.lesion import propose_lesion

    rng = np.random.default_rng(0)
    centres = rng.uniform(0, 1200, size=(3000, 2))  # 300 µm square at 0.25 µm/px: dense
    write_geojson(tmp_path / "nuclei.geojson.gz",
                  [Feature(shapely.Point(x, y).buffer(18), "detection", "Nucleus") for x, y in centres])
    ink = shapely.box(-10, -10, 1210, 1210)
    mpp = (0.25, 0.25)
    assert propose_lesion(tmp_path / "nuclei.geojson.gz", mpp=mpp, config=ProposalConfig())
    assert propose_lesion(tmp_path / "nuclei.geojson.gz", mpp=mpp, config=ProposalConfig(), exclude=ink) == []
