import numpy as np
import pytest

from wsi_pipeline.mitosis_stage import density_map, find_hotspot


def test_hotspot_finds_the_dense_field():
    rng = np.random.default_rng(0)
    mpp = 0.5
    mask = np.ones((100, 160), bool)  # 16 px per mask px -> 2560 x 1600 level-0 px = 1.28 x 0.8 mm
    ds = 16.0
    scattered = rng.uniform([0, 0], [2560, 1600], size=(20, 2))
    cluster = rng.uniform([1800, 900], [2000, 1100], size=(30, 2))
    hs = find_hotspot(np.vstack([scattered, cluster]), mask, ds, slide_mpp=mpp, area_mm2=0.25)
    side = 500 / mpp  # 0.5 mm
    assert hs is not None
    x0, y0, x1, y1 = hs.box
    assert x1 - x0 == pytest.approx(side)
    assert x0 <= 1800 and x1 >= 2000 and y0 <= 900 and y1 >= 1100
    assert hs.count >= 30
    assert hs.rate == pytest.approx(hs.count / 0.25)


def test_hotspot_must_lie_over_tissue():
    mask = np.zeros((100, 100), bool)
    mask[:, :50] = True  # tissue on the left half only
    pts = np.array([[2500.0, 800.0]] * 10)  # on glass, right half
    hs = find_hotspot(pts, mask, 32.0, slide_mpp=1.0, area_mm2=0.25, min_tissue_fraction=0.9)
    assert hs is not None and hs.box[2] <= 1600 + 1e-6  # stays over the left half
    assert hs.count == 0
    assert find_hotspot(pts, np.zeros((10, 10), bool), 32.0, slide_mpp=1.0, area_mm2=0.25) is None


def test_density_map_counts_per_mm2():
    pts = np.array([[10.0, 10.0], [20.0, 20.0], [600.0, 10.0]])
    d = density_map(pts, (1000, 500), slide_mpp=0.5, pixel_um=250)  # 500 px per cell
    assert d.shape == (1, 2)
    assert d[0, 0] == pytest.approx(2 / 0.0625) and d[0, 1] == pytest.approx(1 / 0.0625)


# -- "not assessed" in the reports --------------------------------------------------------
UNVALIDATED = {"mitosis_candidates": 12, "mitoses": None, "mitoses_validated": False, "mitoses_per_mm2": None,
               "mitotic_rate": {"value": None, "area_mm2": 1.0, "assessed": False,
                                "reason": "not assessed: no validated mitosis model; 12 unvalidated candidate(s)"}}
VALIDATED = {"mitosis_candidates": 3, "mitoses": 3, "mitoses_validated": True, "mitoses_per_mm2": 2.0,
             "mitotic_rate": {"value": 2.0, "area_mm2": 1.0, "assessed": True, "reason": None}}


def test_batch_report_says_not_assessed_without_a_validated_model(tmp_path):
    import csv

    from wsi_pipeline.batch.report import SlideRow, write_reports

    rows = [SlideRow("heur", "done", 1.0, dict(UNVALIDATED)), SlideRow("cnn", "done", 1.0, dict(VALIDATED)),
            SlideRow("old", "skipped", 0.0, {"mitoses": 5, "mitoses_validated": False, "mitoses_per_mm2": 7.5}),
            SlideRow("bad", "failed", 0.0, {}, error="x.svs: broken")]
    write_reports(tmp_path, rows)
    with open(tmp_path / "batch_report.csv", newline="") as fh:
        table = {r["slide_id"]: r for r in csv.DictReader(fh)}
    assert (table["heur"]["mitosis_candidates"], table["heur"]["mitoses"], table["heur"]["mitoses_per_mm2"]) == \
        ("12", "not assessed", "not assessed")
    assert (table["cnn"]["mitoses"], table["cnn"]["mitoses_per_mm2"]) == ("3", "2.00")
    # an older summary with a rate from an unvalidated scorer does not get its rate shown
    assert (table["old"]["mitoses"], table["old"]["mitoses_per_mm2"]) == ("not assessed", "not assessed")
    assert table["bad"]["mitoses_per_mm2"] == ""  # nothing ran: blank, not "not assessed"
    html = (tmp_path / "batch_report.html").read_text()
    assert html.count(">not assessed</td>") == 4 and "7.5" not in html
    assert "heur: not assessed: no validated mitosis model" in html and "cnn:" not in html


def test_demo_mitosis_line_gives_a_rate_only_when_validated():
    from wsi_pipeline.commands.demo import mitosis_line

    assert mitosis_line(VALIDATED) == "3; hotspot 2.0 per mm²"
    line = mitosis_line(UNVALIDATED)
    assert line.startswith("not assessed") and "12 unvalidated candidate" in line and "per mm²" not in line
    assert mitosis_line({"mitoses": 4, "mitoses_per_mm2": 3.0}).startswith("not assessed")


def test_unvalidated_reason_reads_inside_the_reports_parentheses():
    """The synoptic and demo print the reason as "not assessed (<reason>)": it carries no
    parentheses of its own, and says what to do and how many candidates there are."""
    from wsi_pipeline.mitosis_stage import mitotic_rate
    from wsi_pipeline.report.mitotic_rate import run_rate

    rate = mitotic_rate(None, validated=False, candidates=47, area_mm2=1.0)
    assert rate["value"] is None and rate["assessed"] is False
    finding = run_rate({"counts": {"mitotic_rate": rate, "mitoses_validated": False, "mitoses_per_mm2": None}})[1]
    assert "(" not in finding.reason and ")" not in finding.reason
    assert "47 unvalidated candidates in mitoses.geojson are" in finding.reason and "--mitosis-model" in finding.reason
    assert "1 unvalidated candidate in" in mitotic_rate(None, validated=False, candidates=1, area_mm2=1.0)["reason"]
