"""Synthetic slide generator: an SVS openslide reads, truth consistent with the pixels."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import numpy as np
import openslide
import pytest
import shapely
from shapely.strtree import STRtree

from wsi_pipeline.annotations import read_geojson
from wsi_pipeline.cli import main
from wsi_pipeline.synthetic import PHI_STRINGS, TRUTH_FILES, build_scene, make_synthetic_slide, render_region


def _truth(slide, name):
    return read_geojson(slide.truth_dir / name).features


def _union(features):
    return shapely.union_all([f.geometry for f in features])


def test_openslide_sees_an_aperio_slide(synthetic_slide):
    with openslide.OpenSlide(str(synthetic_slide.path)) as osr:
        props = osr.properties
        assert props["openslide.vendor"] == "aperio"
        assert float(props["openslide.mpp-x"]) == pytest.approx(0.25)
        assert float(props["openslide.mpp-y"]) == pytest.approx(0.25)
        assert props["openslide.objective-power"] == "40"
        assert osr.level_dimensions[0] == (synthetic_slide.width, synthetic_slide.height)
        assert osr.level_dimensions[1:] == ((1536, 1024), (384, 256))
        assert osr.level_downsamples == pytest.approx((1.0, 4.0, 16.0))
        assert set(osr.associated_images) == {"label", "macro", "thumbnail"}
        assert props["aperio.Barcode"]  # fake PHI is there to be removed by anonymize


def test_level_pixels_are_the_rendered_scene(synthetic_slide):
    scene = synthetic_slide.scene()
    with openslide.OpenSlide(str(synthetic_slide.path)) as osr:
        x, y = 2304, 2560  # dermis, tumour and ink band around here
        got = np.asarray(osr.read_region((x, y), 0, (512, 512)).convert("RGB"), dtype=np.int16)
        want = render_region(scene, x, y, 512, 512).astype(np.int16)
        assert np.abs(got - want).mean() < 3.0  # JPEG q85
        assert got.std() > 15  # not a blank image
        low = np.asarray(osr.read_region((x, y), 1, (128, 128)).convert("RGB"), dtype=np.float32)
        area = want.reshape(128, 4, 128, 4, 3).mean(axis=(1, 3))
        assert np.abs(low - area).mean() < 6.0  # level 1 is the area average of level 0 (JPEG of fine detail)
        bottom = np.asarray(osr.read_region((0, 0), 2, osr.level_dimensions[2]).convert("RGB"))
        assert bottom[-4:].min() > 150  # last strip written (glass, not black)


def test_truth_files_are_consistent(synthetic_slide):
    for name in TRUTH_FILES:
        assert (synthetic_slide.truth_dir / name).is_file()
    tissue = _truth(synthetic_slide, "tissue.geojson")
    tumor = _truth(synthetic_slide, "tumor.geojson")
    ink = _truth(synthetic_slide, "ink.geojson")
    nuclei = _truth(synthetic_slide, "nuclei.geojson")
    mitoses = _truth(synthetic_slide, "mitoses.geojson")
    assert [f.classification for f in tissue] == ["Tissue"]
    assert tissue[0].measurements["Area mm^2"] > 0.3
    assert [f.classification for f in tumor] == ["Tumor"]
    assert sorted(f.classification for f in ink) == ["Ink: black", "Ink: blue"]
    assert {f.extra["inkColor"] for f in ink} == {"black", "blue"}
    assert all(f.object_type == "annotation" for f in tissue + tumor + ink)
    assert len(nuclei) > 500 and all(f.classification == "Nucleus" for f in nuclei)
    assert all(f.object_type == "detection" for f in nuclei + mitoses)
    assert len(mitoses) >= 3 and all(f.geometry.geom_type == "Point" for f in mitoses)

    tissue_geom = _union(tissue).buffer(1.0)
    assert tissue_geom.contains(_union(tumor))
    for f in ink:  # a band inside the tissue, touching its edge
        assert tissue_geom.contains(f.geometry)
        assert f.geometry.distance(tissue[0].geometry.exterior) < 1e-6
        assert f.geometry.area > 0
    centres = np.array([f.geometry.centroid.coords[0] for f in nuclei])
    assert shapely.contains_xy(tissue_geom, centres[:, 0], centres[:, 1]).all()
    for f in mitoses:
        assert tissue_geom.contains(f.geometry)
    types = [f.extra["nucleusType"] for f in nuclei]
    assert {"tumor", "dermal", "epidermal", "mitosis"} <= set(types)
    assert types.count("mitosis") == len(mitoses)
    tumor_geom = _union(tumor)
    in_tumor = shapely.contains_xy(tumor_geom, centres[:, 0], centres[:, 1])
    assert in_tumor.sum() > 50  # a dense nest
    # every mitosis point is the centre of a nucleus of type mitosis
    mit_xy = np.array([f.geometry.coords[0] for f in mitoses])
    mit_nuc = centres[np.array(types) == "mitosis"]
    assert np.abs(np.sort(mit_xy, axis=0) - np.sort(mit_nuc, axis=0)).max() < 0.2


def test_nuclei_do_not_overlap(synthetic_slide):
    polys = np.array([f.geometry for f in _truth(synthetic_slide, "nuclei.geojson")])
    tree = STRtree(polys)
    left, right = tree.query(polys, predicate="intersects")
    pairs = left < right
    overlap = shapely.area(shapely.intersection(polys[left[pairs]], polys[right[pairs]]))
    assert overlap.sum() < 1e-3 * shapely.area(polys).sum()


def test_nuclei_are_dark_in_the_image(synthetic_slide):
    nuclei = _truth(synthetic_slide, "nuclei.geojson")
    rng = np.random.default_rng(0)
    pick = rng.choice(len(nuclei), size=120, replace=False)
    darker = 0
    with openslide.OpenSlide(str(synthetic_slide.path)) as osr:
        for i in pick:
            c = nuclei[i].geometry.centroid
            x, y = int(c.x), int(c.y)
            patch = np.asarray(osr.read_region((x - 30, y - 30), 0, (61, 61)).convert("L"), dtype=np.float32)
            inside = patch[28:33, 28:33].mean()
            ring = np.concatenate([patch[:4].ravel(), patch[-4:].ravel(), patch[:, :4].ravel(), patch[:, -4:].ravel()])
            darker += inside < np.median(ring) - 25
    assert darker >= 0.85 * len(pick)


def test_label_and_macro_carry_the_fake_patient(synthetic_slide):
    with openslide.OpenSlide(str(synthetic_slide.path)) as osr:
        label = np.asarray(osr.associated_images["label"].convert("L"))
        macro = np.asarray(osr.associated_images["macro"].convert("L"))
        desc = osr.properties["tiff.ImageDescription"]
    assert (label < 80).mean() > 0.05  # text and barcode really drawn
    assert (macro < 80).mean() > 0.01
    assert "DOE_JANE" in desc and "S24-12345" in desc
    assert all(s not in json.dumps(json.loads((synthetic_slide.truth_dir / "scene.json").read_text())) for s in PHI_STRINGS)


def test_same_seed_same_bytes(tmp_path):
    kw = {"width": 1000, "height": 700, "marker": True}
    a = make_synthetic_slide(tmp_path / "a", seed=5, **kw)
    b = make_synthetic_slide(tmp_path / "b", seed=5, workers=2, **kw)  # painted in 2 processes
    c = make_synthetic_slide(tmp_path / "c", seed=6, **kw)

    def digest(p):
        return hashlib.sha256(p.read_bytes()).hexdigest()

    assert digest(a.path) == digest(b.path) != digest(c.path)
    for name in TRUTH_FILES:
        assert digest(a.truth_dir / name) == digest(b.truth_dir / name)
    with openslide.OpenSlide(str(a.path)) as osr:  # odd size: edges cropped, one level only
        assert osr.level_dimensions == ((1000, 700),)
        edge = np.asarray(osr.read_region((744, 444), 0, (256, 256)).convert("RGB"), dtype=np.int16)
    want = render_region(a.scene(), 744, 444, 256, 256).astype(np.int16)
    assert np.abs(edge - want).mean() < 3.0


@pytest.mark.parametrize("distance_um", [0.0, 1500.0])
def test_tumour_at_an_exact_distance_from_blue_ink(tmp_path, distance_um):
    scene = build_scene(
        24000, 16000, mpp=0.25, seed=1, tumor_ink_distance_um=distance_um, tumor_radius_um=300, nuclei_density=0.05
    )
    from wsi_pipeline.synthetic.truth import write_truth

    write_truth(scene, tmp_path)
    tumor = read_geojson(tmp_path / "tumor.geojson").features[0]
    tissue = read_geojson(tmp_path / "tissue.geojson").features[0].geometry
    blue = [f for f in read_geojson(tmp_path / "ink.geojson").features if f.extra["inkColor"] == "blue"]
    inked_edge = tissue.exterior.intersection(blue[0].geometry.buffer(0.5))
    assert inked_edge.length * 0.25 > 1000  # a long inked stretch of the margin
    measured = tumor.geometry.distance(inked_edge) * 0.25
    assert measured == pytest.approx(distance_um, abs=0.05)
    assert tumor.measurements["Distance to blue inked edge um"] == pytest.approx(distance_um, abs=0.01)
    band = tumor.measurements["Distance to blue ink um"]
    assert band == pytest.approx(max(distance_um - 100.0, 0.0), abs=5.0)  # the band is 100 um deep
    assert tumor.geometry.area * 0.25**2 > 0.5 * np.pi * 300**2  # the nest was not clipped away


def test_two_pieces_and_other_inks():
    scene = build_scene(
        8000, 5000, mpp=0.5, seed=2, pieces=2, inks=(("green", 40, 140), ("red", 300, 20)), marker=False
    )
    assert len(scene.pieces) == 2 and scene.pieces[0].disjoint(scene.pieces[1])
    assert [ink.color for ink in scene.inks] == ["green", "red"]
    assert all(ink.region.area > 0 for ink in scene.inks)  # the red arc wraps through 0 degrees
    for piece in scene.pieces:
        assert shapely.contains_xy(piece, scene.nuclei.x, scene.nuclei.y).sum() > 100
    assert scene.marker is None
    with pytest.raises(ValueError, match="ink colour"):
        build_scene(2000, 1500, inks=(("pink", 0, 90),))


def test_synth_command(tmp_path, capsys):
    assert main(["synth", "--out", str(tmp_path), "--width", "800", "--height", "600", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "synthetic.svs" in out
    with openslide.OpenSlide(str(tmp_path / "synthetic.svs")) as osr:
        assert osr.level_dimensions[0] == (800, 600)
    assert main(["synth", "--out", str(tmp_path), "--width", "10", "--no-progress"]) == 2
    assert "must be >= 64" in capsys.readouterr().err


@pytest.mark.slow
def test_large_slide_memory_is_bounded(tmp_path):
    # VmHWM, not ru_maxrss: Linux keeps ru_maxrss across fork+exec, so a child of a large
    # pytest process would report the parent's peak (2 GB seen after the batch tests).
    code = (
        "from wsi_pipeline.synthetic import make_synthetic_slide;"
        f"make_synthetic_slide({str(tmp_path)!r}, width=20480, height=16384);"
        "print([l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0])"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    peak_mb = int(res.stdout.split()[-1]) / 1024
    assert peak_mb < 700, f"peak RSS {peak_mb:.0f} MB"
