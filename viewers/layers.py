"""Conversions between our objects and napari layer data, with no Qt and no napari import.

Each ``*_layer`` function returns a napari *LayerData* tuple ``(data, kwargs, layer_type)``
that ``viewer._add_layer_from_data`` or an npe2 reader can use directly. World coordinates
are level-0 slide pixels; napari is ``(row, col)`` = ``(y, x)``: :mod:`tiling.coords` is the
one place that swaps.

Geometry <-> napari shapes: a geometry becomes one or more *parts*
``(shape_type, (V, 2) row-col vertices)`` (polygon exteriors, paths); parts of one feature
share a ``row`` feature value, and :func:`geometry_from_parts` rebuilds it.
"""

from __future__ import annotations

import math

import numpy as np
import shapely

from tiling.coords import rc_to_xy as _rc_to_xy
from tiling.coords import xy_to_rc
from viewers.store import FeatureStore
from wsi_pipeline.mitosis_classes import UNVALIDATED_CLASS, VALIDATED_CLASS

RGBA = tuple[float, float, float, float]
DEFAULT_COLOR = (0, 120, 220)
#: Probability colour ramp (mitoses): blue (low) -> cyan -> green -> yellow (high). Chosen to
#: stand out on pink/purple H&E; no magenta or red.
PROBABILITY_RAMP = np.array([[0.25, 0.45, 1.0], [0.0, 0.9, 0.9], [0.3, 1.0, 0.2], [1.0, 1.0, 0.0]])
#: Marker symbol per mitosis class (anything else: "diamond").
#: Density colour map: transparent where empty, then dark violet -> red -> orange -> pale yellow,
#: so the slide stays visible under low densities.
DENSITY_COLORMAP = {
    "name": "wsi-density",
    "colors": [[0, 0, 0, 0], [0.25, 0.05, 0.45, 0.45], [0.75, 0.15, 0.35, 0.6], [1.0, 0.55, 0.05, 0.7],
               [1.0, 0.95, 0.5, 0.8]],
    "controls": [0.0, 0.05, 0.4, 0.75, 1.0],
}
MITOSIS_SYMBOLS = {VALIDATED_CLASS: "ring", UNVALIDATED_CLASS: "square", "Imposter": "x"}


def rc_to_xy(rc: np.ndarray) -> np.ndarray:
    """``(V, 2+)`` napari ``(..., row, col)`` -> ``(V, 2)`` ``(x, y)`` (extra leading dims dropped)."""
    return _rc_to_xy(np.asarray(rc, np.float64)[:, -2:])


def rgba(color: tuple[int, int, int] | None, alpha: float = 1.0) -> RGBA:
    """``(r, g, b)`` 0..255 (or ``None``: our default blue) -> RGBA floats 0..1."""
    r, g, b = color if color is not None else DEFAULT_COLOR
    return (r / 255, g / 255, b / 255, alpha)


def store_class_colors(store: FeatureStore) -> dict[str | None, tuple[int, int, int]]:
    """Class name -> ``(r, g, b)`` for every class in ``store`` (recorded colour, else the default table)."""
    from wsi_pipeline.annotations.colors import class_color

    out = {}
    for _, name, color in store.categories:
        out.setdefault(name, color or class_color(name) or DEFAULT_COLOR)
    return out


def category_rgba(store: FeatureStore, *, alpha: float = 1.0) -> np.ndarray:
    """``(n_categories, 4)`` RGBA per category (index with ``store.category``)."""
    colors = store_class_colors(store)
    table = [rgba(colors[name], alpha) for _, name, _ in store.categories]
    return np.array(table or [rgba(None, alpha)], np.float32).reshape(-1, 4)


def probability_rgba(p: np.ndarray, *, alpha: float = 1.0) -> np.ndarray:
    """``(N,)`` probabilities in 0..1 (NaN: treated as 1) -> ``(N, 4)`` RGBA on :data:`PROBABILITY_RAMP`."""
    p = np.nan_to_num(np.asarray(p, np.float64), nan=1.0).clip(0, 1)
    pos = p * (len(PROBABILITY_RAMP) - 1)
    lo = np.floor(pos).astype(int).clip(0, len(PROBABILITY_RAMP) - 2)
    t = (pos - lo)[:, None]
    rgb = PROBABILITY_RAMP[lo] * (1 - t) + PROBABILITY_RAMP[lo + 1] * t
    return np.concatenate([rgb, np.full((len(p), 1), alpha)], axis=1).astype(np.float32)


# ---- slide --------------------------------------------------------------------------------
def slide_levels(slide) -> list:
    """Lazy ``(h, w, 3)`` uint8 dask arrays, one per level, level 0 first."""
    try:
        from tiling.pyramid import slide_pyramid  # the shared helper, when present
    except ImportError:
        slide_pyramid = None
    if slide_pyramid is not None:
        return list(slide_pyramid(slide))
    return [_lazy_level(slide, level) for level in range(slide.level_count)]


def _lazy_level(slide, level: int, *, chunk: int = 1024):
    import dask.array as da

    w, h = slide.level_dimensions[level]
    ds = slide.level_downsamples[level]

    def read(block_info=None):
        (y0, y1), (x0, x1), _ = block_info[None]["array-location"]
        loc = (int(round(x0 * ds)), int(round(y0 * ds)))
        return slide.read_region(loc, (x1 - x0, y1 - y0), level=level)

    chunks = (_chunks(h, chunk), _chunks(w, chunk), (3,))
    return da.map_blocks(read, chunks=chunks, dtype=np.uint8, name=f"slide-{id(slide)}-L{level}")


def _chunks(n: int, c: int) -> tuple[int, ...]:
    return tuple([c] * (n // c) + ([n % c] if n % c else []))


def slide_layer(slide, *, name: str | None = None) -> tuple:
    """The slide as a lazy multiscale RGB image layer in level-0 pixel coordinates."""
    levels = slide_levels(slide)
    kwargs = {"name": name or slide.path.name, "rgb": True, "multiscale": len(levels) > 1,
              "contrast_limits": (0, 255), "metadata": {"wsi_slide": slide}}
    return (levels if len(levels) > 1 else levels[0], kwargs, "image")


# ---- nuclei: every object as a point --------------------------------------------------------
def points_layer(store: FeatureStore, *, name: str, size: float = 24.0, alpha: float = 0.9,
                 visible: np.ndarray | None = None) -> tuple:
    """All rows of ``store`` as one Points layer at their centroids (row ``i`` is point ``i``).

    Colour by class; deleted rows (and rows outside ``visible``) are hidden via ``shown``.
    """
    data = xy_to_rc(store.centroids)
    face = category_rgba(store, alpha=alpha)[store.category]
    shown = store.alive if visible is None else store.alive & visible
    kwargs = {
        "name": name, "size": size, "face_color": face, "border_width": 0, "shown": shown,
        "canvas_size_limits": (2, 10000), "blending": "translucent_no_depth",
        "metadata": {"wsi_store": store, "wsi_role": "overview"},
    }
    return (data, kwargs, "points")


def mitoses_layer(store: FeatureStore, *, name: str = "Mitoses", size: float = 60.0,
                  probability: str = "Probability") -> tuple:
    """Point-like detections (mitoses) as an editable Points layer, coloured by ``probability``.

    Features: ``row`` (store row), ``class``, ``probability``; symbol per class
    (:data:`MITOSIS_SYMBOLS`), face transparent so the figure underneath stays visible.
    """
    rows = np.flatnonzero(store.alive & store.point_mask())
    xy, idx = shapely.get_coordinates(store.geometries(rows), return_index=True)
    rows = rows[idx]  # a multipoint gives one point per member, sharing its row
    p = store.measurement(probability, rows)
    cls = store.classification(rows)
    kwargs = {
        "name": name, "size": size,
        "features": {"row": rows, "class": cls, "probability": np.nan_to_num(p, nan=1.0)},
        "feature_defaults": {"row": -1, "class": VALIDATED_CLASS, "probability": 1.0},
        "symbol": [MITOSIS_SYMBOLS.get(c, "diamond") for c in cls] or "ring",
        "face_color": probability_rgba(p) if len(rows) else "yellow",
        "border_color": "black", "border_width": 0.06, "border_width_is_relative": True,
        "metadata": {"wsi_store": store, "wsi_role": "points", "wsi_probability": probability},
    }
    return (xy_to_rc(xy), kwargs, "points")


# ---- shapes: annotations, and the nuclei in view --------------------------------------------
def geometry_parts(g) -> list[tuple[str, np.ndarray]]:
    """Shapes-layer parts of a shapely geometry: ``[(shape_type, (V, 2) row-col), ...]``.

    Polygons give their exterior (open ring; holes are not shown), lines give paths,
    multi-geometries one part each, points nothing (they go to a Points layer).
    """
    if g is None or g.is_empty:
        return []
    t = g.geom_type
    if t == "Polygon":
        return [("polygon", xy_to_rc(np.asarray(g.exterior.coords)[:-1]))]
    if t in ("LineString", "LinearRing"):
        return [("path", xy_to_rc(np.asarray(g.coords)))]
    if t.startswith("Multi") or t == "GeometryCollection":
        return [p for part in g.geoms for p in geometry_parts(part)]
    return []


def geometry_from_parts(parts: list[tuple[str, np.ndarray]]):
    """Inverse of :func:`geometry_parts` (also for napari ``rectangle``/``ellipse``/``line``)."""
    polys, lines = [], []
    for shape_type, rc in parts:
        xy = rc_to_xy(rc)
        if shape_type == "ellipse":
            xy = _ellipse_polygon(xy)
        if shape_type in ("polygon", "rectangle", "ellipse") and len(xy) >= 3:
            polys.append(shapely.Polygon(xy))
        elif shape_type in ("path", "line") and len(xy) >= 2:
            lines.append(shapely.LineString(xy))
    if polys and not lines:
        return polys[0] if len(polys) == 1 else shapely.MultiPolygon(polys)
    if lines and not polys:
        return lines[0] if len(lines) == 1 else shapely.MultiLineString(lines)
    return shapely.GeometryCollection(polys + lines) if polys or lines else None


def _ellipse_polygon(corners_xy: np.ndarray, n: int = 48) -> np.ndarray:
    """napari ellipse (4 bounding-box corners, ``(x, y)``) -> ``(n, 2)`` polygon."""
    c = corners_xy.mean(axis=0)
    a = corners_xy[1] - corners_xy[0]
    b = corners_xy[3] - corners_xy[0]
    t = np.linspace(0, 2 * math.pi, n, endpoint=False)[:, None]
    return c + np.cos(t) * a / 2 + np.sin(t) * b / 2


def label_of(store: FeatureStore, row: int) -> str:
    """What to print next to an annotation: its name, else its class, kept short."""
    from viewers.labels import short_label

    return short_label(store.names.get(row), store.categories[store.category[row]][1])


#: a vertex where the outline runs on straight (|sin| of the turn below this) is not drawn
STRAIGHT_SIN = 1e-3


def drawable(rc: np.ndarray, *, closed: bool) -> np.ndarray:
    """``rc`` (V, 2) without the vertices where the outline runs on straight or repeats a point.

    napari (0.9) draws the join of two exactly parallel edges, such as a star polygon's rays
    give now and then, as a spike ~60 edge widths long (on CMU-1: long straight lines through
    the nuclei layer). Dropping those vertices leaves the shape as it was (each moves it by
    less than ``STRAIGHT_SIN`` x its edges' length); a path keeps its ends."""
    rc = np.asarray(rc)
    if len(rc) < (4 if closed else 3):
        return rc
    new = np.r_[True, np.any(rc[1:] != rc[:-1], axis=1)]  # a repeated point: drawn once
    if closed and len(rc) > 1 and (rc[-1] == rc[0]).all():
        new[-1] = False
    rc = rc[new]
    p = rc.astype(np.float64)
    a = p - np.roll(p, 1, axis=0)
    b = np.roll(p, -1, axis=0) - p
    la, lb = np.hypot(a[:, 0], a[:, 1]), np.hypot(b[:, 0], b[:, 1])
    cross = np.abs(a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0])
    straight = (cross <= STRAIGHT_SIN * la * lb) & ((a * b).sum(axis=1) >= 0)
    if not closed:
        straight[0] = straight[-1] = False
    keep = ~straight
    return rc[keep] if keep.sum() >= (3 if closed else 2) else rc


def shapes_data(store: FeatureStore, rows: np.ndarray, *, with_labels: bool = False) -> dict:
    """Parts of ``rows`` as napari Shapes inputs: ``data``, ``shape_type``, ``features``, ``edge_color``.

    Points and empty geometries are skipped. ``features`` has ``row`` and ``class``
    (and ``label`` when ``with_labels``); one entry per part.
    """
    colors = store_class_colors(store)
    data, types, frows, fcls, labels, edge = [], [], [], [], [], []
    cls_of = store.classification(rows) if len(rows) else []
    for r, cls in zip(np.asarray(rows).tolist(), cls_of):
        g = store.override.get(r)
        if g is None:
            kind = store.kind[r]
            if kind != 2:  # points and empty: not shapes
                continue
            parts = [("polygon", xy_to_rc(store.vertices(r)))]
        else:
            parts = geometry_parts(g)
        for shape_type, rc in parts:
            data.append(drawable(rc, closed=shape_type == "polygon"))
            types.append(shape_type)
            frows.append(r)
            fcls.append(cls)
            edge.append(rgba(colors.get(cls)))
            if with_labels:
                labels.append(label_of(store, r))
    features = {"row": np.asarray(frows, np.int64), "class": np.asarray(fcls, object)}
    if with_labels:
        features["label"] = np.asarray(labels, object)
    return {"data": data, "shape_type": types, "features": features,
            "edge_color": np.asarray(edge, np.float32).reshape(-1, 4)}


def annotations_layer(store: FeatureStore, *, name: str, edge_width: float = 8.0, labels: bool = True,
                      face_alpha: float = 0.0, text_size: int = 10) -> tuple:
    """Every polygon/line of ``store`` as an editable Shapes layer (outlines, labelled)."""
    d = shapes_data(store, np.flatnonzero(store.alive), with_labels=labels)
    face = d["edge_color"].copy()
    face[:, 3] = face_alpha
    kwargs = {
        "name": name, "shape_type": d["shape_type"], "features": d["features"],
        "feature_defaults": {"row": -1, "class": None, **({"label": ""} if labels else {})},
        "edge_color": d["edge_color"] if len(d["data"]) else "yellow", "face_color": face if len(d["data"]) else "transparent",
        "edge_width": edge_width, "metadata": {"wsi_store": store, "wsi_role": "shapes"},
    }
    if labels:
        kwargs["text"] = {"string": "{label}", "size": text_size, "color": "black", "anchor": "upper_left",
                          "translation": [-4, 0]}
    return (d["data"], kwargs, "shapes")


# ---- density --------------------------------------------------------------------------------
def density_layer(store: FeatureStore, *, shape_xy: tuple[int, int], bin_px: int = 256, name: str = "Density",
                  mpp: float | None = None, colormap=None, blending: str = "translucent",
                  opacity: float = 0.5, visible: bool = True) -> tuple:
    """Objects per bin (per mm² when ``mpp`` is known) as an image over the slide.

    ``shape_xy`` is the slide's level-0 ``(width, height)``; bins are ``bin_px`` level-0
    pixels square, placed so bin ``(i, j)`` covers level-0 rows ``[i*bin, (i+1)*bin)``.
    """
    w, h = shape_xy
    nx, ny = max(1, math.ceil(w / bin_px)), max(1, math.ceil(h / bin_px))
    xy = store.centroids[store.alive]
    ok = np.isfinite(xy).all(axis=1)
    grid, _, _ = np.histogram2d(xy[ok, 1], xy[ok, 0], bins=(ny, nx), range=((0, ny * bin_px), (0, nx * bin_px)))
    grid = grid.astype(np.float32)
    if mpp:
        grid /= (bin_px * mpp / 1000.0) ** 2
    top = float(np.percentile(grid[grid > 0], 99)) if (grid > 0).any() else 1.0
    kwargs = {
        "name": name, "colormap": colormap or DENSITY_COLORMAP, "blending": blending, "opacity": opacity, "visible": visible,
        "scale": (bin_px, bin_px), "translate": (bin_px / 2 - 0.5, bin_px / 2 - 0.5),
        "contrast_limits": (0.0, max(top, 1e-6)),
        "metadata": {"wsi_role": "density", "wsi_units": "per mm²" if mpp else "per bin"},
    }
    return (grid, kwargs, "image")


# ---- back from layers -------------------------------------------------------------------------
def layer_features(data, *, shape_type: list[str] | None, features, store: FeatureStore | None = None,
                   object_type: str = "annotation") -> list:
    """A Shapes (``shape_type`` given) or Points layer's content as Features, for writing.

    Shapes sharing a ``row`` form one feature. With ``store`` (the layer came from one),
    each feature keeps its stored id and properties; geometry and class come from the layer.
    Rows of ``store`` absent from the layer are left out (deleted).
    """
    from wsi_pipeline.annotations import Feature
    from wsi_pipeline.annotations.colors import class_color

    k = len(data)
    cols = features if features is not None else {}
    rows = np.asarray(cols["row"], np.float64) if "row" in cols and len(cols["row"]) == k else np.full(k, -1.0)
    rows = np.nan_to_num(rows, nan=-1).astype(np.int64)
    classes = list(cols["class"]) if "class" in cols and len(cols["class"]) == k else [None] * k
    groups: dict[int, list[int]] = {}
    for i, r in enumerate(rows.tolist()):
        key = r if (store is not None and 0 <= r < store.n) else -(i + 1)
        groups.setdefault(key, []).append(i)
    out = []
    for key, idx in groups.items():
        if shape_type is None:
            xy = rc_to_xy(np.asarray(data)[idx])
            geom = shapely.Point(xy[0]) if len(xy) == 1 else shapely.MultiPoint(xy)
        else:
            geom = geometry_from_parts([(shape_type[i], np.asarray(data[i])) for i in idx])
        cls = classes[idx[0]] if isinstance(classes[idx[0]], str) else None
        if key >= 0:
            f = store.feature(key)
            if cls is not None and cls != f.classification:
                f.classification, f.color = cls, store.class_color(cls) or class_color(cls)
            if not _same_geometry(f.geometry, geom):
                f.geometry = geom
        else:
            f = Feature(geometry=geom, object_type=object_type, classification=cls, color=class_color(cls))
        out.append(f)
    return out


def _same_geometry(a, b) -> bool:
    if a is None or b is None:
        return a is b
    pa = [(t, drawable(rc, closed=t == "polygon")) for t, rc in geometry_parts(a)]  # as it was drawn
    pa = pa or [("point", xy_to_rc(np.asarray(shapely.get_coordinates(a))))]
    pb = geometry_parts(b) or [("point", xy_to_rc(np.asarray(shapely.get_coordinates(b))))]
    # napari keeps vertices as float32: differences below 0.01 px are storage, not edits
    return len(pa) == len(pb) and all(x[1].shape == y[1].shape and np.allclose(x[1], y[1], rtol=0, atol=1e-2)
                                      for x, y in zip(pa, pb))


# ---- nuclei at low zoom: a class-coloured raster -----------------------------------------------
def nuclei_raster(store: FeatureStore, *, shape_xy: tuple[int, int], bin_px: float,
                  visible: np.ndarray | None = None, levels: int = 3, alpha: int = 230) -> list[np.ndarray]:
    """Every live nucleus as a dot of its class colour on a transparent raster, per zoom level.

    Returns ``levels`` arrays ``(h_i, w_i, 4)`` uint8 RGBA, level ``i`` at ``bin_px * 4**i``
    level-0 pixels per raster pixel; a nucleus paints a plus-shaped 5-pixel dot at level 0,
    one pixel above. One texture instead of a million markers: draws at any zoom at the
    cost of an image.
    """
    w, h = shape_xy
    sel = store.alive if visible is None else store.alive & visible
    xy = store.centroids[sel]
    ok = np.isfinite(xy).all(axis=1)
    xy = xy[ok]
    colors = np.concatenate([(category_rgba(store)[:, :3] * 255).astype(np.uint8),
                             np.full((len(store.categories) or 1, 1), alpha, np.uint8)], axis=1)
    rgba_ = colors[store.category[sel][ok]]
    out = []
    for lv in range(levels):
        b = bin_px * 4**lv
        nx, ny = max(1, math.ceil(w / b)), max(1, math.ceil(h / b))
        img = np.zeros((ny, nx, 4), np.uint8)
        col = (xy[:, 0] // b).astype(np.int64)
        row = (xy[:, 1] // b).astype(np.int64)
        offsets = [(0, 0), (-1, 0), (1, 0), (0, -1), (0, 1)] if lv == 0 else [(0, 0)]
        for dr, dc in offsets:
            r, c = np.clip(row + dr, 0, ny - 1), np.clip(col + dc, 0, nx - 1)
            img[r, c] = rgba_
        out.append(img)
    return out


def nuclei_raster_layer(store: FeatureStore, *, shape_xy: tuple[int, int], bin_px: float, name: str,
                        visible: np.ndarray | None = None) -> tuple:
    """:func:`nuclei_raster` as a multiscale RGBA image layer over the slide."""
    data = nuclei_raster(store, shape_xy=shape_xy, bin_px=bin_px, visible=visible)
    kwargs = {"name": name, "rgb": True, "multiscale": True, "scale": (bin_px, bin_px),
              "translate": (bin_px / 2 - 0.5, bin_px / 2 - 0.5), "blending": "translucent",
              "metadata": {"wsi_store": store, "wsi_role": "raster", "wsi_bin": bin_px, "wsi_shape": shape_xy}}
    return (data, kwargs, "image")
