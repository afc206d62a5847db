"""Batch report columns from the synoptic draft (counts["synoptic"] or synoptic.json)."""

from __future__ import annotations

import csv
import json

from wsi_pipeline.batch.report import SlideRow, write_reports


def test_synoptic_columns_in_the_batch_report(tmp_path):
    done = tmp_path / "s2"
    done.mkdir()
    (done / "synoptic.json").write_text(json.dumps({"summary": {
        "lesion_source": "proposed", "breslow_mm": None, "ulceration": None, "til_grade": None, "pT": None,
        "closest_margin": None, "closest_margin_mm": None}}))
    rows = [
        SlideRow("s1", "done", 1.0, {"synoptic": {
            "lesion_source": "model", "breslow_mm": 1.2, "ulceration": True, "til_grade": "brisk", "pT": "pT2b",
            "closest_margin": "12 o'clock peripheral", "closest_margin_mm": 0.254}}),
        SlideRow("s2", "skipped", 0.0, {}, thumbnail=done / "overview.png"),
        SlideRow("s3", "done", 1.0, {"synoptic": {"lesion_source": "none"}}),
        SlideRow("s4", "failed", 0.0, {}, error="x.svs: no such file"),
    ]
    write_reports(tmp_path, rows)
    with open(tmp_path / "batch_report.csv", newline="") as fh:
        table = {r["slide_id"]: r for r in csv.DictReader(fh)}
    s1 = table["s1"]
    assert (s1["lesion"], s1["breslow_mm"], s1["ulceration"], s1["til_grade"], s1["pT"]) == (
        "model", "1.2", "present", "brisk", "pT2b")
    assert s1["closest_margin_mm"] == "0.25" and s1["closest_margin"] == "12 o'clock peripheral"
    assert table["s2"]["breslow_mm"] == "not assessed" and table["s2"]["lesion"] == "proposed"
    assert table["s3"]["lesion"] == "no tumour found" and table["s3"]["breslow_mm"] == ""
    assert table["s4"]["lesion"] == "" and table["s4"]["error"] == "x.svs: no such file"
    page = (tmp_path / "batch_report.html").read_text()
    assert "<th>Breslow (mm)</th>" in page and "<td>pT2b</td>" in page
    # the failed slides and why come first, above the table
    failed_at, table_at = page.index("Failed (1)"), page.index("<table>")
    assert failed_at < table_at and "<b>s4</b>: <span class='err'>x.svs: no such file</span>" in page[:table_at]
    write_reports(tmp_path, rows[:3])
    assert "Failed (" not in (tmp_path / "batch_report.html").read_text()
