"""Why a run made no tissue map is recorded once (``counts.tissue_map``) and read by every
report (:mod:`wsi_pipeline.reasons`): never "no tumour found" where no search was made."""

from __future__ import annotations

import json

from tests.test_stain_check import HE, run_painted
from wsi_pipeline.reasons import no_map, no_map_reason


def test_the_short_reason_is_read_back_from_the_counts():
    said = no_map("its rules are not set on this nuclei model", "give --cell-model and --tissue-model")
    assert said == "not assessed: its rules are not set on this nuclei model; give --cell-model and --tissue-model"
    assert no_map_reason({"tissue_map": said}) == "its rules are not set on this nuclei model"
    assert no_map_reason({}) == "" and no_map_reason({"tissue_map": None}) == ""
    # a summary from before the reason was recorded: the stain check still tells
    old_ihc = {"stain": {"he": False, "checked": True, "pink_fraction": 0.001}}
    assert no_map_reason(old_ihc) == "not an H&E slide, stain check"
    assert no_map_reason({"stain": {"he": True, "checked": True}}) == ""


def test_a_run_with_the_tissue_map_turned_off_does_not_say_no_tumour_found(tmp_path):
    from wsi_pipeline.batch.report import SlideRow, synoptic_columns
    from wsi_pipeline.report.synoptic import build_draft

    off = "regions:\n  enabled: false\nnuclei:\n  enabled: false\nmitosis:\n  enabled: false\n"
    out = run_painted(tmp_path, HE, off)
    summary = json.loads((out / "summary.json").read_text())
    c = summary["counts"]
    assert c["stain"]["he"] is True and not (out / "regions.geojson").exists()
    assert c["tissue_map"] == "not assessed: turned off, regions.enabled false"
    assert c["synoptic"]["lesion"] == "not assessed: no tissue map (turned off, regions.enabled false)"
    assert synoptic_columns(SlideRow("x", "done", 1.0, c))["lesion"].startswith("not assessed: no tissue map")
    draft = build_draft(out, mpp=(0.5, 0.5), frame_px=None, summary=summary)
    assert not draft.assessment.lesion.found
    reasons = [f.reason for f in draft.findings if f.reason]
    assert any("no tissue map: turned off, regions.enabled false" in r for r in reasons), reasons
