"""QuPath-dialect GeoJSON: real exports round-trip; old dialects; repair; gzip; atomicity."""

from __future__ import annotations

import gzip
import json
import logging
import math

import numpy as np
import pytest
import shapely

from wsi_pipeline.annotations.repair import star_simple_rings
from wsi_pipeline.annotations import (
    DEFAULT_CLASS_COLORS,
    Feature,
    GeoJSONWriter,
    bounds_properties,
    class_color,
    features_to_instances,
    geometry_to_rc,
    geometry_to_xy,
    instances_to_features,
    iter_geojson,
    pack_rgb,
    rc_to_xy,
    read_geojson,
    unpack_rgb,
    write_geojson,
    xy_to_rc,
)
from tiling.errors import InputError


def _same_geometry(a, b) -> bool:
    if a is None or b is None:
        return a is b
    return bool(shapely.equals_exact(shapely.normalize(a), shapely.normalize(b), tolerance=0))


def _assert_same_features(fa: list[Feature], fb: list[Feature]) -> None:
    assert len(fa) == len(fb)
    for a, b in zip(fa, fb):
        assert a.id == b.id
        assert _same_geometry(a.geometry, b.geometry)
        assert _same_geometry(a.nucleus_geometry, b.nucleus_geometry)
        assert (a.object_type, a.classification, a.color, a.name, a.is_locked) == (
            b.object_type, b.classification, b.color, b.name, b.is_locked)
        assert a.measurements.keys() == b.measurements.keys()
        for k, v in a.measurements.items():
            assert v == b.measurements[k] or (math.isnan(v) and math.isnan(b.measurements[k]))
        assert a.extra == b.extra
        assert a.foreign == b.foreign


def _real_files(shared_data):
    files = sorted(p for p in (shared_data / "annotations").rglob("*") if p.suffix in (".json", ".geojson"))
    assert len(files) >= 15, files
    return files


@pytest.mark.shared_data
def test_every_shared_file_round_trips(shared_data, tmp_path):
    for path in _real_files(shared_data):
        ann = read_geojson(path)
        assert len(ann) > 0, path
        raw = json.loads(path.read_text())
        raw_feats = raw["features"] if isinstance(raw, dict) and "features" in raw else raw
        raw_feats = raw_feats if isinstance(raw_feats, list) else [raw_feats]
        assert len(ann) == len(raw_feats)
        # geometry as in the file (nothing was invalid in these exports)
        assert ann.repaired == 0
        for f, r in zip(ann.features, raw_feats):
            assert _same_geometry(f.geometry, shapely.geometry.shape(r["geometry"])), path
        for suffix in (".geojson", ".geojson.gz"):
            out = tmp_path / (path.stem + suffix)
            n = write_geojson(out, ann.features, properties=ann.properties)
            assert n == len(ann)
            back = read_geojson(out)
            _assert_same_features(ann.features, back.features)
            assert back.properties == ann.properties


@pytest.mark.shared_data
def test_old_exports_map_object_type_and_packed_colour(shared_data):
    cells = read_geojson(shared_data / "annotations/qupath/test_object_classification.geojson")
    f = cells.features[0]
    assert f.object_type == "cell"  # from "id": "PathCellObject"
    assert f.classification == "Other"
    assert f.color == unpack_rgb(-16744320) == (0, 128, 128)
    assert f.measurements["Detection probability"] == pytest.approx(0.5110340118408203)
    assert f.nucleus_geometry is not None and f.nucleus_geometry.within(f.geometry.buffer(1e-6))
    # an old export gets a fresh UUID, kept stable once written
    assert len(f.id) == 36
    classified = read_geojson(shared_data / "annotations/qupath/qupath_geojson_advanced/qupath-polygon-cell-classified.json")
    assert {x.classification for x in classified} == {"Cell", "Nucleus"}
    g = classified.features[0]
    assert g.color == (127, 220, 58)  # colorRGB -8397766
    assert g.extra == {"color": [127, 220, 58]}  # the object's own colour passes through
    assert g.name == "Erythrocytes 2"
    line = read_geojson(shared_data / "annotations/qupath/qupath_geojson/qupath-line.json").features[0]
    assert line.geometry.geom_type == "LineString" and line.name == "line" and line.object_type == "annotation"


@pytest.mark.shared_data
def test_modern_export_fields(shared_data):
    ann = read_geojson(shared_data / "annotations/qupath/test_cell_detections.geojson")
    raw = json.loads((shared_data / "annotations/qupath/test_cell_detections.geojson").read_text())
    for f, r in zip(ann.features, raw["features"]):
        assert f.id == r["id"]
        assert f.object_type == "cell"
        assert list(f.color) == r["properties"]["classification"]["color"]
        assert f.measurements == r["properties"]["measurements"]
    puma = read_geojson(shared_data / "annotations/puma-melanoma/training_set_metastatic_roi_001_nuclei.geojson")
    kinds = {f.geometry.geom_type for f in puma}
    assert kinds == {"Polygon", "MultiPolygon"}


def test_written_file_is_qupath_dialect(tmp_path):
    hole = shapely.Polygon([(0, 0), (100, 0), (100, 100), (0, 100)], [[(20, 20), (40, 20), (40, 40), (20, 40)]])
    f = Feature(hole, classification="Tumor", color=(200, 0, 0), measurements={"Area": 9600.0},
                name="lesion", is_locked=True)
    cell = Feature(shapely.box(0, 0, 10, 10), object_type="cell", nucleus_geometry=shapely.box(2, 2, 8, 8))
    path = tmp_path / "a.geojson"
    write_geojson(path, [f, cell], properties=bounds_properties((1000, 2000, 50000, 40000)))
    doc = json.loads(path.read_text())
    assert doc["type"] == "FeatureCollection"
    assert doc["properties"]["openslide.bounds-x"] == 1000 and doc["properties"]["openslide.bounds-y"] == 2000
    a, c = doc["features"]
    assert a["id"] == f.id and a["type"] == "Feature"
    assert a["properties"] == {"objectType": "annotation", "name": "lesion",
                               "classification": {"name": "Tumor", "color": [200, 0, 0]},
                               "isLocked": True, "measurements": {"Area": 9600.0}}
    assert len(a["geometry"]["coordinates"]) == 2  # shell + hole
    assert c["nucleusGeometry"]["type"] == "Polygon"
    assert "isLocked" not in c["properties"] and "classification" not in c["properties"]


def test_all_geometry_types_and_holes_round_trip(tmp_path):
    geoms = [
        shapely.Polygon([(0, 0), (10, 0), (10, 10), (0, 10)], [[(2, 2), (4, 2), (4, 4), (2, 4)]]),
        shapely.MultiPolygon([shapely.box(0, 0, 1, 1), shapely.box(5, 5, 7, 7)]),
        shapely.Point(3.25, 4.5),
        shapely.MultiPoint([(1, 2), (3, 4)]),
        shapely.LineString([(0, 0), (1.5, 2.5), (3, 1)]),
        shapely.MultiLineString([[(0, 0), (1, 1)], [(2, 2), (3, 5)]]),
        shapely.Point(1 / 3, 2 / 3),
    ]
    feats = [Feature(g, classification="Other") for g in geoms]
    for name in ("t.geojson", "t.geojson.gz"):
        back = read_geojson(tmp_path / name) if write_geojson(tmp_path / name, feats) else None
        _assert_same_features(feats, back.features)
        assert back.features[0].geometry.interiors[0].coords[:] == geoms[0].interiors[0].coords[:]
    assert gzip.open(tmp_path / "t.geojson.gz").read(1) == b"{"


def test_bow_tie_is_repaired_counted_and_logged(tmp_path, caplog):
    bow = {"type": "Polygon", "coordinates": [[[0, 0], [10, 10], [10, 0], [0, 10], [0, 0]]]}
    ok = {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]}
    doc = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "id": "a", "geometry": bow, "properties": {"objectType": "annotation"}},
        {"type": "Feature", "id": "b", "geometry": ok, "properties": {"objectType": "annotation"}},
    ]}
    path = tmp_path / "bow.geojson"
    path.write_text(json.dumps(doc))
    with caplog.at_level(logging.WARNING):
        ann = read_geojson(path)
    assert ann.repaired == 1 and len(ann) == 2
    g = ann.features[0].geometry
    assert g.is_valid and g.geom_type == "MultiPolygon" and len(g.geoms) == 2
    assert g.area == pytest.approx(50.0)
    assert "repaired 1 invalid geometry" in caplog.text
    # the writer repairs too
    bad = Feature(shapely.Polygon([(0, 0), (10, 10), (10, 0), (0, 10)]))
    with GeoJSONWriter(tmp_path / "w.geojson") as w:
        w.write(bad)
    assert w.repaired == 1
    assert read_geojson(tmp_path / "w.geojson").features[0].geometry.is_valid


def test_degenerate_ring_is_kept_not_dropped(tmp_path):
    line_like = {"type": "Polygon", "coordinates": [[[0, 0], [5, 5], [0, 0]]]}
    path = tmp_path / "deg.geojson"
    path.write_text(json.dumps([{"type": "Feature", "geometry": line_like, "properties": {}}]))
    ann = read_geojson(path)
    assert len(ann) == 1 and ann.repaired == 1
    assert ann.features[0].geometry.geom_type == "LineString"


def test_atomic_write_leaves_nothing_when_iterator_raises(tmp_path):
    def feats():
        for i in range(50):
            yield Feature(shapely.Point(i, i))
        raise RuntimeError("detector crashed")

    for name in ("x.geojson", "x.geojson.gz"):
        with pytest.raises(RuntimeError, match="detector crashed"):
            write_geojson(tmp_path / name, feats())
    assert list(tmp_path.iterdir()) == []
    # an existing file is not clobbered by a failed write
    write_geojson(tmp_path / "x.geojson", [Feature(shapely.Point(1, 1))])
    with pytest.raises(RuntimeError):
        write_geojson(tmp_path / "x.geojson", feats())
    assert [p.name for p in tmp_path.iterdir()] == ["x.geojson"]
    assert len(read_geojson(tmp_path / "x.geojson")) == 1


def test_unknown_properties_and_members_preserved(tmp_path):
    weird = {"nested": {"a": [1, 2.5, None, True, "s"], "b": {"c": "ü"}}, "big": 12345678901234, "huge": 2**70,
             "below_int64": -(2**63) - 1, "float": 0.1 + 0.2, "empty": {}, "list": []}
    doc = {"type": "FeatureCollection", "properties": {"software": "x", "openslide.bounds-x": 5}, "features": [
        {"type": "Feature", "id": "custom-id-1", "bbox": [0, 0, 1, 1],
         "geometry": {"type": "Point", "coordinates": [1, 2]},
         "properties": {"objectType": "detection", "color": [1, 2, 3], "metadata": weird,
                        "measurements": [{"name": "m", "value": None}, {"name": "n", "value": 3}]}},
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [3, 4]},
         "properties": {"id": "props-id", "objectType": "annotation"}},
    ]}
    src = tmp_path / "in.geojson"
    src.write_text(json.dumps(doc))
    ann = read_geojson(src)
    f, g = ann.features
    assert f.extra == {"color": [1, 2, 3], "metadata": weird}
    assert f.foreign == {"bbox": [0, 0, 1, 1]}
    assert math.isnan(f.measurements["m"]) and f.measurements["n"] == 3.0
    assert g.id == "props-id" and g.id_in_properties
    out = tmp_path / "out.geojson"
    write_geojson(out, ann.features, properties=ann.properties)
    written = json.loads(out.read_text())
    assert written["properties"] == doc["properties"]
    wf, wg = written["features"]
    assert wf["properties"]["metadata"] == weird and wf["properties"]["color"] == [1, 2, 3]
    assert wf["bbox"] == [0, 0, 1, 1] and wf["id"] == "custom-id-1"
    assert wf["properties"]["measurements"] == {"m": None, "n": 3.0}
    assert wg["properties"]["id"] == "props-id" and wg["id"] == "props-id"
    again = read_geojson(out).features
    _assert_same_features(ann.features, again)
    assert type(again[0].extra["metadata"]["huge"]) is int  # not turned into a float
    assert again[0].extra["metadata"]["below_int64"] == -(2**63) - 1
    alone = tmp_path / "alone.geojson"  # 19 digits, just beyond int64, with no longer number beside it
    write_geojson(alone, [Feature(shapely.Point(0, 0), extra={"n": -(2**63) - 1, "m": 2**63 - 1})])
    assert read_geojson(alone).features[0].extra == {"n": -(2**63) - 1, "m": 2**63 - 1}


def test_bad_input_raises_input_error(tmp_path):
    (tmp_path / "bad.geojson").write_text("{not json")
    with pytest.raises(InputError, match="bad.geojson: not valid JSON"):
        read_geojson(tmp_path / "bad.geojson")
    with pytest.raises(InputError, match="file not found"):
        read_geojson(tmp_path / "missing.geojson")
    (tmp_path / "geom.geojson").write_text('{"type": "Polygon", "coordinates": []}')
    with pytest.raises(InputError, match="expected a GeoJSON FeatureCollection"):
        read_geojson(tmp_path / "geom.geojson")
    (tmp_path / "trunc.geojson.gz").write_bytes(gzip.compress(b'{"type": "FeatureCollection"')[:-6])
    with pytest.raises(InputError, match="trunc.geojson.gz"):
        read_geojson(tmp_path / "trunc.geojson.gz")
    # a large file of ours, cut short mid-stream: the streamed reader says so too
    write_geojson(tmp_path / "big.geojson.gz", (Feature(shapely.Point(i, i).buffer(3)) for i in range(3000)))
    data = (tmp_path / "big.geojson.gz").read_bytes()
    (tmp_path / "cut.geojson.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="cut.geojson.gz: cannot read"):
        read_geojson(tmp_path / "cut.geojson.gz")


def test_colours():
    assert DEFAULT_CLASS_COLORS["Tumor"] == (200, 0, 0)  # QuPath's
    assert DEFAULT_CLASS_COLORS["Stroma"] == (150, 200, 150)
    assert DEFAULT_CLASS_COLORS["Immune cells"] == (160, 90, 160)
    assert set(DEFAULT_CLASS_COLORS) >= {"Tissue", "Nucleus", "Mitosis", "Necrosis", "Other", "Ink: blue"}
    assert unpack_rgb(pack_rgb((12, 34, 56))) == (12, 34, 56)
    assert pack_rgb((0, 128, 128)) == -16744320
    c = class_color("nuclei_tumor")
    assert c == class_color("nuclei_tumor") and all(40 <= v < 220 for v in c)
    assert class_color(None) is None


def test_coords_round_trip_and_orientation():
    xy = np.array([[10.0, 20.0], [30.5, 5.0]])
    rc = xy_to_rc(xy)
    assert rc.tolist() == [[20.0, 10.0], [5.0, 30.5]]
    assert np.array_equal(rc_to_xy(rc), xy)
    rc4 = xy_to_rc(xy, scale=4, offset=(2, 4))
    assert rc4.tolist() == [[4.0, 2.0], [0.25, 7.125]]
    assert np.allclose(rc_to_xy(rc4, scale=4, offset=(2, 4)), xy)
    box = shapely.box(0, 0, 8, 4)  # 8 wide (x), 4 tall (y)
    r = geometry_to_rc(box)
    minr, minc, maxr, maxc = r.bounds
    assert (maxr - minr, maxc - minc) == (4, 8)
    assert shapely.equals_exact(shapely.normalize(geometry_to_xy(r)), shapely.normalize(box), 0)


def test_instances_to_features_and_back(tmp_path):
    from detectors.base import Instances

    polys = [shapely.Point(100 + 10 * i, 50).buffer(3, quad_segs=4) for i in range(5)]
    inst = Instances(polys, np.linspace(0.5, 0.9, 5), ["Nucleus", "Nucleus", "Mitosis", None, "Nucleus"],
                     {"Area": np.arange(5.0)})
    feats = list(instances_to_features(inst))
    assert [f.classification for f in feats] == ["Nucleus", "Nucleus", "Mitosis", None, "Nucleus"]
    assert feats[2].color == DEFAULT_CLASS_COLORS["Mitosis"] and feats[3].color is None
    assert feats[1].measurements == {"Detection probability": pytest.approx(0.6), "Area": 1.0}
    assert all(f.object_type == "detection" for f in feats) and len({f.id for f in feats}) == 5
    fixed = list(instances_to_features(inst, classification="Tumor", color=(1, 2, 3), object_type="cell"))
    assert {(f.classification, f.color, f.object_type) for f in fixed} == {("Tumor", (1, 2, 3), "cell")}
    assert [f.id for f in instances_to_features(inst, ids=map(str, range(5)))] == ["0", "1", "2", "3", "4"]
    write_geojson(tmp_path / "n.geojson.gz", feats)
    back = features_to_instances(read_geojson(tmp_path / "n.geojson.gz").features)
    assert np.allclose(back.score, inst.score) and np.array_equal(back.measurements["Area"], np.arange(5.0))
    assert all(shapely.equals_exact(a, b, 0) for a, b in zip(back.geometry, inst.geometry))


def test_many_features_stream_in_chunks(tmp_path):
    rng = np.random.default_rng(0)
    centres = rng.uniform(0, 50000, (2500, 2))
    feats = (Feature(shapely.Point(*c).buffer(4, quad_segs=4), object_type="detection", classification="Nucleus",
                     measurements={"Detection probability": float(i) / 2500}) for i, c in enumerate(centres))
    with GeoJSONWriter(tmp_path / "many.geojson.gz", chunk_size=700, decimals=2) as w:
        w.write_many(feats)
    assert w.count == 2500
    back = read_geojson(tmp_path / "many.geojson.gz")
    assert len(back) == 2500
    got = shapely.get_coordinates(shapely.centroid(back.geometries()))
    assert np.abs(got - centres).max() < 0.02  # 2 decimals
    assert back.features[-1].measurements["Detection probability"] == pytest.approx(2499 / 2500)
    # streamed in small blocks (lines cut across block boundaries): the same features
    streamed = list(iter_geojson(tmp_path / "many.geojson.gz", block_size=1000))
    assert [f.id for f in streamed] == [f.id for f in back.features]
    assert all(shapely.equals_exact(a.geometry, b.geometry, 0) for a, b in zip(streamed, back.features))


def test_line_layout_fast_path_and_foreign_lines(tmp_path):
    """Files we wrote are read line by line; a line edited by another tool still reads."""
    feats = [
        Feature(shapely.Polygon([(0, 0), (9, 0), (9, 9), (0, 9)], [[(1, 1), (2, 1), (2, 2), (1, 2)]]), name="a"),
        Feature(shapely.MultiPolygon([shapely.box(0, 0, 1, 1), shapely.box(3, 3, 4, 5)]), classification="Tumor"),
        Feature(shapely.box(0.1, 0.2, 0.30000000000000004, 1e-7), object_type="cell",
                nucleus_geometry=shapely.box(0.15, 0.15, 0.2, 1e-7 + 0.1)),
        Feature(shapely.Point(1, 2)),
    ]
    path = tmp_path / "f.geojson"
    write_geojson(path, feats, properties={"k": 1})
    lines = path.read_bytes().split(b"\n")
    assert len(lines) == len(feats) + 3 and lines[0].endswith(b'"features":[')
    _assert_same_features(feats, read_geojson(path).features)
    # another tool rewrote feature 1 with a different member order and spacing
    d = json.loads(lines[2].rstrip(b","))
    lines[2] = json.dumps({"properties": d["properties"], "geometry": d["geometry"], "id": d["id"],
                           "type": "Feature"}, indent=None).encode() + b","
    path.write_bytes(b"\n".join(lines))
    ann = read_geojson(path)
    _assert_same_features(feats, ann.features)
    assert ann.properties == {"k": 1}
    # cut short: the closing line is missing
    path.write_bytes(b"\n".join(lines[:3]))
    with pytest.raises(InputError, match="truncated"):
        read_geojson(path)


def test_null_geometry_object_types_and_unwritable_folder(tmp_path):
    feats = [Feature(None, object_type="tile", name="empty tile"),
             Feature(shapely.box(0, 0, 5, 5), object_type="tma_core", name="A-1", is_locked=True)]
    write_geojson(tmp_path / "n.geojson", feats)
    assert json.loads((tmp_path / "n.geojson").read_text())["features"][0]["geometry"] is None
    back = read_geojson(tmp_path / "n.geojson")
    _assert_same_features(feats, back.features)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(InputError, match="cannot write here"):
        write_geojson(blocker / "sub" / "a.geojson", feats)


def _edit_line(path, i: int, old: bytes, new: bytes) -> None:
    lines = path.read_bytes().split(b"\n")
    assert old in lines[i]
    lines[i] = lines[i].replace(old, new)
    path.write_bytes(b"\n".join(lines))


def test_line_layout_coordinates_that_are_not_plain_xy(tmp_path):
    """The fast path cuts coordinates as text; whatever is not plain [x, y] numbers (3-D
    positions, spaces, a member hiding a '}' in a string) is read the ordinary way."""
    rings = [[(0, 0), (9, 0), (9, 9), (0, 9)], [(20, 20), (29, 20), (29, 29), (20, 29)], [(5, 5), (6, 5), (6, 6)]]
    feats = [Feature(shapely.Polygon(r), object_type="detection", classification="Nucleus") for r in rings]
    path = tmp_path / "f.geojson"
    write_geojson(path, feats)
    text = path.read_bytes()
    assert text.count(b"\n") == len(feats) + 2 and b"[[[20.0,20.0]," in text

    xyz = b"[[[20.0,20.0,7],[29.0,20.0,7],[29.0,29.0,7],[20.0,29.0,7],[20.0,20.0,7]]]"  # 3-D positions
    _edit_line(path, 2, b"[[[20.0,20.0],[29.0,20.0],[29.0,29.0],[20.0,29.0],[20.0,20.0]]]", xyz)
    ann = read_geojson(path)
    back = ann.features
    assert ann.repaired == 0 and shapely.has_z(back[1].geometry)
    assert shapely.equals(shapely.force_2d(back[1].geometry), feats[1].geometry)
    _assert_same_features([feats[0], feats[2]], [back[0], back[2]])

    write_geojson(path, feats)
    _edit_line(path, 2, b"[20.0,20.0],[29.0,20.0]", b"[20.0,20.0,3],[29.0]")  # a 3-value and a 1-value position
    plain = tmp_path / "plain.geojson"  # the same document in another layout: read the ordinary way
    plain.write_text(json.dumps(json.loads(path.read_bytes()), indent=1))
    for p in (path, plain):  # an error, not numbers shifted into the wrong positions
        with pytest.raises(InputError, match="fewer than 2 numbers"):
            read_geojson(p)

    write_geojson(path, feats)
    _edit_line(path, 2, b"]]]},", b']]],"note":"a}b"},')  # a '}' inside a string in the geometry
    _edit_line(path, 1, b"[0.0,0.0],", b"[0.0, 0.0],")  # spaces
    _assert_same_features(feats, read_geojson(path).features)


def test_classification_forms_read_the_same_in_bulk(tmp_path):
    """Many features of the usual form (remembered per class) beside unusual ones."""
    feats = [Feature(shapely.box(i, 0, i + 1, 1), classification=c, color=col)
             for i, (c, col) in enumerate([("Tumor", (200, 0, 0)), ("Tumor", (200, 0, 0)), ("Tumor", (0, 0, 200)),
                                           ("Stroma", None), ("Tumor", (200, 0, 0))])]
    path = tmp_path / "c.geojson"
    write_geojson(path, feats)
    _edit_line(path, 4, b'"classification":{"name":"Stroma"}', b'"classification":{"names":["A","B"],"color":[1,2,3]}')
    back = read_geojson(path).features
    assert [(f.classification, f.color) for f in back] == [
        ("Tumor", (200, 0, 0)), ("Tumor", (200, 0, 0)), ("Tumor", (0, 0, 200)), ("A: B", (1, 2, 3)), ("Tumor", (200, 0, 0))]


def test_star_simple_rings_never_vouches_for_an_invalid_ring():
    """The GEOS-free validity shortcut: everything it calls simple, GEOS calls valid."""
    rng = np.random.default_rng(3)
    rings, kinds = [], []
    for i in range(3000):
        k = i % 6
        m = int(rng.integers(3, 33))
        ang = np.sort(rng.uniform(0, 2 * np.pi, m))
        r = rng.uniform(1, 8, m)
        if k == 0:  # a StarDist-like outline: evenly spaced rays
            m = int(rng.integers(8, 33))
            ang, r = np.linspace(0, 2 * np.pi, m, endpoint=False), rng.uniform(3, 8, m)
        elif k == 1:  # random vertex order: mostly self-crossing
            ang = rng.uniform(0, 2 * np.pi, m)
        elif k == 2 and m > 3:  # two neighbours swapped: a local bow-tie
            j = int(rng.integers(0, m - 1))
            ang[[j, j + 1]] = ang[[j + 1, j]]
        elif k == 3:  # winds twice around the centre: a pentagram-like star {m/2}
            m = 2 * int(rng.integers(2, 12)) + 1
            ang, r = np.linspace(0, 4 * np.pi, m, endpoint=False), rng.uniform(4, 8, m)
        elif k == 4:  # a repeated vertex, or a spike out and back along one ray
            j = int(rng.integers(0, m))
            ang = np.insert(ang, j, ang[j])
            r = np.insert(r, j, r[j] * rng.choice([1.0, 2.0]))
        pts = np.stack([1000 + r * np.cos(ang), 2000 + r * np.sin(ang)], -1)
        if k == 5:  # quantised to 0.5 px: collinear and repeated points happen
            pts = np.round(pts * 2) / 2
        rings.append(np.vstack([pts, pts[:1]]))
        kinds.append(k)
    kinds = np.array(kinds)
    xy = np.concatenate(rings)
    offs = np.concatenate([[0], np.cumsum([len(r) for r in rings])])
    known = star_simple_rings(xy, offs)
    valid = shapely.is_valid(shapely.polygons([shapely.linearrings(r) for r in rings]))
    assert not (known & ~valid).any()
    assert known[kinds == 0].all()  # nucleus-like outlines need no GEOS check
    assert not known[kinds == 3].any() and not valid[kinds == 3].any()
    assert (~valid[kinds == 1]).sum() > 300  # the mix does hold many invalid rings


def test_read_leaves_no_young_generation_scan_and_keeps_frozen_objects(tmp_path):
    """Features read are moved to the oldest GC generation (no scan of them all by the next
    young collection); a program's own frozen objects stay frozen."""
    import gc

    path = tmp_path / "n.geojson"
    write_geojson(path, [Feature(shapely.box(i, 0, i + 1, 1)) for i in range(3000)])
    ann = read_geojson(path)
    young = {id(o) for o in gc.get_objects(generation=0)} | {id(o) for o in gc.get_objects(generation=1)}
    assert not any(id(f) in young or id(f.geometry) in young for f in ann.features)
    assert gc.isenabled()
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        read_geojson(path)
        assert gc.get_freeze_count() == frozen
    finally:
        gc.unfreeze()
