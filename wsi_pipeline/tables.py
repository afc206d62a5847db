"""Per-object measurement tables as Parquet (one row per object).

Columns: ``id`` (the feature's UUID, the same as in the GeoJSON), ``object_type``,
``class`` (classification name, null when unclassified), ``centroid_x`` / ``centroid_y``
(level-0 pixels), then one float64 column per measurement (NaN where an object lacks it).
The file is written under a temporary name and renamed, so a failed write leaves nothing.

    table = features_table(features)            # or instances_table(instances)
    write_table("nuclei.parquet", table, metadata={"mpp": [0.25, 0.25]})
    df = read_table("nuclei.parquet")           # pandas DataFrame
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import shapely

from tiling.errors import InputError
from wsi_pipeline.atomic import atomic_path
from wsi_pipeline.annotations.convert import SCORE_MEASUREMENT
from wsi_pipeline.annotations.feature import Feature, new_id

if TYPE_CHECKING:
    from detectors.base import Instances

FIXED_COLUMNS = ("id", "object_type", "class", "centroid_x", "centroid_y")
_META_KEY = b"wsi_pipeline"


def _centroids(geoms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N,) geometries -> (N,) x and (N,) y of centroids (NaN for empty or missing)."""
    if len(geoms) == 0:
        return np.empty(0), np.empty(0)
    x = np.full(len(geoms), np.nan)
    y = np.full(len(geoms), np.nan)
    ok = ~(shapely.is_missing(geoms) | shapely.is_empty(geoms))
    if ok.any():
        c = shapely.centroid(geoms[ok])
        x[ok], y[ok] = shapely.get_x(c), shapely.get_y(c)
    return x, y


def _column_name(name: str) -> str:
    return f"measurement: {name}" if name in FIXED_COLUMNS else name


def _as_float(v: Any) -> float:
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    return math.nan


def features_table(features: Iterable[Feature]) -> pa.Table:
    """Features -> Arrow table (columns as in the module docstring, measurements in first-seen order)."""
    feats = list(features)
    geoms = np.empty(len(feats), dtype=object)
    geoms[:] = [f.geometry for f in feats]
    cx, cy = _centroids(geoms)
    names: dict[str, None] = {}
    for f in feats:
        for k in f.measurements:
            names.setdefault(k)
    cols: dict[str, Any] = {
        "id": pa.array([f.id for f in feats], pa.string()),
        "object_type": pa.array([f.object_type for f in feats], pa.string()),
        "class": pa.array([f.classification for f in feats], pa.string()),
        "centroid_x": pa.array(cx, pa.float64()),
        "centroid_y": pa.array(cy, pa.float64()),
    }
    for k in names:
        vals = np.fromiter((_as_float(f.measurements.get(k)) for f in feats), dtype=np.float64, count=len(feats))
        cols[_column_name(k)] = pa.array(vals, pa.float64())
    return pa.table(cols)


def instances_table(
    instances: "Instances",
    *,
    ids: list[str] | None = None,
    object_type: str = "detection",
    score_name: str = SCORE_MEASUREMENT,
) -> pa.Table:
    """:class:`detectors.base.Instances` (level-0 coordinates) -> Arrow table.

    ids : one id per instance (e.g. the ids given to the GeoJSON features, so rows and
        features match); fresh UUIDs when ``None``.
    """
    n = len(instances)
    if ids is None:
        ids = [new_id() for _ in range(n)]
    if len(ids) != n:
        raise ValueError(f"{len(ids)} ids for {n} instances")
    cx, cy = _centroids(np.asarray(instances.geometry, dtype=object))
    labels = [None if (v is None or v == "" or (isinstance(v, float) and math.isnan(v))) else str(v)
              for v in instances.label.tolist()]
    cols: dict[str, Any] = {
        "id": pa.array(ids, pa.string()),
        "object_type": pa.array([object_type] * n, pa.string()),
        "class": pa.array(labels, pa.string()),
        "centroid_x": pa.array(cx, pa.float64()),
        "centroid_y": pa.array(cy, pa.float64()),
        _column_name(score_name): pa.array(instances.score.astype(np.float64), pa.float64()),
    }
    for k, v in instances.measurements.items():
        cols[_column_name(k)] = pa.array(v, pa.float64())
    return pa.table(cols)


def write_table(
    path: str | os.PathLike,
    table: pa.Table | pd.DataFrame | Iterable[Feature],
    *,
    metadata: dict[str, Any] | None = None,
    compression: str = "zstd",
) -> int:
    """Write ``table`` (Arrow table, DataFrame, or features) to Parquet atomically; returns rows.

    metadata : JSON-serialisable dict stored in the file's schema metadata (e.g. mpp, slide name).
    """
    if isinstance(table, pd.DataFrame):
        table = pa.Table.from_pandas(table, preserve_index=False)
    elif not isinstance(table, pa.Table):
        table = features_table(table)
    if metadata:
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), _META_KEY: json.dumps(metadata)})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression=compression)
    return table.num_rows


def read_table(path: str | os.PathLike) -> pd.DataFrame:
    """Parquet measurement table -> DataFrame (``df.attrs["metadata"]`` holds the stored metadata)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file not found")
    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as e:
        raise InputError(path, f"not a readable Parquet file ({e})") from None
    df = table.to_pandas()
    raw = (table.schema.metadata or {}).get(_META_KEY)
    df.attrs["metadata"] = json.loads(raw) if raw else {}
    return df


def write_measurements_table(
    path: str | os.PathLike,
    source: "Instances | Iterable[Feature]",
    *,
    ids: list[str] | None = None,
    object_type: str = "detection",
    metadata: dict[str, Any] | None = None,
) -> int:
    """One call for the results folder: Instances (with ``ids`` matching the GeoJSON
    features) or features -> atomic Parquet at ``path``; returns the row count."""
    if hasattr(source, "geometry") and hasattr(source, "score"):
        table = instances_table(source, ids=ids, object_type=object_type)
    else:
        if ids is not None:
            raise ValueError("ids are taken from the features themselves")
        table = features_table(source)
    return write_table(path, table, metadata=metadata)
