"""Slides that are not H&E (no eosin: immunohistochemistry) get tissue and nuclei only; the
H&E-specific numbers are "not assessed", with the reason, in every output."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile

from detectors.tissue.stain import MIN_PINK_FRACTION, check_he
from wsi_pipeline.cli import main

HE = {"glass": (242, 242, 244), "stroma": (232, 160, 200), "nucleus": (95, 60, 150), "brown": (232, 160, 200)}
IHC = {"glass": (242, 242, 244), "stroma": (205, 210, 222), "nucleus": (90, 100, 160), "brown": (140, 90, 50)}


def paint(colours: dict, size=(1500, 2000), seed=0) -> np.ndarray:
    """A tissue ellipse on glass with round nuclei and (for IHC) brown DAB-stained cells."""
    h, w = size
    rng = np.random.default_rng(seed)
    img = np.empty((h, w, 3), np.float32)
    img[:] = colours["glass"]
    yy, xx = np.mgrid[:h, :w]
    tissue = ((xx - w / 2) / (0.4 * w)) ** 2 + ((yy - h / 2) / (0.4 * h)) ** 2 < 1
    img[tissue] = colours["stroma"]
    for k, (cx, cy) in enumerate(rng.uniform(0.25, 0.75, (300, 2)) * (w, h)):
        r = rng.uniform(6, 10)
        disc = (xx[int(cy) - 12:int(cy) + 12, int(cx) - 12:int(cx) + 12] - cx) ** 2 + \
               (yy[int(cy) - 12:int(cy) + 12, int(cx) - 12:int(cx) + 12] - cy) ** 2 < r * r
        img[int(cy) - 12:int(cy) + 12, int(cx) - 12:int(cx) + 12][disc] = colours["brown" if k % 3 == 0 else "nucleus"]
    img += rng.normal(0, 3, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8), tissue


def test_he_and_ihc_colours_are_told_apart():
    he, mask = paint(HE)
    ihc, _ = paint(IHC)
    a, b = check_he(he, mask), check_he(ihc, mask)
    assert a.he is True and a.pink_fraction > 0.9
    assert b.he is False and b.pink_fraction < MIN_PINK_FRACTION
    assert "not an H&E slide" in b.reason and "H&E" in a.reason
    # glass is never counted, and too little tissue abstains
    assert check_he(np.full((100, 100, 3), 242, np.uint8)).he is None
    assert check_he(he, np.zeros(mask.shape, bool)).he is None
    with pytest.raises(ValueError):
        check_he(np.zeros((10, 10), np.uint8))


@pytest.fixture(scope="module")
def ihc_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("ihc")
    img, _ = paint(IHC)
    tifffile.imwrite(root / "melan-a.tif", img, tile=(256, 256), photometric="rgb")
    rc = main(["run", str(root / "melan-a.tif"), "--mpp", "0.5", "--out", str(root / "out"), "--device", "cpu",
               "--diagnosis", "melanoma"])
    return rc, root


def test_an_ihc_slide_gets_tissue_and_nuclei_and_nothing_h_and_e(ihc_run):
    rc, root = ihc_run
    assert rc == 0
    out = root / "out" / "melan-a"
    summary = json.loads((out / "summary.json").read_text())
    c = summary["counts"]
    assert c["stain"]["he"] is False and c["stain"]["checked"] is True
    assert c["nuclei"] > 100 and c["tissue_mm2"] > 0
    assert "cell_types" not in c and summary.get("regions") in (None, {})
    assert c["mitoses_per_mm2"] is None and c["mitotic_rate"]["assessed"] is False
    assert "not an H&E slide" in c["mitotic_rate"]["reason"] and "not an H&E slide" in c["synoptic"]["lesion"]
    assert c["tissue_map"] == "not assessed: not an H&E slide, stain check"
    assert any("not an H&E slide" in n for n in summary["notes"])
    names = {p.name for p in out.iterdir()}
    assert {"tissue.geojson", "nuclei.geojson.gz", "overview.png", "summary.json"} <= names
    assert not names & {"regions.geojson", "mitoses.geojson", "synoptic.json", "margins.json"}


def test_the_batch_report_says_why_nothing_was_assessed(ihc_run):
    from wsi_pipeline.batch.report import SlideRow, synoptic_columns

    _, root = ihc_run
    counts = json.loads((root / "out" / "melan-a" / "summary.json").read_text())["counts"]
    row = SlideRow("melan-a", "done", 1.0, counts)
    cols = synoptic_columns(row)
    assert cols["lesion"].startswith("not assessed") and "H&E" in cols["lesion"]
    assert row.as_csv()["mitoses_per_mm2"] == "not assessed"
    from wsi_pipeline.batch.report import write_reports

    write_reports(root, [row, SlideRow("he-slide", "done", 1.0, {"stain": {"he": True, "checked": True}})])
    page = (root / "batch_report.html").read_text()
    assert "Not H&amp;E: tissue and nuclei only" in page and "<li>melan-a: no eosin" in page and "<li>he-slide" not in page


def run_painted(tmp_path, colours: dict, config: str):
    """``run`` (CPU, 0.5 µm/px) on a small painted slide with the ``config`` YAML: its results folder."""
    img, _ = paint(colours, size=(600, 800))
    tifffile.imwrite(tmp_path / "x.tif", img, tile=(256, 256), photometric="rgb")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(config)
    assert main(["run", str(tmp_path / "x.tif"), "--mpp", "0.5", "--out", str(tmp_path / "o"), "--config", str(cfg),
                 "--device", "cpu"]) == 0
    return tmp_path / "o" / "x"


def test_the_check_can_be_turned_off(tmp_path):
    run_painted(tmp_path, IHC, "tissue:\n  stain_check: false\nnuclei:\n  enabled: false\n"
                               "mitosis:\n  enabled: false\n")
    c = json.loads((tmp_path / "o" / "x" / "summary.json").read_text())["counts"]
    assert c["stain"]["he"] is False and c["stain"]["checked"] is False
    assert "mitotic_rate" not in c and (tmp_path / "o" / "x" / "regions.geojson").is_file()


def test_real_ihc_and_he_slides(shared_data, tmp_path):
    from tiling import open_slide
    from detectors.tissue import detect_tissue

    found = {}
    for name in ("sparse-ihc-jp2k.svs", "CMU-1-Small-Region.svs"):
        path = shared_data / "slides" / name
        if not path.is_file():
            pytest.skip(f"{path} not found")
        with open_slide(path) as s:
            found[name] = detect_tissue(s, device="cpu").stain
    assert found["sparse-ihc-jp2k.svs"].he is False and found["sparse-ihc-jp2k.svs"].pink_fraction < 0.01
    assert found["CMU-1-Small-Region.svs"].he is True and found["CMU-1-Small-Region.svs"].pink_fraction > 0.5
