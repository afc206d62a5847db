"""Synthetic margin cases with known answers, for tests and demos.

Geometry is given in micrometres (easy to reason about: "the lesion is 1500 µm from the
blue edge") and written in level-0 pixels of a slide with the given ``mpp``, in the
results-folder dialect (``tissue.geojson`` with ``Tissue`` and ``Ink: <colour>`` features,
``annotations.geojson`` with ``Tumor`` features, optionally ``nuclei.geojson.gz``).
The JSON is written here directly (not through the package's writer) so reading is tested
against the contract, not against itself.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import shapely
from shapely.geometry import mapping

from wsi_pipeline.mitosis_classes import VALIDATED_CLASS
from wsi_pipeline.report.margins._units import to_px


def _feature(geometry, classification: str, *, object_type: str = "annotation", extra: dict | None = None) -> dict:
    props = {"objectType": object_type, "classification": {"name": classification}}
    props.update(extra or {})
    return {"type": "Feature", "geometry": mapping(geometry), "properties": props}


def write_case(
    folder: str | Path,
    *,
    mpp: tuple[float, float],
    tissue: list,
    inks: dict[str, list] | None = None,
    tumour: list | None = None,
    nuclei: list | None = None,
    regions: dict[str, list] | None = None,
    regions_properties: dict | None = None,
    cells: list[tuple[float, float, str]] | None = None,
    summary: dict | None = None,
    mitoses: list[tuple[float, float]] | None = None,
) -> Path:
    """Write a results folder from µm geometries; returns the folder.

    tissue : tissue polygons; inks : colour -> ink polygons; tumour : Tumor polygons
    (``annotations.geojson``); nuclei : nucleus polygons (``nuclei.geojson.gz``);
    regions : class name (Epidermis, Dermis, Tumor, Inflammation, Other) -> polygons
    (``regions.geojson``, collection properties ``regions_properties``); cells : ``(x, y,
    class)`` nucleus centroids in µm (``nuclei.parquet``); summary : ``summary.json``;
    mitoses : ``(x, y)`` µm of validated mitoses (``mitoses.geojson``, class ``Mitosis``).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    feats = [_feature(to_px(t, mpp), "Tissue") for t in tissue]
    for colour, polys in (inks or {}).items():
        feats += [_feature(to_px(p, mpp), f"Ink: {colour}", extra={"inkColor": colour}) for p in polys]
    (folder / "tissue.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": feats}))
    if tumour is not None:
        tum = [_feature(to_px(t, mpp), "Tumor") for t in tumour]
        (folder / "annotations.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": tum}))
    if nuclei is not None:
        nuc = [_feature(to_px(n, mpp), "Nucleus", object_type="detection") for n in nuclei]
        with gzip.open(folder / "nuclei.geojson.gz", "wt") as fh:
            json.dump({"type": "FeatureCollection", "features": nuc}, fh)
    if regions is not None:
        reg = [_feature(to_px(shapely.union_all(polys), mpp), name) for name, polys in regions.items() if polys]
        (folder / "regions.geojson").write_text(json.dumps(
            {"type": "FeatureCollection", "properties": regions_properties or {}, "features": reg}))
    if cells is not None:
        write_cells(folder / "nuclei.parquet", cells, mpp=mpp)
    if summary is not None:
        (folder / "summary.json").write_text(json.dumps(summary))
    if mitoses is not None:
        pts = [_feature(to_px(shapely.Point(x, y), mpp), VALIDATED_CLASS, object_type="detection") for x, y in mitoses]
        (folder / "mitoses.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": pts}))
    return folder


def write_cells(path: Path, cells: list[tuple[float, float, str]], *, mpp: tuple[float, float]) -> None:
    """``nuclei.parquet`` with the columns the run writes (``class``, ``centroid_x/y`` in px)."""
    import pandas as pd

    xy = np.asarray([(x, y) for x, y, _ in cells], dtype=float).reshape(-1, 2)
    pd.DataFrame({
        "id": [f"n{i}" for i in range(len(cells))],
        "object_type": "detection",
        "class": [c for _, _, c in cells],
        "centroid_x": xy[:, 0] / mpp[0],
        "centroid_y": xy[:, 1] / mpp[1],
    }).to_parquet(path)


def scatter_cells(region, cls: str, *, spacing_um: float, seed: int = 0) -> list[tuple[float, float, str]]:
    """Centroids of class ``cls`` on a jittered grid inside ``region`` (µm)."""
    return [(p.centroid.x, p.centroid.y, cls) for p in scatter_nuclei(region, spacing_um=spacing_um, radius_um=1.0,
                                                                        seed=seed)]


def scatter_nuclei(region, *, spacing_um: float, radius_um: float, seed: int = 0) -> list:
    """Round nuclei on a jittered grid inside ``region`` (µm); ``(N,)`` list of polygons."""
    rng = np.random.default_rng(seed)
    x0, y0, x1, y1 = region.bounds
    xs, ys = np.meshgrid(np.arange(x0, x1, spacing_um), np.arange(y0, y1, spacing_um))
    pts = np.stack([xs.ravel(), ys.ravel()], axis=1) + rng.uniform(-0.3, 0.3, (xs.size, 2)) * spacing_um
    points = shapely.points(pts)
    inside = shapely.contains(region, points)
    return list(shapely.buffer(points[inside], radius_um, quad_segs=4))


def tissue_image(tissue: list, *, mpp: tuple[float, float], size_px: tuple[int, int]) -> np.ndarray:
    """A plain ``(H, W, 3)`` uint8 picture: pink tissue on white glass (for an ArraySlide)."""
    from skimage.draw import polygon as fill

    image = np.full((size_px[1], size_px[0], 3), 246, np.uint8)
    for poly in tissue:
        px = to_px(poly, mpp)
        xy = np.asarray(px.exterior.coords)
        rr, cc = fill(xy[:, 1], xy[:, 0], image.shape[:2])
        image[rr, cc] = (226, 160, 205)
        for hole in px.interiors:
            hxy = np.asarray(hole.coords)
            rr, cc = fill(hxy[:, 1], hxy[:, 0], image.shape[:2])
            image[rr, cc] = 246
    return image
