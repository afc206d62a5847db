"""npe2 readers: slides (anything :func:`tiling.open_slide` opens) and GeoJSON (ours, QuPath's).

A slide becomes a lazy multiscale RGB image (one dask array per level). A GeoJSON file
becomes a Shapes layer (polygons/lines, labelled) and/or a Points layer (points); a large
detection file (more than :data:`MANY` objects) becomes one Points layer at the centroids
(the dock widget adds the viewport editor). Layers carry their
:class:`~viewers.store.FeatureStore` and source path in ``metadata`` for the widget and writer.
"""

from __future__ import annotations

from pathlib import Path

GEOJSON_SUFFIXES = (".geojson", ".geojson.gz", ".json")
MANY = 20_000


def get_reader(path):
    """npe2 reader hook: a reader function for ``path``, or ``None`` if we cannot read it."""
    if isinstance(path, (list, tuple)):
        if len(path) != 1:
            return None
        path = path[0]
    name = str(path).lower()
    if name.endswith(GEOJSON_SUFFIXES):
        return read_geojson_layers
    return read_slide_layers


def read_slide_layers(path) -> list[tuple]:
    from tiling import open_slide
    from viewers.layers import slide_layer

    path = path[0] if isinstance(path, (list, tuple)) else path
    return [slide_layer(open_slide(path))]


def read_geojson_layers(path) -> list[tuple]:
    from wsi_pipeline.annotations import read_geojson
    from viewers import layers as L
    from viewers.store import FeatureStore

    path = Path(path[0] if isinstance(path, (list, tuple)) else path)
    ann = read_geojson(path)
    store = FeatureStore.from_features(ann.features)
    meta = {"wsi_path": str(path), "wsi_properties": ann.properties}
    stem = path.name.split(".")[0]
    out = []
    points = store.point_mask()
    if len(store) > MANY:
        data, kw, kind = L.points_layer(store, name=stem)
        out.append((data, kw, kind))
    else:
        if (store.alive & ~points).any():
            out.append(L.annotations_layer(store, name=stem, edge_width=4))
        if points.any():
            out.append(L.mitoses_layer(store, name=f"{stem} (points)", size=30))
    for _, kw, _ in out:
        kw["metadata"].update(meta)
    return out
