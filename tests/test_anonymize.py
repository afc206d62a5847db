"""anonymize: the copy has no label/macro and no patient properties; pixels unchanged."""

from __future__ import annotations

import numpy as np
import openslide
import pytest
import tifffile

from wsi_pipeline.anonymize import anonymize_slide, scrub_aperio_description
from wsi_pipeline.cli import main
from wsi_pipeline.synthetic import PHI_PROPERTIES, PHI_STRINGS, make_synthetic_slide


def _levels_equal(a, b):
    with openslide.OpenSlide(str(a)) as x, openslide.OpenSlide(str(b)) as y:
        assert x.level_dimensions == y.level_dimensions
        for level, (w, h) in enumerate(x.level_dimensions):
            size = (min(w, 1024), min(h, 1024))
            xa = np.asarray(x.read_region((0, 0), level, size))
            ya = np.asarray(y.read_region((0, 0), level, size))
            assert np.array_equal(xa, ya), f"level {level} differs"
        if "thumbnail" in x.associated_images:
            thumb_x, thumb_y = x.associated_images["thumbnail"], y.associated_images["thumbnail"]
            assert np.array_equal(np.asarray(thumb_x), np.asarray(thumb_y))


def _check_clean(path):
    with openslide.OpenSlide(str(path)) as osr:
        assert set(osr.associated_images) == {"thumbnail"}
        props = dict(osr.properties)
        assert props["openslide.vendor"] == "aperio"
        assert float(props["openslide.mpp-x"]) == pytest.approx(0.25)
        assert props["openslide.objective-power"] == "40"
    text = " ".join(f"{k}={v}" for k, v in props.items())
    for key in PHI_PROPERTIES:
        assert f"aperio.{key}" not in props
    for value in list(PHI_STRINGS) + [v for v in PHI_PROPERTIES.values() if len(v) >= 5]:
        assert value not in text
    raw = path.read_bytes()
    for value in ("DOE^JANE", "DOE_JANE", "S24-12345", PHI_PROPERTIES["User"], "label 480x420", "macro 1500"):
        assert value.encode() not in raw
    with tifffile.TiffFile(path) as tif:  # the chain holds levels and thumbnail only
        assert all(p.is_tiled or i == 1 for i, p in enumerate(tif.pages))


def test_anonymize_synthetic_slide(synthetic_slide, tmp_path):
    out = tmp_path / "copy.svs"
    report = anonymize_slide(synthetic_slide.path, out)
    assert sorted(report.removed_images) == ["label", "macro"]
    assert {"Filename", "Barcode", "Date", "Time", "User", "ScanScope ID"} <= set(report.removed_properties)
    assert "MPP" not in report.removed_properties and "AppMag" not in report.removed_properties
    _check_clean(out)
    _levels_equal(synthetic_slide.path, out)
    raw = synthetic_slide.path.read_bytes()
    assert b"DOE_JANE" in raw  # the source is untouched


def test_anonymize_bigtiff(tmp_path):
    s = make_synthetic_slide(tmp_path, width=1200, height=1100, bigtiff=True, marker=False)
    with tifffile.TiffFile(s.path) as tif:
        assert tif.is_bigtiff
    out = tmp_path / "anon.svs"
    assert main(["anonymize", str(s.path), "--out", str(out)]) == 0
    _check_clean(out)
    _levels_equal(s.path, out)


def test_anonymize_refuses_bad_input(tmp_path, synthetic_slide, capsys):
    png = tmp_path / "x.png"
    from PIL import Image

    Image.new("RGB", (10, 10)).save(png)
    assert main(["anonymize", str(png), "--out", str(tmp_path / "o.svs")]) == 2
    assert "not a TIFF-based slide" in capsys.readouterr().err
    plain = tmp_path / "plain.tif"
    tifffile.imwrite(plain, np.zeros((64, 64, 3), np.uint8))
    assert main(["anonymize", str(plain), "--out", str(tmp_path / "o.svs")]) == 2
    assert "not supported yet" in capsys.readouterr().err
    assert main(["anonymize", str(tmp_path / "missing.svs"), "--out", str(tmp_path / "o.svs")]) == 2
    existing = tmp_path / "exists.svs"
    existing.write_bytes(b"x")
    assert main(["anonymize", str(synthetic_slide.path), "--out", str(existing)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert existing.read_bytes() == b"x"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exists.svs", "plain.tif", "x.png"]


def test_scrub_keeps_resolution_fields():
    text = "Aperio Image Library v1\r\n10x10 JPEG|AppMag = 20|MPP = 0.5|Filename = DOE|Exposure Scale = 1|Barcode = X1"
    new, removed = scrub_aperio_description(text)
    assert new == "Aperio Image Library v1\r\n10x10 JPEG|AppMag = 20|MPP = 0.5|Exposure Scale = 1"
    assert removed == ["Filename", "Barcode"]


@pytest.mark.shared_data
@pytest.mark.parametrize("name", ["CMU-1-Small-Region.svs", "sparse-ihc-jp2k.svs"])
def test_anonymize_real_aperio(shared_data, tmp_path, name):
    src = shared_data / "slides" / name
    if not src.exists():
        pytest.skip(f"{name} not in shared data")
    out = tmp_path / name
    report = anonymize_slide(src, out)
    with openslide.OpenSlide(str(src)) as osr:
        before = set(osr.associated_images)
    assert set(report.removed_images) == before & {"label", "macro"}
    with openslide.OpenSlide(str(out)) as osr:
        assert not set(osr.associated_images) & {"label", "macro"}
        props = dict(osr.properties)
        assert osr.properties["openslide.vendor"] == "aperio"
    for key in ("Filename", "Date", "Time", "User", "ScanScope ID", "ImageID"):
        assert f"aperio.{key}" not in props
    assert "aperio.MPP" in props and "aperio.AppMag" in props
    _levels_equal(src, out)
