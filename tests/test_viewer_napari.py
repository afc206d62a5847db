"""The review desk in a real napari viewer (under Xvfb via pytest-xvfb)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import shapely

from tests._viewer_data import make_results

pytestmark = pytest.mark.viewer
napari = pytest.importorskip("napari")


def _display_ok() -> bool:
    import os

    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


@pytest.fixture(scope="module")
def desk(tmp_path_factory):
    if not _display_ok():
        pytest.skip("no display (install pytest-xvfb / Xvfb)")
    from viewers.results import open_results
    from viewers.widget import ReviewWidget

    slide, out = make_results(tmp_path_factory.mktemp("results"))
    viewer = napari.Viewer(show=False)
    viewer.window.resize(1600, 1000)
    d = open_results(viewer, slide, out, reviewer="Dr Test")
    d.widget = ReviewWidget(viewer, desk=d)
    viewer.window.add_dock_widget(d.widget, name="Review")
    yield d
    viewer.close()


def _read(path):
    from wsi_pipeline.annotations import read_geojson

    return {f.id: f.to_geojson() for f in read_geojson(path).features}


def _zoom(desk, center_rc, zoom, *, force=False):
    from viewers.editor import camera

    camera(desk.viewer).center = center_rc
    camera(desk.viewer).zoom = zoom
    desk.update_view(force=force)


def test_layers_and_screenshots(desk, artifacts_dir):
    from imageio.v3 import imwrite

    from viewers.editor import camera

    # opened on the whole slide: centred on it and fitted to it (not to the density grids,
    # whose last bins reach past the slide's edge)
    (r0, c0), (r1, c1) = np.asarray(desk.viewer.layers[0].extent.world)[:, -2:]
    cam = camera(desk.viewer)
    assert tuple(cam.center)[-2:] == pytest.approx(((r0 + r1) / 2, (c0 + c1) / 2))
    h, w = desk.viewer.canvas.size
    assert max((r1 - r0) * cam.zoom / h, (c1 - c0) * cam.zoom / w) == pytest.approx(0.95, abs=0.01)
    names = [layer.name for layer in desk.viewer.layers]
    for want in ("Nuclei density", "Nuclei (all)", "Nuclei (edit)", "Tissue", "Margins", "Mitoses", "Hotspots",
                 "Annotations", "Tissue regions", "Regions", "Report measurements"):
        assert want in names
    assert list(desk.viewer.layers["Report measurements"].features["label"]) == ["Breslow 0.2 mm"]
    regions = desk.viewer.layers["Tissue regions"]
    np.testing.assert_array_equal(np.unique(np.asarray(regions.data)), [0, 1, 2, 4])
    assert regions.scale[0] == 24.0  # 12 µm label pixels at 0.5 µm/px
    from viewers.results import text_overlay

    legend = text_overlay(desk.viewer).text
    assert "Epidermis" in legend and "Inflammation" in legend
    assert tuple(np.round(regions.colormap.map(1)[:3] * 255)) == (140, 60, 200)  # Epidermis colour
    assert sorted(desk.sources["Regions"].store.class_counts()) == ["Dermis", "Epidermis", "Inflammation"]
    assert desk.viewer.layers[0].multiscale and desk.viewer.layers[0].rgb
    raster = np.asarray(desk.viewer.layers["Nuclei (all)"].data[1])  # one pixel per nucleus here
    assert 390 <= (raster[..., 3] > 0).sum() <= 400  # (a few may share a pixel)
    assert len(desk.viewer.layers["Mitoses"].data) == 12
    assert list(desk.viewer.layers["Margins"].features["label"])[0] == "Deep margin 1.2 mm"
    from viewers.results import _fit

    _fit(desk.viewer, desk.viewer.layers[0])
    desk.update_view()
    shot = desk.viewer.screenshot(canvas_only=False, flash=False)
    imwrite(artifacts_dir / "viewer_overview.png", shot)
    assert shot.std() > 10  # not a blank picture
    _zoom(desk, (1000, 1500), 2.0)
    src = desk.sources["Nuclei"]
    assert src.editor.active and not desk.viewer.layers["Nuclei (all)"].visible
    assert not desk.viewer.layers["Nuclei density"].visible  # true H&E colours while editing
    assert 0 < len(src.editor.shapes.data) <= src.editor.cap
    imwrite(artifacts_dir / "viewer_zoomed_edit.png", desk.viewer.screenshot(canvas_only=False, flash=False))


def test_crowded_labels_show_only_when_zoomed_in(desk, artifacts_dir):
    """Labels of shapes close together (the demo's lesion foci and margin segments) are hidden
    at whole-slide zoom, where they would pile up, and shown once zoomed in far enough."""
    from imageio.v3 import imwrite

    from viewers.store import FeatureStore
    from wsi_pipeline.annotations import Feature

    feats = [Feature(shapely.box(1400 + 40 * i, 900 + 30 * i, 1430 + 40 * i, 930 + 30 * i),
                     classification="Tumor (proposed, review required)") for i in range(3)]
    desk.add_annotations(FeatureStore.from_features(feats), path=None, name="Crowded", edge_width=3)
    layer = desk.viewer.layers["Crowded"]
    try:
        assert list(layer.features["label"]) == ["Tumor (proposed, review req…"] * 3
        desk.viewer.reset_view()
        desk.update_view()
        assert not layer.text.visible and desk.viewer.layers["Margins"].text.visible  # far apart: legible
        imwrite(artifacts_dir / "viewer_labels_whole_slide.png", desk.viewer.screenshot(canvas_only=False, flash=False))
        _zoom(desk, (950, 1480), 8.0)
        assert layer.text.visible
        imwrite(artifacts_dir / "viewer_labels_zoomed.png", desk.viewer.screenshot(canvas_only=False, flash=False))
    finally:
        desk.labelled_layers.remove(layer)
        desk.sources.pop("Crowded")
        desk.viewer.layers.remove(layer)


def test_zoomed_out_past_cap_shows_points_only(desk):
    src = desk.sources["Nuclei"]
    old = src.editor.cap
    src.editor.cap = 50
    try:
        _zoom(desk, (1000, 1500), 0.2, force=True)
        assert not src.editor.active and len(src.editor.shapes.data) == 0
        assert desk.viewer.layers["Nuclei (all)"].visible
        _zoom(desk, (1000, 1500), 4.0, force=True)  # 4x: fewer than 50 in view -> editable again
        assert src.editor.active and 0 < len(src.editor.shapes.data) <= 50
    finally:
        src.editor.cap = old


def test_edit_then_save_changes_exactly_what_was_edited(desk, tmp_path):
    from viewers.audit import read_audit

    out = desk.results_dir
    before = _read(out / "nuclei.geojson.gz")
    mit_before = _read(out / "mitoses.geojson")
    _zoom(desk, (1000, 1500), 1.0)
    src = desk.sources["Nuclei"]
    shapes = src.editor.shapes
    rows = shapes.features["row"].to_numpy()
    deleted_id = src.store.ids[rows[0]]
    reclass_id = src.store.ids[rows[1]]
    shapes.selected_data = {0}
    shapes.remove_selected()
    shapes.add_polygons([np.array([[1000, 1500], [1000, 1520], [1020, 1520]])])
    shapes.selected_data = {0}  # was shape 1 before the delete
    assert desk.reclassify_selected("Nuclei", "Tumor") == 1
    # mitoses: the first one is an imposter, the second is accepted
    mit = desk.viewer.layers["Mitoses"]
    mit.selected_data = {0}
    desk.reclassify_selected("Mitoses", "Imposter")
    mit.selected_data = {1}
    desk.review_selected("Mitoses", "accepted")
    saved = desk.widget.save()
    assert saved == {"Nuclei": 3, "Mitoses": 2}

    after = _read(out / "nuclei.geojson.gz")
    assert set(before) - set(after) == {deleted_id}
    (new_id,) = set(after) - set(before)
    assert after[new_id]["properties"]["classification"]["name"] == "Nucleus"
    assert after[new_id]["properties"]["reviewer"] == "Dr Test"
    np.testing.assert_array_equal(np.asarray(after[new_id]["geometry"]["coordinates"][0])[:3],
                                  [[1500, 1000], [1520, 1000], [1520, 1020]])  # (x, y) = (col, row)
    changed = {k for k in before if k in after and before[k] != after[k]}
    assert changed == {reclass_id}
    props = after[reclass_id]["properties"]
    assert props["classification"]["name"] == "Tumor" and props["reviewStatus"] == "corrected"
    assert props["measurements"] == before[reclass_id]["properties"]["measurements"]
    assert after[reclass_id]["geometry"] == before[reclass_id]["geometry"]
    unknown = [k for k, f in before.items() if "qupathUnknown" in f["properties"]]
    assert unknown and all(after[k]["properties"]["qupathUnknown"] == before[k]["properties"]["qupathUnknown"]
                           for k in unknown if k in after)

    mit_after = _read(out / "mitoses.geojson")
    diff = {k for k in mit_before if mit_before[k] != mit_after[k]}
    assert len(diff) == 2 and set(mit_before) == set(mit_after)
    classes = sorted(mit_after[k]["properties"]["classification"]["name"] for k in diff)
    statuses = sorted(mit_after[k]["properties"]["reviewStatus"] for k in diff)
    assert "Imposter" in classes and statuses == ["accepted", "corrected"]

    log = read_audit(out / "audit.jsonl")
    assert sorted(r["what"] for r in log) == ["add", "delete", "reclassify", "reclassify", "review"]
    assert all(r["who"] == "Dr Test" and r["when"] for r in log)
    assert desk.save() == {}  # nothing new to save
    assert not list(out.glob(".*.tmp"))


def test_draw_tumour_annotation_and_save(desk):
    layer = desk.viewer.layers["Annotations"]
    layer.add_polygons([np.array([[500, 800], [500, 1400], [1200, 1400], [1200, 800]])])
    assert desk.save() == {"Annotations": 1}
    feats = list(_read(desk.results_dir / "annotations.geojson").values())
    assert len(feats) == 1 and feats[0]["properties"]["classification"]["name"] == "Tumor"


def test_class_filter_hides_points(desk):
    src = desk.sources["Mitoses"]
    src.hidden_classes = {"Imposter"}
    desk.apply_filters("Mitoses")
    shown = desk.viewer.layers["Mitoses"].shown
    cls = desk.viewer.layers["Mitoses"].features["class"].to_numpy()
    assert not shown[cls == "Imposter"].any() and shown[cls != "Imposter"].all()
    src.hidden_classes = set()
    desk.apply_filters("Mitoses")


@pytest.mark.slow
def test_every_qupath_export_opens_in_napari(desk, shared_data, tmp_path):
    files = sorted(p for p in (shared_data / "annotations").rglob("*") if p.suffix in (".json", ".geojson"))
    viewer = desk.viewer
    n0 = len(viewer.layers)
    for path in files:
        added = viewer.open(str(path), plugin="wsi-pipeline")
        assert added, path
        for layer in added:
            viewer.layers.remove(layer)
    assert len(viewer.layers) == n0
    # the npe2 writer gives the same features back
    src = tmp_path / "cells.json"
    shutil.copy(shared_data / "annotations/qupath/qupath_geojson_advanced/qupath-polygon-cell-classified.json", src)
    (layer,) = viewer.open(str(src), plugin="wsi-pipeline")
    layer.save(str(tmp_path / "back.geojson"), plugin="wsi-pipeline")
    viewer.layers.remove(layer)
    back, orig = list(_read(tmp_path / "back.geojson").values()), list(_read(src).values())
    for f in back + orig:
        f.pop("id")  # this old export has no ids ("PathAnnotationObject"): fresh ones on every read
    assert back == orig


def test_unvalidated_candidates_open_hidden_and_named_as_such(tmp_path):
    """Results of a run without a validated mitosis model (hundreds of candidates on normal
    skin): the points open as a hidden 'Mitosis candidates (unvalidated)' layer with no density
    layer, so a pathologist never sees them as mitoses at first sight; the file is untouched."""
    if not _display_ok():
        pytest.skip("no display (install pytest-xvfb / Xvfb)")
    from viewers.results import UNVALIDATED_LAYER, open_results
    from wsi_pipeline.annotations import Feature, read_geojson, write_geojson
    from wsi_pipeline.mitosis_classes import UNVALIDATED_CLASS

    slide, out = make_results(tmp_path / "results")
    points = [Feature(shapely.Point(100 + 40 * i, 200), object_type="detection", classification=UNVALIDATED_CLASS,
                      measurements={"Probability": 0.6}) for i in range(30)]
    write_geojson(out / "mitoses.geojson", points)
    before = (out / "mitoses.geojson").read_bytes()
    viewer = napari.Viewer(show=False)
    try:
        open_results(viewer, slide, out, reviewer="Dr Test")
        names = [layer.name for layer in viewer.layers]
        assert UNVALIDATED_LAYER in names and "Mitoses" not in names and "Mitosis density" not in names
        layer = viewer.layers[UNVALIDATED_LAYER]
        assert not layer.visible and len(layer.data) == 30
    finally:
        viewer.close()
    assert (out / "mitoses.geojson").read_bytes() == before
    assert {f.classification for f in read_geojson(out / "mitoses.geojson").features} == {UNVALIDATED_CLASS}
