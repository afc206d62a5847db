"""Parquet measurement tables: round trip from features and from Instances; atomic write."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import shapely

from tiling.errors import InputError
from wsi_pipeline.annotations import Feature, instances_to_features, read_geojson, write_geojson
from wsi_pipeline.tables import features_table, instances_table, read_table, write_measurements_table, write_table


def _features():
    return [
        Feature(shapely.box(0, 0, 10, 20), object_type="detection", classification="Nucleus",
                measurements={"Detection probability": 0.9, "Area": 200.0}),
        Feature(shapely.Point(5.5, 7.25), object_type="detection", classification=None,
                measurements={"Detection probability": 0.4, "Perimeter": 3.0}),
        Feature(shapely.Polygon(), object_type="annotation", classification="Tumor", measurements={"id": 7.0}),
    ]


def test_features_round_trip(tmp_path):
    feats = _features()
    n = write_table(tmp_path / "t.parquet", feats, metadata={"mpp": [0.25, 0.25], "slide": "s1"})
    assert n == 3
    df = read_table(tmp_path / "t.parquet")
    assert list(df.columns) == ["id", "object_type", "class", "centroid_x", "centroid_y",
                                "Detection probability", "Area", "Perimeter", "measurement: id"]
    assert df["id"].tolist() == [f.id for f in feats]
    assert df["class"].isna().tolist() == [False, True, False]
    assert df["class"][0] == "Nucleus" and df["class"][2] == "Tumor"
    assert df.loc[0, ["centroid_x", "centroid_y"]].tolist() == [5.0, 10.0]
    assert df.loc[1, ["centroid_x", "centroid_y"]].tolist() == [5.5, 7.25]
    assert math.isnan(df.loc[2, "centroid_x"])  # empty geometry: no centroid
    assert df["Area"].tolist()[0] == 200.0 and math.isnan(df["Area"].tolist()[1])
    assert df["measurement: id"].tolist()[2] == 7.0
    assert df.attrs["metadata"] == {"mpp": [0.25, 0.25], "slide": "s1"}


def test_instances_table_matches_geojson_ids(tmp_path):
    from detectors.base import Instances

    geoms = [shapely.Point(100 * i, 50).buffer(4) for i in range(4)]
    inst = Instances(geoms, [0.1, 0.5, 0.7, 0.9], ["Nucleus"] * 3 + [None], {"Area": [1.0, 2.0, 3.0, 4.0]})
    feats = list(instances_to_features(inst))
    write_geojson(tmp_path / "n.geojson.gz", feats)
    assert write_measurements_table(tmp_path / "n.parquet", inst, ids=[f.id for f in feats]) == 4
    df = read_table(tmp_path / "n.parquet")
    back = read_geojson(tmp_path / "n.geojson.gz")
    assert df["id"].tolist() == [f.id for f in back]
    assert np.allclose(df["centroid_x"], [100 * i for i in range(4)]) and np.allclose(df["centroid_y"], 50)
    assert np.allclose(df["Detection probability"], [0.1, 0.5, 0.7, 0.9])
    assert df["class"].isna().tolist() == [False] * 3 + [True] and set(df["class"][:3]) == {"Nucleus"}
    # the same table from the features read back
    df2 = features_table(back.features).to_pandas()
    pd.testing.assert_frame_equal(df.drop(columns=["Detection probability"]).reset_index(drop=True),
                                  df2.drop(columns=["Detection probability"]), check_like=True)
    with pytest.raises(ValueError, match="3 ids for 4"):
        instances_table(inst, ids=["a", "b", "c"])


def test_atomic_and_bad_input(tmp_path):
    def feats():
        yield from _features()
        raise RuntimeError("stop")

    with pytest.raises(RuntimeError, match="stop"):
        write_table(tmp_path / "x.parquet", feats())
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "bad.parquet").write_bytes(b"not parquet")
    with pytest.raises(InputError, match="bad.parquet: not a readable Parquet"):
        read_table(tmp_path / "bad.parquet")
    with pytest.raises(InputError, match="file not found"):
        read_table(tmp_path / "missing.parquet")
