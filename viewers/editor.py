"""Editing napari layers that show part of a :class:`~viewers.store.FeatureStore`.

* :class:`LayerSync` remembers what it put into a Shapes or Points layer (``row`` feature per
  shape/point) and turns the difference between then and now into store edits: a row gone
  -> delete, vertices changed -> move, ``class`` changed -> reclassify, ``row == -1`` (drawn
  by the user) -> add. Whatever napari tool made the edit, the diff catches it.
* :class:`ViewportEditor` keeps a Shapes layer holding only the nuclei around the view
  (at most ``cap``); zoomed out past that it empties the layer and shows the all-nuclei
  Points layer instead. Edits are synced into the full set before every reload.

No Qt here (napari layers work without a window); the viewer hookup is in :mod:`viewers.session`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import shapely

from viewers.layers import (
    category_rgba, geometry_from_parts, nuclei_raster, rc_to_xy, rgba, shapes_data, store_class_colors,
)
from viewers.store import FeatureStore

Parts = list[tuple[str, np.ndarray]]


def _is_points(layer) -> bool:
    return type(layer).__name__ == "Points"


def _layer_parts(layer) -> tuple[np.ndarray, np.ndarray, list]:
    """``rows`` ``(K,)`` (-1 for new), ``classes`` ``(K,)`` and per-shape ``(shape_type, rc)``."""
    feats = layer.features
    k = len(layer.data)
    rows = np.full(k, -1, np.int64)
    classes = np.full(k, None, object)
    if "row" in feats and len(feats) == k:
        rows = np.nan_to_num(feats["row"].to_numpy(dtype=np.float64), nan=-1).astype(np.int64)
    if "class" in feats and len(feats) == k:
        classes = feats["class"].to_numpy(dtype=object)
    if _is_points(layer):
        data = np.asarray(layer.data)[:, -2:]
        parts = [("point", data[i : i + 1]) for i in range(k)]
    else:
        parts = [(t, np.asarray(d)[:, -2:]) for t, d in zip(layer.shape_type, layer.data)]
    return rows, classes, parts


def set_features(layer, features) -> None:
    """Replace ``layer.features`` keeping ``feature_defaults`` (napari resets them otherwise)."""
    defaults = {k: v.iloc[0] for k, v in layer.feature_defaults.items()} if len(layer.feature_defaults) else None
    layer.features = features
    if defaults:
        layer.feature_defaults = defaults


def _same(a: Parts, b: Parts) -> bool:
    if len(a) != len(b):
        return False
    return all(ta == tb and da.shape == db.shape and np.allclose(da, db, rtol=0, atol=1e-6)
               for (ta, da), (tb, db) in zip(a, b))


def _geometry(parts: Parts):
    if parts and parts[0][0] == "point":
        xy = rc_to_xy(np.concatenate([p[1] for p in parts]))
        return shapely.Point(xy[0]) if len(xy) == 1 else shapely.MultiPoint(xy)
    return geometry_from_parts(parts)


class LayerSync:
    """Turns edits in ``layer`` into edits of ``store`` (see the module docstring).

    default_class : class given to objects drawn without one.
    """

    def __init__(self, store: FeatureStore, layer, *, default_class: str | None = None) -> None:
        self.store = store
        self.layer = layer
        self.default_class = default_class
        self.loaded: dict[int, Parts] = {}
        self.snapshot()

    def snapshot(self) -> None:
        """Remember the layer's current content as the unedited state."""
        rows, _, parts = _layer_parts(self.layer)
        self.loaded = {}
        for r, p in zip(rows.tolist(), parts):
            if r >= 0:
                self.loaded.setdefault(r, []).append(p)

    def sync(self, *, reviewer: str | None = None) -> int:
        """Apply the layer's edits to the store; returns how many objects changed."""
        store = self.store
        rows, classes, parts = _layer_parts(self.layer)
        now: dict[int, Parts] = {}
        cls_now: dict[int, object] = {}
        new_idx = []
        for i, (r, c, p) in enumerate(zip(rows.tolist(), classes, parts)):
            if r < 0 or r >= store.n or r not in self.loaded:
                new_idx.append(i)
                continue
            now.setdefault(r, []).append(p)
            cls_now.setdefault(r, c)
        changed = 0
        for r in set(self.loaded) - set(now):
            store.delete(r)
            changed += 1
        current_cls = store.classification(np.fromiter(now, np.int64, len(now))) if now else []
        for (r, p), old_cls in zip(now.items(), current_cls):
            touched = False
            if not _same(p, self.loaded[r]):
                store.move(r, _geometry(p), reviewer=reviewer)
                touched = True
            c = cls_now[r]
            if isinstance(c, str) and c != old_cls:
                store.reclassify(r, c, reviewer=reviewer)
                touched = True
            changed += touched
        new_rows = []
        for i in new_idx:
            geom = _geometry([parts[i]])
            if geom is None:
                new_rows.append(-1)
                continue
            c = classes[i] if isinstance(classes[i], str) else self.default_class
            new_rows.append(store.add(geom, classification=c, reviewer=reviewer))
            changed += 1
        if new_idx:
            feats = self.layer.features.copy()
            feats.loc[feats.index[new_idx], "row"] = new_rows
            if "class" in feats:
                feats.loc[feats.index[new_idx], "class"] = [store.classification(np.array([r]))[0] if r >= 0 else None
                                                            for r in new_rows]
            set_features(self.layer, feats)
        if changed:
            self.snapshot()
        return changed

    def selected_rows(self) -> np.ndarray:
        """Store rows of the selected shapes/points (after a :meth:`sync`)."""
        rows, _, _ = _layer_parts(self.layer)
        sel = sorted(self.layer.selected_data)
        return np.unique(rows[sel][rows[sel] >= 0]) if sel else np.zeros(0, np.int64)

    def restyle(self) -> None:
        """Colour shapes/points by their (possibly new) class and refresh ``class`` features."""
        rows, _, _ = _layer_parts(self.layer)
        if not len(rows):
            return
        feats = self.layer.features.copy()
        ok = rows >= 0
        feats.loc[ok, "class"] = self.store.classification(rows[ok])
        set_features(self.layer, feats)
        if not _is_points(self.layer):
            colors = store_class_colors(self.store)
            self.layer.edge_color = np.array([rgba(colors.get(c)) for c in feats["class"]], np.float32)


class ViewportEditor:
    """Keeps ``shapes`` filled with the nuclei around the view; ``overview`` shows the rest.

    store : the full set. shapes : napari Shapes layer (editable). overview : the raster of
    :func:`viewers.layers.nuclei_raster_layer`, or a Points layer of :func:`viewers.layers.points_layer`.
    cap : most objects loaded for editing; more than that in view -> overview only.
    margin : loaded box = view box grown by this fraction on each side.
    mask : callable returning a ``(N,)`` bool mask of rows to show (filters), or ``None``.
    """

    def __init__(self, store: FeatureStore, shapes, overview, *, cap: int = 3000, margin: float = 0.25,
                 mask: Callable[[], np.ndarray | None] | None = None, default_class: str = "Nucleus",
                 edge_width: float = 1.5) -> None:
        self.store, self.shapes, self.overview = store, shapes, overview
        self.cap, self.margin, self.mask = cap, margin, mask or (lambda: None)
        self.edge_width = edge_width
        self.box: tuple[float, float, float, float] | None = None
        self.active = False
        self._overview_version = store.version
        shapes.feature_defaults = {"row": -1, "class": default_class}
        shapes.current_edge_color = rgba(store_class_colors(store).get(default_class))
        shapes.current_face_color = "transparent"
        self.sync = LayerSync(store, shapes, default_class=default_class)

    def update(self, view: tuple[float, float, float, float], *, force: bool = False, reviewer: str | None = None) -> bool:
        """Show the objects around ``view`` (``x0, y0, x1, y1`` level-0 px). Returns whether it reloaded."""
        if not force and self.box is not None and _contains(self.box, view):
            return False
        x0, y0, x1, y1 = view
        mx, my = (x1 - x0) * self.margin, (y1 - y0) * self.margin
        box = (x0 - mx, y0 - my, x1 + mx, y1 + my)
        self.sync.sync(reviewer=reviewer)
        rows = self.store.rows_in_box(*box, mask=self.mask())
        if len(rows) > self.cap:  # too many with the margin: try the view alone
            box = view
            rows = self.store.rows_in_box(*box, mask=self.mask())
        if len(rows) > self.cap:
            self._deactivate()
            self.box = None
            return True
        self._load(rows)
        self.box = box
        return True

    def _load(self, rows: np.ndarray) -> None:
        d = shapes_data(self.store, rows)
        layer = self.shapes
        with layer.events.blocker_all():
            layer.data = []
        if d["data"]:
            layer.add(d["data"], shape_type=d["shape_type"], edge_color=d["edge_color"],
                      face_color="transparent", edge_width=self.edge_width)
        set_features(layer, d["features"])
        self.sync.snapshot()
        self.active = True
        self.overview.visible = False

    def _deactivate(self) -> None:
        if self.active:
            with self.shapes.events.blocker_all():
                self.shapes.data = []
            set_features(self.shapes, {"row": np.zeros(0, np.int64), "class": np.zeros(0, object)})
            self.shapes.refresh()
            self.sync.snapshot()
        self.active = False
        self.refresh_overview()
        self.overview.visible = True

    def refresh_overview(self, *, force: bool = False) -> None:
        """Redraw the overview (all nuclei) if the store changed since the last time."""
        if not force and self._overview_version == self.store.version:
            return
        mask = self.mask()
        layer = self.overview
        if _is_points(layer):
            layer.data = self.store.centroids[:, ::-1]
            layer.face_color = category_rgba(self.store, alpha=0.9)[self.store.category]
            layer.shown = self.store.alive if mask is None else self.store.alive & mask
        else:  # the multiscale raster of :func:`viewers.layers.nuclei_raster_layer`
            meta = layer.metadata
            layer.data = nuclei_raster(self.store, shape_xy=meta["wsi_shape"], bin_px=meta["wsi_bin"], visible=mask)
        self._overview_version = self.store.version


def _contains(outer, inner) -> bool:
    return outer[0] <= inner[0] and outer[1] <= inner[1] and outer[2] >= inner[2] and outer[3] >= inner[3]


def view_box(viewer) -> tuple[float, float, float, float]:
    """The viewer's visible region as ``(x0, y0, x1, y1)`` in world (level-0) pixels."""
    h, w = viewer.canvas.size
    cam = camera(viewer)
    cy, cx = cam.center[-2:]
    z = cam.zoom
    return (cx - w / z / 2, cy - h / z / 2, cx + w / z / 2, cy + h / z / 2)


def camera(viewer):
    """The viewer's camera model (``viewer.scene.camera`` from napari 0.9, ``viewer.camera`` before)."""
    scene = getattr(viewer, "scene", None)
    return scene.camera if scene is not None and hasattr(scene, "camera") else viewer.camera
