"""GeoJSON in and out for the margins package, plus atomic writes.

Uses :mod:`wsi_pipeline.annotations` (the project's QuPath-dialect reader/writer) when it is
importable; until then a small tolerant reader/writer of the same dialect stands in:
FeatureCollection or bare list, ``classification`` as ``{name, color|colorRGB}`` or a string,
``objectType`` or the old ``id: PathAnnotationObject``.
"""

from __future__ import annotations

import gzip
import json
import os
import tempfile
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import shapely
from shapely.geometry import mapping, shape

from tiling.errors import InputError


@dataclass
class GeoFeature:
    """One feature: geometry in level-0 ``(x, y)`` pixels and the properties margins use."""

    geometry: object
    classification: str | None = None
    object_type: str = "annotation"
    color: tuple[int, int, int] | None = None
    name: str | None = None
    measurements: dict[str, float] = field(default_factory=dict)
    extra: dict = field(default_factory=dict)


def read_features(path: str | Path) -> list[GeoFeature]:
    """Read a GeoJSON / QuPath export (``.gz`` allowed); raises :class:`InputError`."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "no such file")
    try:
        from wsi_pipeline.annotations import read_geojson
    except ImportError:
        return list(_read_fallback(path))
    return [
        GeoFeature(
            geometry=f.geometry,
            classification=f.classification,
            object_type=f.object_type,
            color=f.color,
            name=f.name,
            measurements=dict(f.measurements or {}),
            extra=dict(f.extra or {}),
        )
        for f in read_geojson(path).features
    ]


def _read_fallback(path: Path) -> Iterator[GeoFeature]:
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError, EOFError) as exc:
        raise InputError(path, f"not readable GeoJSON ({exc})") from None
    if isinstance(data, dict):
        data = data.get("features", [data] if data.get("type") == "Feature" else [])
    if not isinstance(data, list):
        raise InputError(path, "expected a FeatureCollection or a list of features")
    for raw in data:
        if not isinstance(raw, dict) or not raw.get("geometry"):
            continue
        try:
            geom = shape(raw["geometry"])
        except (ValueError, TypeError, AttributeError, KeyError, shapely.errors.GEOSException):
            continue
        if not geom.is_valid:
            geom = shapely.make_valid(geom)
        props = dict(raw.get("properties") or {})
        cls = props.pop("classification", None)
        name = cls.get("name") if isinstance(cls, dict) else cls
        color = cls.get("color") if isinstance(cls, dict) else None
        obj = props.pop("objectType", None) or _old_object_type(raw.get("id"))
        meas = props.pop("measurements", {}) or {}
        if isinstance(meas, list):
            meas = {m.get("name"): m.get("value") for m in meas if isinstance(m, dict)}
        yield GeoFeature(
            geometry=geom,
            classification=name,
            object_type=obj,
            color=tuple(color) if color else None,
            name=props.pop("name", None),
            measurements={k: v for k, v in meas.items() if isinstance(v, (int, float))},
            extra=props,
        )


def _old_object_type(old_id: object) -> str:
    text = str(old_id or "")
    if "Cell" in text:
        return "cell"
    if "Detection" in text:
        return "detection"
    return "annotation"


def write_features(path: str | Path, features: Iterable[GeoFeature], *, properties: dict | None = None) -> int:
    """Write a QuPath-dialect FeatureCollection atomically; returns the feature count."""
    features = list(features)
    try:
        from wsi_pipeline.annotations import Feature, write_geojson
    except ImportError:
        pass
    else:
        return write_geojson(
            path,
            [
                Feature(
                    geometry=f.geometry,
                    object_type=f.object_type,
                    classification=f.classification,
                    color=f.color,
                    measurements=f.measurements,
                    name=f.name,
                    extra=f.extra,
                )
                for f in features
            ],
            properties=properties,
        )
    out = {"type": "FeatureCollection", "features": [_to_json(f) for f in features]}
    if properties:
        out["properties"] = properties
    write_text_atomic(path, json.dumps(out))
    return len(features)


def _to_json(f: GeoFeature) -> dict:
    props: dict = {"objectType": f.object_type}
    if f.name:
        props["name"] = f.name
    if f.classification:
        cls: dict = {"name": f.classification}
        if f.color:
            cls["color"] = [int(c) for c in f.color]
        props["classification"] = cls
    if f.measurements:
        props["measurements"] = {k: float(v) for k, v in f.measurements.items()}
    props.update(f.extra)
    return {"type": "Feature", "id": str(uuid.uuid4()), "geometry": mapping(f.geometry), "properties": props}


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling of ``path`` (same suffix); rename it into place on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except OSError as exc:
        tmp_path.unlink(missing_ok=True)
        raise InputError(path, f"cannot write ({exc.strerror or exc})") from None
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
