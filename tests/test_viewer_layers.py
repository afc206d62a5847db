"""Viewer conversions and the nucleus store, with no Qt and no napari."""

from __future__ import annotations

import json

import numpy as np
import pytest
import shapely

from tests._viewer_data import make_results
from viewers import layers as L
from viewers.audit import append_audit, audit_lines, read_audit
from viewers.store import FeatureStore


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    return make_results(tmp_path_factory.mktemp("results"))


def _read(path):
    from wsi_pipeline.annotations import read_geojson

    return read_geojson(path)


def test_store_round_trip_is_lossless(results):
    _, out = results
    for name in ("nuclei.geojson.gz", "mitoses.geojson", "tissue.geojson", "margins.geojson"):
        feats = _read(out / name).features
        store = FeatureStore.from_features(feats)
        back = list(store.to_features())
        assert [f.to_geojson() for f in back] == [f.to_geojson() for f in feats], name


def test_store_edits_record_changes(results):
    _, out = results
    store = FeatureStore.from_features(_read(out / "nuclei.geojson.gz").features)
    n = len(store)
    store.delete(3)
    row = store.add(shapely.Point(10, 10).buffer(5), classification="Nucleus", reviewer="dr")
    store.reclassify(7, "Tumor", reviewer="dr")
    store.move(9, shapely.box(0, 0, 4, 4), reviewer="dr")
    store.set_review(11, "accepted", reviewer="dr")
    assert len(store) == n
    assert [c.what for c in store.changes] == ["delete", "add", "reclassify", "move", "review"]
    assert store.classification(np.array([7]))[0] == "Tumor"
    np.testing.assert_allclose(store.centroids[9], [2, 2])
    assert store.extra[11]["reviewStatus"] == "accepted" and store.review[11] == 1
    feats = {f.id: f for f in store.to_features()}
    assert store.ids[3] not in feats and store.ids[row] in feats
    assert feats[store.ids[7]].extra["reviewStatus"] == "corrected"
    with pytest.raises(ValueError):
        store.set_review(1, "maybe", reviewer="dr")


def test_rows_in_box_and_polygon_store():
    coords = np.array([[0, 0], [4, 0], [4, 4], [10, 10], [14, 10], [14, 14]], float)
    store = FeatureStore.from_polygons(coords, np.array([0, 3, 6]), measurements={"p": np.array([0.2, 0.9])})
    np.testing.assert_allclose(store.centroids, [[8 / 3, 4 / 3], [38 / 3, 34 / 3]])
    assert store.rows_in_box(0, 0, 5, 5).tolist() == [0]
    store.delete(1)
    assert store.rows_in_box(0, 0, 20, 20).tolist() == [0]
    g = store.geometry(0)
    assert g.geom_type == "Polygon" and g.area == 8


def test_audit_log_appends_json_lines(tmp_path, results):
    _, out = results
    store = FeatureStore.from_features(_read(out / "mitoses.geojson").features)
    store.reclassify(0, "Imposter")
    store.delete(1)
    path = tmp_path / "audit.jsonl"
    append_audit(path, audit_lines(store.take_changes(), who="dr a", layer="Mitoses", file="mitoses.geojson"))
    append_audit(path, audit_lines([], who="x", layer="y", file=None))
    recs = read_audit(path)
    assert [r["what"] for r in recs] == ["reclassify", "delete"]
    assert recs[0]["before"] == {"classification": "Mitosis candidate (unvalidated)"}
    assert recs[0]["after"] == {"classification": "Imposter"} and recs[0]["who"] == "dr a"
    assert recs[1]["after"] is None and recs[1]["before"]["properties"]["measurements"]["Probability"] > 0
    assert len(path.read_text().splitlines()) == 2 and all(json.loads(s) for s in path.read_text().splitlines())


def test_points_and_shapes_layer_data(results):
    _, out = results
    store = FeatureStore.from_features(_read(out / "nuclei.geojson.gz").features)
    store.delete(0)
    data, kw, kind = L.points_layer(store, name="n")
    assert kind == "points" and data.shape == (store.n, 2)
    np.testing.assert_allclose(data[:, 0], store.centroids[:, 1])  # row = y
    assert not kw["shown"][0] and kw["shown"][1:].all()
    np.testing.assert_allclose(kw["face_color"][1, :3], np.array([0, 120, 220]) / 255)
    d = L.shapes_data(store, np.array([1, 2]))
    assert d["shape_type"] == ["polygon", "polygon"] and d["features"]["row"].tolist() == [1, 2]
    back = L.geometry_from_parts(list(zip(d["shape_type"], d["data"])))
    assert back.geom_type == "MultiPolygon"
    assert back.geoms[0].equals(store.geometry(1))


def test_mitoses_layer_colours_by_probability(results):
    _, out = results
    store = FeatureStore.from_features(_read(out / "mitoses.geojson").features)
    data, kw, _ = L.mitoses_layer(store)
    assert len(data) == 12  # the hotspot polygon is not a point
    p = kw["features"]["probability"]
    lo, hi = kw["face_color"][np.argmin(p)], kw["face_color"][np.argmax(p)]
    assert p.min() == pytest.approx(0.3)  # 0.3 sits 90% of the way from ramp stop 0 to stop 1
    np.testing.assert_allclose(lo[:3], L.PROBABILITY_RAMP[0] * 0.1 + L.PROBABILITY_RAMP[1] * 0.9, atol=0.01)
    np.testing.assert_allclose(hi[:3], L.PROBABILITY_RAMP[-1], atol=0.05)
    assert set(kw["symbol"]) == {"ring", "square"}


def test_annotation_layer_labels_and_writer_round_trip(results, tmp_path):
    from viewers._writer import write_shapes

    _, out = results
    store = FeatureStore.from_features(_read(out / "margins.geojson").features)
    data, kw, kind = L.annotations_layer(store, name="m")
    assert kind == "shapes" and kw["shape_type"] == ["path", "path"]
    assert list(kw["features"]["label"]) == ["Deep margin 1.2 mm", "Peripheral 0.4 mm"]
    # drop the second line, add a polygon, write: first keeps its id and name
    attrs = {"shape_type": kw["shape_type"][:1] + ["polygon"], "metadata": kw["metadata"],
             "features": {"row": [0, -1], "class": ["Margin", "Tumor"]}}
    path = write_shapes(str(tmp_path / "m.geojson"), data[:1] + [np.array([[0, 0], [0, 10], [10, 10]])], attrs)[0]
    feats = _read(path).features
    assert feats[0].id == store.ids[0] and feats[0].name == "Deep margin 1.2 mm"
    assert feats[1].classification == "Tumor" and feats[1].geometry.area == 50


def test_density_counts_every_object(results):
    _, out = results
    store = FeatureStore.from_features(_read(out / "nuclei.geojson.gz").features)
    grid, kw, kind = L.density_layer(store, shape_xy=(3000, 2000), bin_px=200, mpp=0.5)
    assert kind == "image" and grid.shape == (10, 15)
    assert grid.sum() * (200 * 0.5 / 1000) ** 2 == pytest.approx(400)
    assert kw["blending"] == "translucent" and kw["scale"] == (200, 200)


def test_slide_layer_is_lazy_and_matches_read_region(results):
    slide, _ = results
    data, kw, kind = L.slide_layer(slide)
    assert kind == "image" and kw["multiscale"] and kw["rgb"]
    assert data[0].shape == (2000, 3000, 3) and data[1].shape == (1000, 1500, 3)
    np.testing.assert_array_equal(np.asarray(data[1][100:164, 200:300]),
                                  slide.read_region((400, 200), (100, 64), level=1))


def test_every_qupath_export_reads_into_layers(shared_data):
    from viewers._reader import get_reader

    files = sorted(p for p in (shared_data / "annotations").rglob("*") if p.suffix in (".json", ".geojson"))
    assert len(files) >= 13
    for path in files:
        layers = get_reader(str(path))(str(path))
        assert layers, path
        n = sum(len(d) for d, _, _ in layers)
        assert n >= 1, path


def test_view_command_errors_are_one_line(tmp_path, capsys):
    from wsi_pipeline.cli import main

    assert main(["view", str(tmp_path / "missing.svs")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing.svs" in err[0] and err[0].startswith("wsi-pipeline view: error:")


def test_straight_on_vertices_are_not_drawn():
    """napari draws the join of two exactly parallel edges as a long spike (seen on CMU-1: a
    straight line through the nuclei layer); such vertices are dropped from what is drawn,
    the shape stays the same, a path keeps its ends."""
    rc = np.array([[2130.94, 1039.37], [2131.69, 1039.38], [2133.94, 1039.41], [2136.19, 1038.58], [2130.0, 1030.0]])
    out = L.drawable(rc, closed=True)
    assert len(out) == 4 and not (out == rc[1]).all(axis=1).any()  # the vertex between parallel edges
    assert shapely.Polygon(out).symmetric_difference(shapely.Polygon(rc)).area < 1e-6
    square = np.array([[0, 0], [0, 5], [0, 10], [0, 10], [10, 10], [10, 0]], float)
    assert L.drawable(square, closed=True).tolist() == [[0, 0], [0, 10], [10, 10], [10, 0]]
    path = np.array([[0, 0], [0, 5], [0, 10], [5, 10]], float)
    assert L.drawable(path, closed=False).tolist() == [[0, 0], [0, 10], [5, 10]]
    tri = np.array([[0, 0], [0, 1], [1, 0]], float)
    assert L.drawable(tri, closed=True).tolist() == tri.tolist()
    shapes_utils = pytest.importorskip("napari.layers.shapes._shapes_utils")
    spike = lambda p: np.abs(shapes_utils.triangulate_edge(p.astype(np.float32), closed=True)[1]).max()  # noqa: E731
    assert spike(rc) > 10 and spike(out) < 3  # napari's own edge mesh (offsets in edge widths), before and after
    store = FeatureStore.from_features([])
    row = store.add(shapely.Polygon(rc[:, ::-1]), classification="Nucleus")
    assert len(L.shapes_data(store, np.array([row]))["data"][0]) == 4
    # written back untouched, it keeps every stored vertex (edits are saved losslessly)
    data, kw, _ = L.annotations_layer(store, name="n")
    (feat,) = L.layer_features(data, shape_type=kw["shape_type"], features=kw["features"], store=store)
    assert len(feat.geometry.exterior.coords) == 6 and feat.geometry.equals(store.feature(row).geometry)
