"""npe2 writers: a Shapes or Points layer back to QuPath-dialect GeoJSON (atomic; ``.gz`` gzipped).

Layers read from our files keep ids and every property of untouched objects
(see :func:`viewers.layers.layer_features`).
"""

from __future__ import annotations


def _write(path: str, data, attributes: dict, shape_type) -> list[str]:
    from wsi_pipeline.annotations import write_geojson
    from viewers.layers import layer_features

    meta = attributes.get("metadata") or {}
    feats = layer_features(data, shape_type=shape_type, features=attributes.get("features"),
                           store=meta.get("wsi_store"))
    path = str(path)
    if not path.endswith((".geojson", ".geojson.gz", ".json")):
        path += ".geojson"
    write_geojson(path, feats, properties=meta.get("wsi_properties") or None)
    return [path]


def write_shapes(path: str, data, attributes: dict) -> list[str]:
    """Shapes layer -> GeoJSON polygons/lines."""
    return _write(path, data, attributes, list(attributes.get("shape_type") or ["polygon"] * len(data)))


def write_points(path: str, data, attributes: dict) -> list[str]:
    """Points layer -> GeoJSON points."""
    return _write(path, data, attributes, None)

