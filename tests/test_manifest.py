from pathlib import Path

import pytest

from tiling.errors import InputError
from wsi_pipeline.batch.manifest import read_jobs
from wsi_pipeline.batch.markers import file_checksum, is_complete, write_marker


def _touch(path: Path, data: bytes = b"x") -> Path:
    path.write_bytes(data)
    return path


def test_folder_lists_slides_only(tmp_path: Path):
    _touch(tmp_path / "b.svs")
    _touch(tmp_path / "a.ndpi")
    _touch(tmp_path / "notes.txt")
    jobs = read_jobs(tmp_path)
    assert [j.slide_id for j in jobs] == ["a", "b"]


def test_manifest_metadata_and_relative_paths(tmp_path: Path):
    _touch(tmp_path / "s1.svs")
    m = tmp_path / "m.csv"
    m.write_text("path,specimen_id,body_site,fitzpatrick_type,mpp\ns1.svs,S-01,back,III,0.25\n")
    (job,) = read_jobs(m)
    assert job.path == tmp_path / "s1.svs"
    assert job.slide_id == "S-01"
    assert job.mpp == 0.25
    assert job.metadata == {"specimen_id": "S-01", "body_site": "back", "fitzpatrick_type": "III"}


def test_manifest_refuses_unknown_columns(tmp_path: Path):
    m = tmp_path / "m.csv"
    m.write_text("path,patient_name\ns1.svs,DOE^JANE\n")
    with pytest.raises(InputError, match="unknown manifest column.*patient_name"):
        read_jobs(m)


def test_manifest_bad_mpp_names_the_line(tmp_path: Path):
    m = tmp_path / "m.csv"
    m.write_text("path,mpp\ns1.svs,abc\n")
    with pytest.raises(InputError, match="line 2"):
        read_jobs(m)


def test_deidentified_ids_hide_file_names(tmp_path: Path):
    _touch(tmp_path / "DOE_JANE_1970.svs")
    (job,) = read_jobs(tmp_path, deidentify=True)
    assert "DOE" not in job.slide_id and job.slide_id.startswith("slide-")


def test_marker_matches_only_same_input_and_config(tmp_path: Path):
    f = _touch(tmp_path / "s.svs", b"abc")
    out = tmp_path / "out"
    out.mkdir()
    write_marker(out, checksum=file_checksum(f), config_hash="c1")
    assert is_complete(out, checksum=file_checksum(f), config_hash="c1")
    assert not is_complete(out, checksum=file_checksum(f), config_hash="c2")
    f.write_bytes(b"abd")
    assert not is_complete(out, checksum=file_checksum(f), config_hash="c1")
