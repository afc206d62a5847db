"""Open a slide and its results folder (what ``wsi-pipeline run`` writes) on a review desk.

Results-folder files used when present: ``tissue.geojson``, ``nuclei.geojson.gz`` (or
``nuclei.geojson``), ``mitoses.geojson`` (points + hotspot polygons), ``margins.geojson``,
``annotations.geojson`` (the pathologist's own drawings; created on save), ``summary.json``,
``regions.npy`` + ``regions.geojson`` (the tissue-region map), ``synoptic.geojson`` (the
synoptic draft's measuring lines: Breslow thickness, ulcer, epidermal surface).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from viewers import layers as L
from viewers.editor import camera
from viewers.session import Desk
from viewers.store import FeatureStore
from wsi_pipeline.mitosis_classes import UNVALIDATED_CLASS

NUCLEI_NAMES = ("nuclei.geojson.gz", "nuclei.geojson")
#: the mitoses layer's name when it holds only an unvalidated scorer's candidates
UNVALIDATED_LAYER = "Mitosis candidates (unvalidated)"
MARKERS = ("summary.json", "tissue.geojson", *NUCLEI_NAMES, "mitoses.geojson")


def find_results_dir(results: Path, slide_path: Path) -> Path:
    """``results`` itself when it holds result files, else ``results/<slide stem>`` when that does."""
    if any((results / m).exists() for m in MARKERS):
        return results
    for cand in (results / slide_path.stem, results / slide_path.name):
        if cand.is_dir():
            return cand
    return results


def _load(path: Path) -> tuple[FeatureStore, dict]:
    from wsi_pipeline.annotations import read_geojson

    ann = read_geojson(path)
    return FeatureStore.from_features(ann.features), ann.properties


def open_results(viewer, slide, results_dir: Path | None, *, reviewer: str | None = None, cap: int = 3000) -> Desk:
    """Add the slide and every result layer to ``viewer``; returns the :class:`Desk` that edits them."""
    data, kw, _ = L.slide_layer(slide)
    image = viewer.add_image(data, **kw)
    desk = Desk(viewer, results_dir=results_dir, reviewer=reviewer)
    mpp = slide.mpp_or_none[0] if slide.mpp_or_none else None
    px_per_um = 1 / mpp if mpp else 4.0
    w, h = slide.dimensions
    outline = max(2.0, max(w, h) / 600)  # visible at whole-slide zoom, thin at full resolution
    if results_dir is None:
        _fit(viewer, image)
        return desk
    r = Path(results_dir)
    nuclei = next((r / n for n in NUCLEI_NAMES if (r / n).exists()), None)
    if nuclei is not None:
        store, props = _load(nuclei)
        data, kw = _density(store, slide, mpp, name="Nuclei density", visible=True)
        desk.overview_layers.append(viewer.add_image(data, **kw))
        desk.add_nuclei(store, path=nuclei, properties=props, shape_xy=slide.dimensions,
                        bin_px=max(2.0, 2 * px_per_um), cap=cap)
    _add_regions(viewer, desk, r, outline=outline)
    if (r / "tissue.geojson").exists():
        store, props = _load(r / "tissue.geojson")
        desk.add_annotations(store, path=r / "tissue.geojson", properties=props, name="Tissue", edge_width=outline,
                             labels=False)
    if (r / "margins.geojson").exists():
        store, props = _load(r / "margins.geojson")
        desk.add_annotations(store, path=r / "margins.geojson", properties=props, name="Margins",
                             edge_width=outline * 2)
    if (r / "synoptic.geojson").exists():  # the report's measuring lines (Breslow, ulcer, surface)
        store, props = _load(r / "synoptic.geojson")
        desk.add_annotations(store, path=r / "synoptic.geojson", properties=props, name="Report measurements",
                             edge_width=outline * 1.5)
    if (r / "mitoses.geojson").exists():
        store, props = _load(r / "mitoses.geojson")
        # an unvalidated scorer's candidates (hundreds on normal skin) are a hidden review layer
        # named as what they are, with no density: never shown as mitoses at first sight
        classes = {c for c in store.class_counts() if c}
        unvalidated = bool(classes) and classes <= {UNVALIDATED_CLASS}
        if (store.point_mask() & store.alive).any() and not unvalidated:
            data, kw = _density(_points_only(store), slide, mpp, name="Mitosis density", visible=False, bin_um=500)
            viewer.add_image(data, **kw)
        src = desk.add_points(store, path=r / "mitoses.geojson", properties=props, size=14 * px_per_um,
                              name=UNVALIDATED_LAYER if unvalidated else "Mitoses", shapes_name="Hotspots")
        src.display.visible = not unvalidated
    ann = r / "annotations.geojson"
    store, props = _load(ann) if ann.exists() else (FeatureStore(0), {})
    desk.add_annotations(store, path=ann, properties=props, name="Annotations", edge_width=outline,
                         default_class="Tumor")
    _fit(viewer, image)
    desk.update_view()
    return desk


def _add_regions(viewer, desk: Desk, r: Path, *, outline: float) -> None:
    """The tissue-region map: a Labels layer (class colours, legend in the text overlay and in
    the layer's metadata) from ``regions.npy``, and ``regions.geojson`` as an editable,
    hidden Shapes source (corrections saved back to it, in the format ``train tissue`` reads)."""
    meta = read_summary(r).get("regions")
    if (r / "regions.npy").exists() and meta:
        from napari.utils.colormaps import DirectLabelColormap

        from detectors.regions import napari_labels, read_regions

        region_map = read_regions(r, meta)
        data, kw, _ = napari_labels(region_map)
        kw["colormap"] = DirectLabelColormap(color_dict=kw["colormap"])
        viewer.add_labels(data, **kw)
        areas = region_map.area_mm2()
        overlay = text_overlay(viewer)
        overlay.text = "Regions (mm²)\n" + "\n".join(f"{n} {a:.2f}" for n, a in areas.items() if a > 0)
        overlay.position = "top_left"
        overlay.font_size = 10
        overlay.color = "white"
        overlay.visible = True
    if (r / "regions.geojson").exists():
        store, props = _load(r / "regions.geojson")
        desk.add_annotations(store, path=r / "regions.geojson", properties=props, name="Regions",
                             edge_width=outline, labels=False, default_class="Epidermis")
        viewer.layers["Regions"].visible = False


def text_overlay(viewer):
    """The canvas text overlay (``viewer.canvas.overlays.text`` since napari 0.9)."""
    canvas = getattr(viewer, "canvas", None)
    overlays = getattr(canvas, "overlays", None)
    return overlays.text if overlays is not None and hasattr(overlays, "text") else viewer.text_overlay


def _points_only(store: FeatureStore) -> FeatureStore:
    sub = FeatureStore(0)
    sub.centroids = store.centroids
    sub.deleted = ~(store.point_mask() & store.alive)
    sub.n = store.n
    return sub


def _density(store: FeatureStore, slide, mpp, *, name: str, visible: bool, bin_um: float = 100.0):
    bin_px = int(round(bin_um / mpp)) if mpp else 400
    data, kw, _ = L.density_layer(store, shape_xy=slide.dimensions, bin_px=max(bin_px, 8), name=name, mpp=mpp,
                                  visible=visible)
    return data, kw


def _fit(viewer, image) -> None:
    """The whole slide fills the canvas: centred on the slide ``image`` layer and zoomed to
    it, not to every layer (the density grids' last bins reach past the slide's edge, which
    put the slide off-centre at about three quarters of the size)."""
    viewer.reset_view()
    (r0, c0), (r1, c1) = np.asarray(image.extent.world, float)[:, -2:]
    cam = camera(viewer)
    cam.center = (*tuple(cam.center)[:-2], (r0 + r1) / 2, (c0 + c1) / 2)
    canvas = getattr(getattr(viewer, "canvas", None), "size", None) or getattr(viewer, "_canvas_size", None)
    if canvas is not None and r1 > r0 and c1 > c0:  # canvas (height, width), 5 % margin as napari's own fit
        cam.zoom = 0.95 * min(canvas[0] / (r1 - r0 + 1), canvas[1] / (c1 - c0 + 1))


def read_summary(results_dir: Path) -> dict:
    """``summary.json`` of a results folder (``{}`` when absent)."""
    p = Path(results_dir) / "summary.json"
    return json.loads(p.read_text()) if p.exists() else {}
