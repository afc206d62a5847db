"""The stages of :func:`wsi_pipeline.run.run_slide` that write files: tissue, mitoses,
overview picture and summary."""

from __future__ import annotations

import logging
import platform
from importlib import metadata
from pathlib import Path

import numpy as np
import shapely
from PIL import Image, ImageDraw
from scipy.ndimage import gaussian_filter

from detectors.base import Instances
from wsi_pipeline.annotations import INK_COLORS, Feature, write_geojson
from wsi_pipeline.batch.manifest import SlideJob
from wsi_pipeline.config import PipelineConfig

log = logging.getLogger(__name__)

PACKAGES = ("wsi-pipeline", "torch", "numpy", "openslide-python", "openslide-bin", "tifffile", "zarr", "dask",
            "shapely", "stardist", "scikit-image")


def detect_tissue_stage(slide, cfg: PipelineConfig, out: Path, props: dict):
    """Tissue and ink -> ``tissue.geojson``; returns the :class:`TissueResult`."""
    from detectors.tissue import detect_tissue

    tissue = detect_tissue(slide, mpp=cfg.tissue.mpp, device=cfg.device)
    write_geojson(out / "tissue.geojson", tissue_features(tissue), properties=props)
    return tissue


def tissue_features(tissue) -> list[Feature]:
    feats = [
        Feature(poly, "annotation", "Tissue", None, {"Area mm^2": round(float(a), 6)})
        for poly, a in zip(tissue.polygons, tissue.areas_mm2)
    ]
    for ink in tissue.inks:
        name = f"Ink: {ink.colour}"
        feats.append(Feature(ink.polygon, "annotation", name, INK_COLORS.get(ink.colour),
                             {"Area mm^2": round(float(ink.area_mm2), 6)}, extra={"inkColor": ink.colour}))
    for i, f in enumerate(feats):
        f.id = f"00000000-0000-4000-8000-{i:012d}"  # stable across re-runs
    return feats


def detect_mitoses(slide, job: SlideJob, cfg: PipelineConfig, nuclei: Instances, tissue, out: Path,
                   props: dict, run) -> None:
    """Mitoses + hotspot -> ``mitoses.geojson`` (and counts into ``run``)."""
    from wsi_pipeline.mitosis_stage import run_mitosis_stage

    result = run_mitosis_stage(slide, job=job, cfg=cfg, nuclei=nuclei, tissue=tissue, out_dir=out, properties=props)
    run.counts.update(result.counts)
    run.notes.extend(result.notes)
    if result.points is not None:
        run.overlay.extend((g, (220, 20, 60, 255)) for g in result.points.geometry)
    if result.hotspot is not None:
        run.overlay.append((result.hotspot, (255, 140, 0, 255)))


# -- overview ---------------------------------------------------------------------
def _thumbnail(slide, max_size: int) -> tuple[np.ndarray, float]:
    """Whole slide at about ``max_size`` px on the long side; returns (rgb, level-0 px per px)."""
    w0, h0 = slide.dimensions
    ds = max(w0, h0) / max_size
    size = (max(1, int(w0 / ds)), max(1, int(h0 / ds)))
    level = max((i for i, d in enumerate(slide.level_downsamples) if d <= ds), default=0)
    lds = slide.level_downsamples[level]
    img = slide.read_region((0, 0), (int(w0 / lds), int(h0 / lds)), level=level)
    return np.asarray(Image.fromarray(img).resize(size, Image.Resampling.BILINEAR)), ds


def _draw_geom(draw: ImageDraw.ImageDraw, geom, ds: float, colour, width: int) -> None:
    for part in getattr(geom, "geoms", [geom]):
        rings = [part.exterior, *part.interiors] if part.geom_type == "Polygon" else [part]
        for ring in rings:
            xy = [(x / ds, y / ds) for x, y in np.asarray(ring.coords)[:, :2]]
            if len(xy) > 1:
                draw.line(xy, fill=colour, width=width)


def write_overview(slide, tissue, nuclei: Instances, out: Path, run, cfg: PipelineConfig) -> None:
    """``overview.png``: thumbnail, tissue outline, ink, nuclei density tint, mitoses, hotspot."""
    from wsi_pipeline.atomic import atomic_path

    img, ds = _thumbnail(slide, cfg.output.overview_max_size)
    h, w = img.shape[:2]
    base = Image.fromarray(img).convert("RGBA")
    if len(nuclei):
        c = nuclei.centroids() / ds
        bins = (max(1, h // 24), max(1, w // 24))
        density, _, _ = np.histogram2d(c[:, 1], c[:, 0], bins=bins, range=((0, h), (0, w)))
        density = gaussian_filter(density, 1.0)
        if density.max() > 0:
            d = np.asarray(Image.fromarray((255 * density / density.max()).astype(np.uint8)).resize((w, h), Image.Resampling.BILINEAR))
            tint = np.zeros((h, w, 4), np.uint8)
            tint[..., 0], tint[..., 1], tint[..., 2] = 255, 200, 0  # yellow: nuclear density
            tint[..., 3] = (d.astype(np.float32) * 0.55).astype(np.uint8)
            base = Image.alpha_composite(base, Image.fromarray(tint))
    draw = ImageDraw.Draw(base)
    lw = max(2, round(max(w, h) / 500))
    for poly in tissue.polygons:
        _draw_geom(draw, poly, ds, (20, 160, 60, 255), lw)
    for ink in tissue.inks:
        _draw_geom(draw, ink.polygon.exterior if ink.polygon.geom_type == "Polygon" else ink.polygon.boundary,
                   ds, (*INK_COLORS.get(ink.colour, (0, 0, 0)), 255), lw + 2)
    for geom, colour in getattr(run, "overlay", []):
        if geom.geom_type == "Point":
            x, y = geom.x / ds, geom.y / ds
            r = lw + 2
            draw.ellipse((x - r, y - r, x + r, y + r), outline=colour, width=lw)
        else:
            _draw_geom(draw, geom, ds, colour, lw)
    with atomic_path(out / "overview.png") as tmp:
        base.convert("RGB").save(tmp, format="PNG")


# -- summary ------------------------------------------------------------------------
def _versions() -> dict:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def write_summary(job: SlideJob, slide, cfg: PipelineConfig, out: Path, run) -> None:
    """``summary.json``: PHI-free slide facts, counts, timings, versions, models, the config."""
    from wsi_pipeline.run import write_json

    info = slide.info
    data = {
        "slide_id": job.slide_id,
        "specimen_id": job.metadata.get("specimen_id"),
        "metadata": dict(job.metadata),
        "slide": {
            "name": job.slide_id,
            "vendor": info.vendor,
            "mpp": list(slide.mpp),
            "dimensions": list(slide.dimensions),
            "bounds": list(slide.bounds),
            "objective_power": info.objective_power,
        },
        "counts": run.counts,
        "timings_s": run.timings,
        "notes": run.notes,
        "versions": _versions(),
        "config": cfg.to_dict(),
        "config_hash": cfg.hash(),
    }
    write_json(out / "summary.json", data)
