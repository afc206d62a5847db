"""Normal skin (CMU-1-Small-Region): `run` then `report` say "no tumour found", exit 0, no margin headline."""

from __future__ import annotations

import json

import pytest

from wsi_pipeline.cli import main


@pytest.mark.slow
def test_normal_skin_is_no_tumour_found(shared_data, tmp_path, capsys):
    svs = shared_data / "slides" / "CMU-1-Small-Region.svs"
    if not svs.is_file():
        pytest.skip(f"{svs} not found")
    assert main(["run", str(svs), "--out", str(tmp_path), "--device", "cpu", "--diagnosis", "melanoma"]) == 0
    results = tmp_path / "CMU-1-Small-Region"
    summary = json.loads((results / "summary.json").read_text())
    assert summary["counts"]["synoptic"] == {"lesion": "no tumour found"}
    assert not (results / "synoptic.json").exists() and not (results / "margins.json").exists()
    capsys.readouterr()

    assert main(["report", str(svs), "--results", str(results), "--diagnosis", "melanoma"]) == 0
    out = capsys.readouterr().out
    headline = out.splitlines()[0]
    assert headline.startswith("No tumour found") and "margin:" not in headline.lower()
    assert "Closest margin" not in out and "INVOLVED" not in out and "CLEAR" not in out
    data = json.loads((results / "synoptic.json").read_text())
    assert data["lesion"]["found"] is False
    assert data["summary"]["closest_margin"] is None and data["summary"]["pT"] is None
    assert data["margins"]["closest"] is None
