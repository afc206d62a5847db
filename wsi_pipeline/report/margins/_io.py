"""GeoJSON in and out for the margins package (through :mod:`wsi_pipeline.annotations`, which
reads QuPath 0.2-0.4 exports), plus atomic writes of the other outputs."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from tiling.errors import InputError
from wsi_pipeline.atomic import atomic_path, write_text_atomic  # noqa: F401 (re-exported for margins)
from wsi_pipeline.annotations import Feature, read_geojson, write_geojson


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


def content_id(f: GeoFeature, index: int, file_name: str) -> str:
    """A UUID derived from the file name, the feature's place, class, name and geometry: a rerun
    on the same results writes the same ids (and the same bytes)."""
    import hashlib
    import uuid

    digest = hashlib.sha256(f.geometry.wkb if f.geometry is not None else b"").hexdigest()
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"wsi-pipeline/{file_name}/{index}/{f.classification}/{f.name}/{digest}"))


def write_features(path: str | Path, features: Iterable[GeoFeature], *, properties: dict | None = None) -> int:
    """Write a QuPath-dialect FeatureCollection atomically (ids from :func:`content_id`);
    returns the feature count."""
    feats = [
        Feature(
            geometry=f.geometry,
            object_type=f.object_type,
            classification=f.classification,
            color=f.color,
            measurements=f.measurements,
            id=content_id(f, i, Path(path).name),
            name=f.name,
            extra=f.extra,
        )
        for i, f in enumerate(features)
    ]
    return write_geojson(path, feats, properties=properties)
