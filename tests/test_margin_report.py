"""The margins command and its report: outputs, wording, no PHI, atomicity; real and synthetic slides."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import shapely
import tifffile
from shapely.geometry import Point, box, shape

from tiling._array import ArraySlide
from wsi_pipeline.cli import main
from wsi_pipeline.report.margins import assess_margins, load_margin_config
from wsi_pipeline.report.margins.report import CAVEAT, OUTPUTS, write_margin_outputs
from wsi_pipeline.report.margins.testing import tissue_image, write_case

MPP = (8.0, 8.0)  # coarse pixels keep the test slide small: 10 mm = 1250 px
TISSUE = box(400, 400, 10_400, 8_400)  # 10 x 8 mm, 0.4 mm inside the scanned area
INKS = {"blue": [box(2_400, 300, 8_400, 500)], "black": [box(400, 8_300, 10_400, 8_500)]}
PHI_NAME = "DOE_JANE_1970-01-01"  # a file name that could hold patient data


def write_slide(folder, *, tissue=(TISSUE,), mpp=MPP):
    """A tiled TIFF (openslide's generic-tiff) with the tissue painted, named like PHI."""
    image = tissue_image(list(tissue), mpp=mpp, size_px=(1400, 1100))
    path = folder / f"{PHI_NAME}.tif"
    tifffile.imwrite(path, image, tile=(256, 256), photometric="rgb")
    return path


def run(capsys, *argv):
    rc = main(["margins", *map(str, argv)])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_cli_writes_the_four_outputs(tmp_path, capsys, artifacts_dir):
    results = write_case(tmp_path / "res", mpp=MPP, tissue=[TISSUE], inks=INKS, tumour=[Point(5_400, 2_900).buffer(1_000)])
    slide = write_slide(tmp_path)
    rc, out, err = run(capsys, slide, "--results", results, "--mpp", MPP[0], "--specimen-id", "S24-123 A1")
    assert rc == 0, err
    assert "1.5 mm to blue ink (12 o'clock peripheral)" in out
    assert sorted(p.name for p in results.iterdir()) == sorted([*OUTPUTS, "annotations.geojson", "tissue.geojson"])

    report = json.loads((results / "margins.json").read_text())
    assert report["status"] == "ok" and report["specimen_id"] == "S24-123 A1"
    assert report["closest"]["colour"] == "blue"
    assert report["closest"]["clearance_mm"] == pytest.approx(1.5, abs=0.05)
    assert [m["status"] for m in report["margins"]] == ["clear", "clear", "clear"]
    assert CAVEAT in report["caveat"]

    geo = json.loads((results / "margins.geojson").read_text())
    lines = [f for f in geo["features"] if f["properties"].get("name") == "1.5 mm to blue (12 o'clock peripheral)"]
    assert len(lines) == 1 and lines[0]["geometry"]["type"] == "LineString"
    (x0, y0), (x1, y1) = lines[0]["geometry"]["coordinates"]
    assert (y0 - y1) * MPP[1] == pytest.approx(1_500, abs=10)  # in level-0 pixels
    assert lines[0]["properties"]["measurements"]["Clearance mm"] == pytest.approx(1.5, abs=0.01)

    page = (results / "margin_report.html").read_text()
    assert "data:image/png;base64," in page and CAVEAT in page and "S24-123 A1" in page
    assert "12 o&#x27;clock peripheral" in page and "<td>1.5 mm</td>" in page
    pdf = (results / "margin_report.pdf").read_bytes()
    assert pdf.startswith(b"%PDF") and pdf.count(b"/Type /Page\n") + pdf.count(b"/Type /Page ") == 1
    for name in OUTPUTS:  # the slide's file name never reaches an output
        assert PHI_NAME.encode() not in (results / name).read_bytes()
    shutil.copy(results / "margin_report.pdf", artifacts_dir / "margin_report_synthetic_geometry.pdf")


def test_cli_involved_margin(tmp_path, capsys):
    results = write_case(tmp_path / "res", mpp=MPP, tissue=[TISSUE], inks=INKS, tumour=[Point(7_400, 7_900).buffer(1_000)])
    rc, out, _ = run(capsys, write_slide(tmp_path), "--results", results, "--mpp", MPP[0])
    assert rc == 0 and "INVOLVED" in out
    report = json.loads((results / "margins.json").read_text())
    assert report["closest"]["status"] == "involved" and report["closest"]["clearance_mm"] == 0
    assert report["specimen_id"].startswith("not recorded")
    geo = json.loads((results / "margins.geojson").read_text())
    involved = [shape(f["geometry"]) for f in geo["features"] if f["properties"]["classification"]["name"] == "Margin involved"]
    assert sum(g.length for g in involved) * MPP[0] == pytest.approx(2 * (1_000**2 - 500**2) ** 0.5, rel=0.05)
    assert ">involved<" in (results / "margin_report.html").read_text()


def test_cli_no_lesion_exits_zero_with_a_notice(tmp_path, capsys):
    results = write_case(tmp_path / "res", mpp=MPP, tissue=[TISSUE], inks=INKS)
    (results / "summary.json").write_text(json.dumps({"specimen_id": "S24-9 B", "slide": {"mpp": list(MPP)}}))
    rc, _, err = run(capsys, write_slide(tmp_path), "--results", results)  # mpp from summary.json
    assert rc == 0, err
    assert err.count("\n") == 1 and "no lesion found" in err
    report = json.loads((results / "margins.json").read_text())
    assert report["status"] == "no lesion found" and report["closest"] is None
    assert report["specimen_id"] == "S24-9 B"
    assert "No tumour outline" in (results / "margin_report.html").read_text()
    assert (results / "margin_report.pdf").read_bytes().startswith(b"%PDF")


def test_cli_bad_input_is_one_line(tmp_path, capsys):
    results = write_case(tmp_path / "res", mpp=MPP, tissue=[TISSUE], inks=INKS)
    slide = write_slide(tmp_path)
    bad = tmp_path / "margins.yaml"
    bad.write_text("margins:\n  blue: superior\nclose_mn: 2\n")
    rc, _, err = run(capsys, slide, "--results", results, "--mpp", 8, "--config", bad)
    assert rc == 2 and err.strip() == f"wsi-pipeline margins: error: {bad}: unknown key 'close_mn'"
    (results / "tissue.geojson").unlink()
    rc, _, err = run(capsys, slide, "--results", results, "--mpp", 8)
    assert rc == 2 and "tissue.geojson: no such file" in err and err.count("\n") == 1
    assert not any(p.name.startswith(".") for p in results.iterdir())  # no temporary left behind


def test_report_with_two_pieces_and_anisotropic_pixels(tmp_path, artifacts_dir):
    mpp = (8.0, 4.0)
    left, right = box(0, 0, 4_500, 6_000), box(5_500, 500, 10_000, 5_500)
    inks = {"blue": [box(0, -100, 4_500, 100)], "green": [box(4_400, 0, 4_600, 6_000)], "black": [box(5_400, 500, 5_600, 5_500)]}
    results = write_case(tmp_path, mpp=mpp, tissue=[left, right], inks=inks, tumour=[Point(3_000, 3_000).buffer(700)])
    a = assess_margins(results, mpp=mpp, config=load_margin_config())
    assert a.closest.colour == "green" and a.closest.clearance_mm == pytest.approx(0.8, abs=0.01)
    slide = ArraySlide(tissue_image([left, right], mpp=mpp, size_px=(1300, 1600)), mpp=mpp)
    write_margin_outputs(results, a, slide=slide, mpp=mpp, specimen_id="TEST-2")
    report = json.loads((results / "margins.json").read_text())
    assert [p["has_lesion"] for p in report["pieces"]] == [True, False]
    assert next(m for m in report["margins"] if m["colour"] == "black")["status"] == "no lesion in piece"
    shutil.copy(results / "margin_report.pdf", artifacts_dir / "margin_report_two_pieces.pdf")


def test_synthetic_slide_tumour_to_edge(synthetic_slide, tmp_path, capsys, artifacts_dir):
    truth = synthetic_slide.truth_dir
    feats = [f for name in ("tissue.geojson", "ink.geojson") for f in json.loads((truth / name).read_text())["features"]]
    (tmp_path / "tissue.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": feats}))
    rc, _, err = run(capsys, synthetic_slide.path, "--results", tmp_path, "--lesion", truth / "tumor.geojson")
    assert rc == 0, err
    report = json.loads((tmp_path / "margins.json").read_text())
    # independent answer: tumour to the tissue outline, straight from the truth files, in µm
    mpp = synthetic_slide.mpp
    tumour = shapely.union_all([shape(f["geometry"]) for f in json.loads((truth / "tumor.geojson").read_text())["features"]])
    outline = shapely.union_all([shape(f["geometry"]).exterior for f in feats if f["properties"]["classification"]["name"] == "Tissue"])
    assert report["closest"]["clearance_mm"] == pytest.approx(tumour.distance(outline) * mpp / 1000, abs=0.005)
    shutil.copy(tmp_path / "margin_report.pdf", artifacts_dir / "margin_report_synthetic_slide.pdf")


@pytest.mark.shared_data
def test_real_slide_with_drawn_tumour(shared_data, tmp_path, capsys, artifacts_dir):
    """CMU-1-Small-Region (1.1 x 1.5 mm skin): rough tissue mask, hand-drawn tumour, ink from colour."""
    from scipy import ndimage

    from tiling.open import open_slide
    from wsi_pipeline.report.margins.edges import INK_ON_EDGE_UM
    from wsi_pipeline.report.margins.lesion import mask_to_polygons

    svs = shared_data / "slides" / "CMU-1-Small-Region.svs"
    with open_slide(svs) as slide:
        mpp = slide.mpp
        rgb = slide.read_region((0, 0), (555, 742), mpp=mpp[0] * 4).astype(int)  # 4x smaller
    cell = mpp[0] * 4  # µm per thumbnail pixel
    tissue = ndimage.binary_opening(ndimage.binary_closing(rgb.min(axis=2) < 215, iterations=3), iterations=2)
    ink = (rgb[..., 1] > rgb[..., 0] + 30) & (rgb[..., 2] > rgb[..., 0] + 30)  # teal tissue dye
    pieces = mask_to_polygons(tissue, origin=np.zeros(2), cell_um=cell, min_area_um2=0.02e6)
    inks = mask_to_polygons(ndimage.binary_dilation(ink, iterations=2), origin=np.zeros(2), cell_um=cell, min_area_um2=200)
    tumour = shapely.Polygon([(520, 360), (620, 300), (700, 400), (680, 600), (620, 800), (550, 660)])  # µm, by hand
    results = write_case(tmp_path / "CMU-1", mpp=mpp, tissue=pieces, inks={"green": inks}, tumour=[tumour])
    rc, out, err = run(capsys, svs, "--results", results, "--specimen-id", "CMU-1 (public test slide)")
    assert rc == 0, err
    report = json.loads((results / "margins.json").read_text())
    edge = shapely.union_all([p.exterior for p in pieces])
    dye = shapely.union_all(inks)
    assert report["closest"]["colour"] == "green"
    got = report["closest"]["clearance_mm"] * 1000
    # to the edge under the dye: farther than to the edge within reach of the dye (which runs on past
    # the dye's ends), no farther than to the edge the dye touches
    assert tumour.distance(edge.intersection(dye.buffer(INK_ON_EDGE_UM))) <= got
    assert got <= tumour.distance(edge.intersection(dye.buffer(2.0))) + 5
    for name in OUTPUTS:
        assert b"CMU-1-Small-Region" not in (results / name).read_bytes()
    shutil.copy(results / "margin_report.pdf", artifacts_dir / "margin_report_CMU-1.pdf")
    shutil.copy(results / "margin_report.html", artifacts_dir / "margin_report_CMU-1.html")


@pytest.mark.parametrize("source", ["tissue map", "proposal", "annotations.geojson"])
def test_every_line_of_the_page_lies_on_the_page(tmp_path, source):
    """The lesion line under the headline says where the outline comes from and, for a
    proposed one, to review it; it is wrapped, so no text of the A4 page runs off its edge
    (the proposed-outline line ran past the right edge)."""
    from dataclasses import replace

    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from wsi_pipeline.report.margins.picture import read_thumbnail
    from wsi_pipeline.report.margins.report import report_figure

    results = write_case(tmp_path, mpp=MPP, tissue=[TISSUE], inks=INKS, tumour=[Point(5_400, 2_900).buffer(1_000)])
    a = assess_margins(results, mpp=MPP, config=load_margin_config())
    a = replace(a, lesion=replace(a.lesion, source=source))
    assert a.lesion.proposed == (source != "annotations.geojson")
    note = a.lesion.note
    assert note.startswith("Lesion outline PROPOSED by the software (" if a.lesion.proposed else "Lesion outline: ")
    assert "review required" not in note and "((" not in note
    assert note.count("(") == note.count(")") == 1  # no brackets inside brackets
    slide = ArraySlide(tissue_image([TISSUE], mpp=MPP, size_px=(1400, 1100)), mpp=MPP)
    fig = report_figure(a, read_thumbnail(slide, a, mpp=MPP), mpp=MPP, specimen="TEST-3")
    renderer = FigureCanvasAgg(fig).get_renderer()
    page = fig.bbox
    texts = [t for t in fig.texts if t.get_text().strip()]
    assert any(t.get_text().replace("\n", " ") == note for t in texts)
    for t in texts:
        box_ = t.get_window_extent(renderer)
        assert page.x0 <= box_.x0 and box_.x1 <= page.x1, f"runs off the page: {t.get_text()[:60]!r}"
