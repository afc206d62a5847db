"""The batch manifest's ``diagnosis`` column: fixed values only, copied into the job metadata."""

from __future__ import annotations

import pytest

from tiling.errors import InputError
from wsi_pipeline.batch.manifest import jobs_from_manifest


def _manifest(tmp_path, rows):
    path = tmp_path / "manifest.csv"
    path.write_text("path,specimen_id,diagnosis\n" + "".join(f"{r}\n" for r in rows))
    return path


def test_diagnosis_column_is_read_and_normalised(tmp_path):
    jobs = jobs_from_manifest(_manifest(tmp_path, ["a.svs,S1,Melanoma", "b.svs,S2,", "c.svs,S3,basal_cell carcinoma"]))
    assert [j.metadata.get("diagnosis") for j in jobs] == ["melanoma", None, "basal cell carcinoma"]


def test_unknown_diagnosis_is_one_line_naming_the_line(tmp_path):
    path = _manifest(tmp_path, ["a.svs,S1,melanoma", "b.svs,S2,Jane Doe melanoma?"])
    with pytest.raises(InputError) as info:
        jobs_from_manifest(path)
    message = str(info.value)
    assert message.startswith(str(path)) and "line 3: unknown diagnosis 'Jane Doe melanoma?'" in message
    assert "\n" not in message
