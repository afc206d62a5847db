"""Load ground truth and predictions as label images for :mod:`wsi_pipeline.evaluation.metrics`.

Formats (chosen by file name):

* GeoJSON (``.geojson``, ``.json``, ``.geojson.gz``): ours and QuPath's; Polygon and
  MultiPolygon features (a cell's ``nucleusGeometry`` is used when present); Points are
  ignored. Coordinates are QuPath's: pixel ``(c, r)`` covers ``[c, c+1] x [r, r+1]``, so a
  pixel belongs to an object when its centre is inside the polygon.
* MoNuSeg / Aperio XML (``.xml``): ``Annotations/Annotation/Regions/Region/Vertices/Vertex``
  with ``X``, ``Y`` attributes. Vertices are pixel indices on the object's outline, so the
  outline pixels belong to the object (filled polygon plus its perimeter).
* Label images (``.tif``, ``.tiff``, ``.png``): 2-D integer images, 0 = background; a
  binary mask (values 0/1 or 0/255) is split into connected components.

Objects drawn later overwrite earlier ones where they overlap.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import shapely
from skimage.draw import polygon as fill_polygon

from tiling.errors import InputError

POLYGON_SUFFIXES = (".geojson", ".json", ".geojson.gz", ".json.gz")
XML_SUFFIXES = (".xml",)
LABEL_SUFFIXES = (".tif", ".tiff", ".png")
#: When a directory holds several files with one stem, the first kind found wins.
PRIORITY = POLYGON_SUFFIXES + XML_SUFFIXES + LABEL_SUFFIXES


def suffix_of(path: Path) -> str | None:
    """The recognised (possibly double) suffix of ``path``, lower case, or None."""
    name = path.name.lower()
    for s in PRIORITY:
        if name.endswith(s):
            return s
    return None


def stem_of(path: Path) -> str:
    s = suffix_of(path)
    return path.name[: -len(s)] if s else path.stem


def read_polygons_geojson(path: Path) -> list:
    """Polygon geometries (a cell's nucleus when it has one) from a GeoJSON file, any dialect
    :func:`wsi_pipeline.annotations.read_geojson` reads; Points and lines are skipped."""
    from wsi_pipeline.annotations import read_geojson

    out = []
    for f in read_geojson(path).features:
        geom = f.nucleus_geometry if f.nucleus_geometry is not None else f.geometry
        if isinstance(geom, (shapely.Polygon, shapely.MultiPolygon)) and not geom.is_empty:
            out.append(geom)
    return out


def read_vertices_xml(path: Path) -> list[np.ndarray]:
    """(n_i, 2) arrays of (x, y) vertices, one per Region of a MoNuSeg/Aperio XML file."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as exc:
        raise InputError(path, f"cannot read XML ({exc})") from None
    regions = []
    for region in root.iter("Region"):
        try:
            xy = [(float(v.get("X")), float(v.get("Y"))) for v in region.iter("Vertex")]
        except (TypeError, ValueError):
            raise InputError(path, "a Vertex lacks numeric X/Y attributes") from None
        if len(xy) >= 3:
            regions.append(np.asarray(xy))
    return regions


def _paint(labels: np.ndarray, rr: np.ndarray, cc: np.ndarray, value: int) -> None:
    h, w = labels.shape
    ok = (rr >= 0) & (rr < h) & (cc >= 0) & (cc < w)
    labels[rr[ok], cc[ok]] = value


def polygons_to_labels(geoms: list, shape: tuple[int, int]) -> np.ndarray:
    """Rasterise shapely (Multi)Polygons (pixel-edge coordinates) into an ``(H, W)`` int32 image."""
    labels = np.zeros(shape, np.int32)
    for i, geom in enumerate(geoms, start=1):
        for poly in getattr(geom, "geoms", [geom]):
            if not isinstance(poly, shapely.Polygon) or poly.is_empty:
                continue
            ext = np.asarray(poly.exterior.coords)
            rr, cc = fill_polygon(ext[:, 1] - 0.5, ext[:, 0] - 0.5, shape)
            _paint(labels, rr, cc, i)
            for hole in poly.interiors:
                hxy = np.asarray(hole.coords)
                rr, cc = fill_polygon(hxy[:, 1] - 0.5, hxy[:, 0] - 0.5, shape)
                keep = labels[rr, cc] == i
                labels[rr[keep], cc[keep]] = 0
    return labels


def _outline_pixels(xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixels on the closed polyline through ``(n, 2)`` (x, y) vertices (rows, cols)."""
    a = np.round(xy).astype(np.int64)
    b = np.roll(a, -1, axis=0)
    steps = np.maximum(np.abs(b - a).max(axis=1), 1)
    seg = np.repeat(np.arange(len(a)), steps)
    frac = (np.arange(steps.sum()) - np.repeat(np.cumsum(steps) - steps, steps)) / np.repeat(steps, steps)
    pts = np.round(a[seg] + (b[seg] - a[seg]) * frac[:, None]).astype(np.int64)
    return pts[:, 1], pts[:, 0]


def vertices_to_labels(regions: list[np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    """Rasterise outline-pixel polygons (MoNuSeg XML convention) into an ``(H, W)`` int32 image."""
    labels = np.zeros(shape, np.int32)
    for i, xy in enumerate(regions, start=1):
        rr, cc = fill_polygon(xy[:, 1], xy[:, 0], shape)
        _paint(labels, rr, cc, i)
        rr, cc = _outline_pixels(xy)
        _paint(labels, rr, cc, i)
    return labels


def read_label_image(path: Path) -> np.ndarray:
    """A label image file as ``(H, W)`` int32 (binary masks split into connected components)."""
    try:
        if path.suffix.lower() == ".png":
            from PIL import Image

            with Image.open(path) as im:
                arr = np.asarray(im)
        else:
            import tifffile

            arr = tifffile.imread(path)
    except Exception as exc:  # noqa: BLE001 - any decoder failure is the user's file
        raise InputError(path, f"cannot read image ({exc})") from None
    arr = np.squeeze(arr)
    if arr.ndim != 2:
        raise InputError(path, f"expected a 2-D label image, got shape {arr.shape} (an RGB picture is not a label image)")
    if not np.issubdtype(arr.dtype, np.integer) and not np.issubdtype(arr.dtype, np.bool_):
        if not np.all(np.mod(arr, 1) == 0):
            raise InputError(path, f"label image has non-integer values ({arr.dtype})")
    arr = arr.astype(np.int64)
    if arr.min() < 0:
        raise InputError(path, "label image has negative values")
    if set(np.unique(arr).tolist()) <= {0, 1, 255} and arr.max() > 0:
        from scipy import ndimage

        arr, _ = ndimage.label(arr > 0)
    return arr.astype(np.int32)


def _xml_extent(regions: list[np.ndarray]) -> tuple[int, int]:
    top = np.max([r.max(axis=0) for r in regions], axis=0) if regions else np.zeros(2)
    return int(np.ceil(top[1])) + 1, int(np.ceil(top[0])) + 1


def _geojson_extent(geoms: list) -> tuple[int, int]:
    b = shapely.total_bounds(np.asarray(geoms, dtype=object)) if geoms else np.zeros(4)
    return int(np.ceil(b[3])), int(np.ceil(b[2]))


def load_labels(path: str | Path, *, shape: tuple[int, int] | None = None) -> np.ndarray:
    """Load any supported file as an ``(H, W)`` int32 label image.

    ``shape`` is needed for polygon formats when the other side of the comparison fixes
    it; otherwise the extent of the polygons is used.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "no such file")
    kind = suffix_of(path)
    if kind in LABEL_SUFFIXES:
        labels = read_label_image(path)
        if shape is not None and labels.shape != tuple(shape):
            raise InputError(path, f"label image is {labels.shape}, the other side is {tuple(shape)}")
        return labels
    if kind in XML_SUFFIXES:
        regions = read_vertices_xml(path)
        return vertices_to_labels(regions, shape or _xml_extent(regions))
    if kind in POLYGON_SUFFIXES:
        geoms = read_polygons_geojson(path)
        return polygons_to_labels(geoms, shape or _geojson_extent(geoms))
    raise InputError(path, "unknown format; use .geojson/.json(.gz), .xml (MoNuSeg), or a .tif/.png label image")


def extent_of(path: str | Path) -> tuple[int, int]:
    """``(H, W)`` of a label image, or the extent covering a polygon file's objects."""
    path = Path(path)
    kind = suffix_of(path)
    if kind in XML_SUFFIXES:
        return _xml_extent(read_vertices_xml(path))
    if kind in POLYGON_SUFFIXES:
        return _geojson_extent(read_polygons_geojson(path))
    return load_labels(path).shape


def load_pair(pred: str | Path, gt: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(prediction, ground truth) label images on one common ``(H, W)`` grid."""
    pred, gt = Path(pred), Path(gt)
    raster = [p for p in (gt, pred) if suffix_of(p) in LABEL_SUFFIXES]
    if raster:
        shape = load_labels(raster[0]).shape
    else:
        a, b = extent_of(gt), extent_of(pred)
        shape = (max(a[0], b[0]), max(a[1], b[1]))
    return load_labels(pred, shape=shape), load_labels(gt, shape=shape)


def pair_files(pred_dir: Path, gt_dir: Path) -> list[tuple[str, Path, Path]]:
    """(stem, pred file, gt file) for stems present in both folders; the best format per stem."""
    def best(folder: Path) -> dict[str, Path]:
        found: dict[str, Path] = {}
        for p in sorted(folder.iterdir()):
            s = suffix_of(p)
            if s is None or not p.is_file():
                continue
            stem = stem_of(p)
            if stem not in found or PRIORITY.index(s) < PRIORITY.index(suffix_of(found[stem])):
                found[stem] = p
        return found

    preds, gts = best(pred_dir), best(gt_dir)
    common = sorted(set(preds) & set(gts))
    if not common:
        raise InputError(pred_dir, f"no file here shares a name (stem) with a file in {gt_dir}")
    return [(s, preds[s], gts[s]) for s in common]
