"""The review desk: one napari viewer, the object sets shown in it, their files, filters, save.

A :class:`Desk` owns one :class:`Source` per editable set (nuclei, mitoses, tissue, margins,
the pathologist's own annotations). Each source has a :class:`~viewers.store.FeatureStore`,
the file it came from (and is saved back to), and the layers that show and edit it. Saving
syncs every layer into its store, rewrites each changed file atomically (GeoJSON, every
untouched property kept) and appends the edits to the audit log (``audit.jsonl``).
"""

from __future__ import annotations

import getpass
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from viewers import layers as L
from viewers.audit import append_audit, audit_lines
from viewers.editor import LayerSync, ViewportEditor, camera, view_box
from viewers.store import FeatureStore
from wsi_pipeline.mitosis_classes import VALIDATED_CLASS

AUDIT_NAME = "audit.jsonl"


@dataclass
class Source:
    """One editable object set: its store, its file, its layers and its display filters."""

    name: str
    store: FeatureStore
    path: Path | None
    properties: dict = field(default_factory=dict)
    syncs: list[LayerSync] = field(default_factory=list)
    editor: ViewportEditor | None = None
    display: object = None  # the layer the filters act on (Points)
    hidden_classes: set = field(default_factory=set)
    filter_measurement: str | None = None
    filter_min: float | None = None

    def mask(self) -> np.ndarray | None:
        """``(N,)`` bool rows passing the filters, ``None`` when no filter is set."""
        if not self.hidden_classes and self.filter_min is None:
            return None
        ok = np.ones(self.store.n, bool)
        if self.hidden_classes:
            ok &= ~np.isin(self.store.classification(), list(self.hidden_classes))
        if self.filter_min is not None and self.filter_measurement:
            v = self.store.measurement(self.filter_measurement)
            ok &= ~(v < self.filter_min)  # NaN (not measured) stays visible
        return ok


def default_reviewer() -> str:
    try:
        return os.environ.get("WSI_REVIEWER") or getpass.getuser()
    except Exception:  # noqa: BLE001 - no user database in some containers
        return "unknown"


class Desk:
    """See the module docstring. ``viewer`` is a ``napari.Viewer``."""

    def __init__(self, viewer, *, results_dir: str | Path | None = None, reviewer: str | None = None,
                 audit_path: str | Path | None = None) -> None:
        self.viewer = viewer
        self.results_dir = Path(results_dir) if results_dir else None
        self.reviewer = reviewer or default_reviewer()
        if audit_path is None and self.results_dir is not None:
            audit_path = self.results_dir / AUDIT_NAME
        self.audit_path = Path(audit_path) if audit_path else None
        self.sources: dict[str, Source] = {}
        #: overview-only layers (density maps): shown zoomed out, hidden while an editor is active
        #: so that H&E colours are true at full resolution
        self.overview_layers: list = []
        #: Shapes layers whose text labels are shown only where they do not overlap
        self.labelled_layers: list = []
        self._timer = None
        self._camera_hooked = False
        _DESKS[id(viewer)] = self

    @classmethod
    def adopt(cls, viewer, **kwargs) -> "Desk":
        """A desk for layers opened by the npe2 reader (they carry their store in ``metadata``)."""
        desk = cls(viewer, **kwargs)
        by_store: dict[int, Source] = {}
        for layer in list(viewer.layers):
            meta = layer.metadata or {}
            store, role = meta.get("wsi_store"), meta.get("wsi_role")
            if store is None or role not in ("overview", "shapes", "points"):
                continue
            src = by_store.get(id(store))
            if src is None:
                path = meta.get("wsi_path")
                src = Source(layer.name, store, Path(path) if path else None, dict(meta.get("wsi_properties") or {}))
                by_store[id(store)] = desk.sources[layer.name] = src
            if role == "overview":
                shapes = viewer.add_shapes(name=f"{layer.name} (edit)", face_color="transparent",
                                           features={"row": np.zeros(0, np.int64), "class": np.zeros(0, object)},
                                           metadata={"wsi_store": store, "wsi_role": "editor"})
                src.editor = ViewportEditor(store, shapes, layer, mask=src.mask)
                src.syncs.append(src.editor.sync)
                src.display = layer
                desk._hook_camera()
            else:
                src.syncs.append(LayerSync(store, layer))
                if role == "points":
                    src.display = layer
        return desk

    # ---- adding sets --------------------------------------------------------------------
    def _add(self, data: tuple):
        data_, kwargs, kind = data
        return getattr(self.viewer, f"add_{kind}")(data_, **kwargs)

    def add_nuclei(self, store: FeatureStore, *, path: Path | None, properties: dict | None = None,
                   name: str = "Nuclei", shape_xy: tuple[int, int], bin_px: float = 8.0, cap: int = 3000) -> Source:
        """All nuclei as a class-coloured multiscale raster (every zoom) plus a Shapes layer
        editing the ones in view. ``shape_xy``: the slide's level-0 ``(width, height)``."""
        src = Source(name, store, path, dict(properties or {}))
        overview = self._add(L.nuclei_raster_layer(store, shape_xy=shape_xy, bin_px=bin_px, name=f"{name} (all)"))
        shapes = self.viewer.add_shapes(name=f"{name} (edit)", edge_width=1.5, face_color="transparent",
                                        features={"row": np.zeros(0, np.int64), "class": np.zeros(0, object)},
                                        metadata={"wsi_store": store, "wsi_role": "editor"})
        src.editor = ViewportEditor(store, shapes, overview, cap=cap, mask=src.mask)
        src.syncs.append(src.editor.sync)
        src.display = overview
        self.sources[name] = src
        self._hook_camera()
        return src

    def add_points(self, store: FeatureStore, *, path: Path | None, properties: dict | None = None,
                   name: str = "Mitoses", size: float = 60.0, shapes_name: str | None = None) -> Source:
        """Point objects (mitoses), editable; polygons of the same file (hotspots) as a Shapes layer."""
        src = Source(name, store, path, dict(properties or {}))
        layer = self._add(L.mitoses_layer(store, name=name, size=size))
        src.syncs.append(LayerSync(store, layer, default_class=VALIDATED_CLASS))
        src.display = layer
        if shapes_name and (store.alive & ~store.point_mask()).any():
            shp = self._add(L.annotations_layer(store, name=shapes_name, edge_width=12))
            src.syncs.append(LayerSync(store, shp))
        self.sources[name] = src
        return src

    def add_annotations(self, store: FeatureStore, *, path: Path | None, properties: dict | None = None,
                        name: str = "Annotations", edge_width: float = 8.0, default_class: str | None = None,
                        face_alpha: float = 0.0, labels: bool = True) -> Source:
        """Polygons/lines (tissue, margins, tumour) as an editable, labelled Shapes layer."""
        src = Source(name, store, path, dict(properties or {}))
        layer = self._add(L.annotations_layer(store, name=name, edge_width=edge_width, face_alpha=face_alpha,
                                              labels=labels))
        if default_class:
            layer.feature_defaults = {"row": -1, "class": default_class, **({"label": default_class} if labels else {})}
            layer.current_edge_color = L.rgba(L.store_class_colors(store).get(default_class) or _color(default_class))
        src.syncs.append(LayerSync(store, layer, default_class=default_class))
        self.sources[name] = src
        if labels:
            self.labelled_layers.append(layer)
            self._hook_camera()
            self._update_labels()
        return src

    # ---- view ---------------------------------------------------------------------------
    def _hook_camera(self) -> None:
        if not self._camera_hooked:
            camera(self.viewer).events.center.connect(self._camera_moved)
            camera(self.viewer).events.zoom.connect(self._camera_moved)
            self._camera_hooked = True

    def _update_labels(self) -> None:
        """Text labels on where they cannot overlap at the current zoom (see viewers.labels)."""
        from viewers.labels import label_anchors, min_zoom

        zoom = float(camera(self.viewer).zoom)
        for layer in self.labelled_layers:
            layer.text.visible = bool(len(layer.data)) and zoom >= min_zoom(label_anchors(layer.data))

    def _camera_moved(self, event=None) -> None:
        try:
            from qtpy.QtCore import QTimer
        except Exception:  # noqa: BLE001 - no Qt: update at once
            self.update_view()
            return
        if self._timer is None:
            self._timer = QTimer()
            self._timer.setSingleShot(True)
            self._timer.timeout.connect(self.update_view)
        self._timer.start(120)

    def update_view(self, *, force: bool = False) -> None:
        """Reload the viewport editors for the current camera."""
        box = view_box(self.viewer)
        for src in self.sources.values():
            if src.editor is not None:
                src.editor.update(box, force=force, reviewer=self.reviewer)
        editing = any(src.editor is not None and src.editor.active for src in self.sources.values())
        for layer in self.overview_layers:
            layer.visible = not editing
        self._update_labels()

    # ---- filters ------------------------------------------------------------------------
    def apply_filters(self, name: str) -> None:
        """Show only what passes the source's filters (points hidden, editor reloaded)."""
        src = self.sources[name]
        for s in src.syncs:
            s.sync(reviewer=self.reviewer)
        if src.editor is not None:
            src.editor.refresh_overview(force=True)
            if src.editor.active:
                self.update_view(force=True)
        elif src.display is not None:
            mask = src.mask()
            rows = src.display.features["row"].to_numpy()
            ok = rows >= 0
            shown = np.ones(len(rows), bool)
            if mask is not None:
                shown[ok] = mask[rows[ok]]
            src.display.shown = shown

    # ---- edits from the dock widget ---------------------------------------------------------
    def sync_all(self) -> int:
        return sum(s.sync(reviewer=self.reviewer) for src in self.sources.values() for s in src.syncs)

    def _selected(self, name: str) -> list[tuple[LayerSync, np.ndarray]]:
        out = []
        for s in self.sources[name].syncs:
            s.sync(reviewer=self.reviewer)
            out.append((s, s.selected_rows()))
        return out

    def reclassify_selected(self, name: str, classification: str) -> int:
        """Give the selected objects of source ``name`` a new class; returns how many."""
        n = 0
        for s, rows in self._selected(name):
            for r in rows.tolist():
                s.store.reclassify(r, classification, reviewer=self.reviewer)
                n += 1
            if len(rows):
                s.restyle()
                s.snapshot()
        return n

    def review_selected(self, name: str, status: str) -> int:
        """Set review ``status`` (by :attr:`reviewer`, now) on the selected objects of ``name``."""
        n = 0
        for s, rows in self._selected(name):
            for r in rows.tolist():
                s.store.set_review(r, status, reviewer=self.reviewer)
                n += 1
        return n

    def save(self) -> dict[str, int]:
        """Write every changed source back to its file and log the edits; returns edits per source."""
        self.sync_all()
        out = {}
        for src in self.sources.values():
            if not src.store.changes:
                continue
            path = src.path or (self.results_dir / "annotations.geojson" if self.results_dir else None)
            if path is None:
                continue
            save_store(src.store, path, properties=src.properties)
            changes = src.store.take_changes()
            if self.audit_path is not None:
                append_audit(self.audit_path, audit_lines(changes, who=self.reviewer, layer=src.name, file=path.name))
            src.path = path
            out[src.name] = len(changes)
        return out


def save_store(store: FeatureStore, path: Path, *, properties: dict | None = None) -> int:
    """Write ``store``'s live rows to ``path`` as GeoJSON (atomic; gzip for ``.gz``)."""
    from wsi_pipeline.annotations import write_geojson

    return write_geojson(path, store.to_features(), properties=properties or None)


def _color(name: str):
    from wsi_pipeline.annotations.colors import class_color

    return class_color(name)


_DESKS: dict[int, Desk] = {}


def desk_for(viewer) -> Desk | None:
    """The :class:`Desk` attached to ``viewer``, if any."""
    return _DESKS.get(id(viewer))
