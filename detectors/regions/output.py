"""Writing and showing a :class:`RegionMap`: results-folder files, napari Labels data, overview layers.

Files in a results folder (both written atomically):

``regions.geojson``  QuPath annotations, one MultiPolygon per class present (level-0 px),
                     measurement ``Area mm^2``; FeatureCollection properties as given
                     (e.g. the slide's bounds offsets) plus ``regions`` (raster metadata).
``regions.npy``      the (H, W) uint8 label raster; its ``um_per_px`` and ``downsample`` go
                     in summary.json under ``"regions"`` (:meth:`RegionMap.to_dict`).
``slide.ome.zarr/labels/regions``  the same raster as an NGFF 0.4 label image when the run
                     writes the OME-Zarr (:func:`write_regions_labels`).

GeoJSON writing lives in :mod:`wsi_pipeline.annotations` and the overview drawing in
:mod:`wsi_pipeline.overview`; they are imported inside the functions that need them.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from detectors.regions.regionmap import AREA_MEASUREMENT, CLASSES, COLORS, LABELS, RegionMap

GEOJSON = "regions.geojson"
RASTER = "regions.npy"


def write_regions(out_dir, region_map: RegionMap, properties: dict | None = None, *, id_key: str | None = None) -> dict:
    """Write ``regions.geojson`` and ``regions.npy`` into ``out_dir``; return the summary
    entry (``region_map.to_dict()``) for summary.json's ``"regions"``.

    ``id_key`` (e.g. the slide id): each class' annotation gets a UUID derived from it and
    the class name, so a rerun writes the same file; without it the ids are random."""
    import uuid

    from wsi_pipeline.annotations import write_geojson
    from wsi_pipeline.atomic import write_bytes_atomic

    out = Path(out_dir)
    meta = region_map.to_dict()
    props = {**(properties or {}), "regions": {k: meta[k] for k in ("um_per_px", "downsample", "classes")}}
    features = region_map.to_features()
    if id_key is not None:
        for f in features:
            f.id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"wsi-pipeline/{id_key}/region/{f.classification}"))
    write_geojson(out / GEOJSON, features, properties=props)
    buf = io.BytesIO()
    np.save(buf, region_map.labels, allow_pickle=False)
    write_bytes_atomic(out / RASTER, buf.getvalue())
    return meta


def write_regions_labels(store, region_map: RegionMap, *, name: str = "regions") -> Path:
    """Add the map to an OME-Zarr (``slide.ome.zarr`` from :func:`tiling.omezarr.write_omezarr`)
    as the NGFF 0.4 label image ``labels/regions``: one level per image level, class colours
    and properties (``class``, ``Area mm^2``) in ``image-label``. Returns its path."""
    from tiling.omezarr import write_labels

    areas = region_map.area_mm2()
    colors = {0: (0, 0, 0, 0), **{LABELS[n]: (*COLORS[n], 255) for n in CLASSES}}
    props = {LABELS[n]: {"class": n, AREA_MEASUREMENT: round(areas[n], 6)} for n in CLASSES}
    return write_labels(store, region_map.labels, downsample=region_map.downsample, name=name,
                        colors=colors, properties=props)


def read_regions(out_dir, summary_regions: dict) -> RegionMap:
    """The :class:`RegionMap` of a results folder (``regions.npy`` + summary.json's entry)."""
    labels = np.load(Path(out_dir) / RASTER, allow_pickle=False)
    return RegionMap.from_dict(summary_regions, labels)


def napari_labels(region_map: RegionMap, *, opacity: float = 0.45) -> tuple[np.ndarray, dict, str]:
    """A napari layer-data tuple ``(data, kwargs, "labels")`` with no napari import:
    data (H, W) uint8 labels; kwargs name, scale (level-0 px per label px, row/col),
    translate (half a pixel so label pixel centres sit at their level-0 centres),
    opacity, ``colormap`` as {label: (r, g, b, a) floats} and a legend in ``metadata``.

    (napari >= 0.5 takes ``colormap=DirectLabelColormap(color_dict=...)``; the caller wraps
    the dict; older napari takes it as ``color=``.)
    """
    ds = float(region_map.downsample)
    colors = {0: (0.0, 0.0, 0.0, 0.0), None: (0.0, 0.0, 0.0, 0.0)}
    for name in CLASSES:
        r, g, b = COLORS[name]
        colors[LABELS[name]] = (r / 255.0, g / 255.0, b / 255.0, 1.0)
    kwargs = {
        "name": "Tissue regions",
        "scale": (ds, ds),
        "translate": (0.5 * (ds - 1), 0.5 * (ds - 1)),
        "opacity": opacity,
        "colormap": colors,
        "metadata": {"legend": legend(), "um_per_px": region_map.um_per_px},
    }
    return region_map.labels, kwargs, "labels"


def legend() -> list[tuple[int, str, tuple[int, int, int]]]:
    """``[(label value, class name, (r, g, b)), ...]`` for the five classes."""
    return [(LABELS[n], n, COLORS[n]) for n in CLASSES]


def overview_layers(region_map: RegionMap, *, fill_alpha: float = 0.30, width: int = 1) -> list:
    """:class:`wsi_pipeline.overview.Layer` per class present (semi-transparent fill in the
    class colour), to pass to ``draw_layers`` before nuclei/mitoses; Dermis is outline-only
    so the stain stays readable."""
    from wsi_pipeline.overview import Layer

    layers = []
    for name, geom in region_map.geometries().items():
        alpha = 0.0 if name == "Dermis" else fill_alpha
        layers.append(Layer((geom,), COLORS[name], width=width, fill_alpha=alpha))
    return layers


def overview_legend(region_map: RegionMap) -> list[tuple[str, tuple[int, int, int]]]:
    """``[(label text, (r, g, b)), ...]`` for the classes present, with their areas in mm²."""
    areas = region_map.area_mm2()
    return [(f"{n} {areas[n]:.2f} mm²", COLORS[n]) for n in CLASSES if areas[n] > 0]
