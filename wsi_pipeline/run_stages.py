"""The stages of :func:`wsi_pipeline.run.run_slide` that write files: tissue, mitoses,
overview picture and summary."""

from __future__ import annotations

import logging
import platform
from importlib import metadata
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter

from detectors.base import Instances
from wsi_pipeline.annotations import write_geojson
from wsi_pipeline.batch.manifest import SlideJob
from wsi_pipeline.config import PipelineConfig
from wsi_pipeline.ids import write_json
from wsi_pipeline.reasons import NOT_ASSESSED, no_map_reason, not_he_slide

log = logging.getLogger(__name__)

PACKAGES = ("wsi-pipeline", "torch", "numpy", "openslide-python", "openslide-bin", "tifffile", "zarr", "dask",
            "shapely", "stardist", "scikit-image")


def detect_tissue_stage(slide, cfg: PipelineConfig, out: Path, props: dict):
    """Tissue and ink -> ``tissue.geojson``; returns the :class:`TissueResult`."""
    from detectors.tissue import detect_tissue
    from wsi_pipeline.tissue_run import tissue_features

    tissue = detect_tissue(slide, mpp=cfg.tissue.mpp, device=cfg.device)
    write_geojson(out / "tissue.geojson", tissue_features(tissue), properties=props)
    return tissue


def detect_mitoses(slide, job: SlideJob, cfg: PipelineConfig, nuclei: Instances, tissue, out: Path,
                   props: dict, run) -> None:
    """Mitoses + hotspot -> ``mitoses.geojson`` (and counts into ``run``)."""
    from wsi_pipeline.mitosis_stage import run_mitosis_stage

    result = run_mitosis_stage(slide, job=job, cfg=cfg, nuclei=nuclei, tissue=tissue, out_dir=out, properties=props)
    run.counts.update(result.counts)
    run.notes.extend(result.notes)
    run.models.update(result.models)
    # only a validated scorer's mitoses and hotspot go on the overview; unvalidated
    # candidates stay in mitoses.geojson for review (napari)
    if result.points is not None and result.validated:
        run.mitoses = list(result.points.geometry)
    run.hotspot = result.hotspot if result.validated else None


# -- overview ---------------------------------------------------------------------
MITOSIS_RGB = (220, 20, 60)
DENSITY_RGB = (255, 200, 0)
NOT_HE_RGB = (150, 150, 150)
HOTSPOT_RGB = (255, 140, 0)


def _density_tint(img: np.ndarray, nuclei: Instances, ds: float) -> np.ndarray:
    """Yellow tint where nuclei are dense (smoothed centroid histogram)."""
    if len(nuclei) == 0:
        return img
    h, w = img.shape[:2]
    c = nuclei.centroids() / ds
    density, _, _ = np.histogram2d(c[:, 1], c[:, 0], bins=(max(1, h // 24), max(1, w // 24)), range=((0, h), (0, w)))
    density = gaussian_filter(density, 1.0)
    if density.max() <= 0:
        return img
    d = np.asarray(Image.fromarray((255 * density / density.max()).astype(np.uint8)).resize((w, h), Image.Resampling.BILINEAR))
    alpha = (d.astype(np.float32) / 255.0 * 0.55)[..., None]
    return (img * (1 - alpha) + np.array(DENSITY_RGB, np.float32) * alpha).astype(np.uint8)


def write_overview(slide, tissue, nuclei: Instances, out: Path, run, cfg: PipelineConfig) -> None:
    """``overview.png``: thumbnail, tissue regions (filled by class), tissue outline, ink,
    nuclei as dots in their cell-type colour (the density tint when untyped or too many),
    mitoses and hotspot (``run.mitoses``/``run.hotspot``: set only from a validated scorer),
    a scale bar and a legend."""
    from wsi_pipeline.overview import Layer, draw_layers, draw_legend, draw_scale_bar, save_png, thumbnail_for
    from wsi_pipeline.tissue_run import line_width, tissue_layers

    img, ds = thumbnail_for(slide, max_side=cfg.output.overview_max_size)
    typed = "cell_types" in run.counts and 0 < len(nuclei) <= MAX_OVERVIEW_CELLS
    if not typed:
        img = _density_tint(img, nuclei, ds)
    lw = line_width(img)
    layers, legend = [], []
    if run.region_map is not None:
        from detectors.regions import overview_layers, overview_legend

        layers += overview_layers(run.region_map, width=1)
        legend += overview_legend(run.region_map)
    layers += tissue_layers(tissue, lw)
    if not_he_slide(run.counts):
        legend.append(("Not H&E (no eosin): tissue and nuclei only", NOT_HE_RGB))
    if not typed and len(nuclei):
        legend.append((f"Nuclei {len(nuclei)} (density)", DENSITY_RGB))
    if typed:
        cell_layers, cell_legend = _cell_layers(nuclei, radius=max(1, lw // 2))
        layers += cell_layers
        legend += cell_legend
    if run.mitoses:
        layers.append(Layer(tuple(run.mitoses), MITOSIS_RGB, width=lw, radius=lw + 3))
        legend.append(("Mitosis", MITOSIS_RGB))
    if run.hotspot is not None:
        layers.append(Layer((run.hotspot,), HOTSPOT_RGB, width=lw + 1))
        legend.append(("Mitotic hotspot", HOTSPOT_RGB))
    img = draw_scale_bar(draw_layers(img, layers, downsample=ds), float(slide.mpp[0]) * ds)
    save_png(out / "overview.png", draw_legend(img, legend))


MAX_OVERVIEW_CELLS = 300_000  # beyond this, dots per nucleus are noise: the density tint instead


def _cell_layers(nuclei: Instances, *, radius: int) -> tuple[list, list]:
    """One point layer per cell type (class colour) and its legend entries (name, count)."""
    from shapely import points

    from wsi_pipeline.annotations.colors import class_color
    from wsi_pipeline.overview import Layer

    xy = nuclei.centroids()
    types = np.asarray(nuclei.label, dtype=object).astype(str)
    layers, legend = [], []
    for name in sorted(set(types.tolist())):
        sel = types == name
        rgb = class_color(name) or (0, 0, 0)
        layers.append(Layer(tuple(points(xy[sel])), rgb, width=1, radius=radius))
        legend.append((f"{name} nuclei {int(sel.sum())}", rgb))  # "nuclei": apart from the region classes
    return layers, legend


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
    write_json(out / "summary.json", summary_data(job, slide, cfg, run))


def summary_data(job: SlideJob, slide, cfg: PipelineConfig, run) -> dict:
    """What ``summary.json`` holds (also handed to the synoptic draft before it is written)."""
    info = slide.info
    return {
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
        "regions": run.regions,
        "timings_s": run.timings,
        "notes": run.notes,
        "models": run.models,
        "versions": _versions(),
        "config": cfg.to_dict(),
        "config_hash": cfg.hash(),
    }


# -- synoptic draft -------------------------------------------------------------------
def write_report(slide, job: SlideJob, cfg: PipelineConfig, out: Path, run) -> None:
    """The synoptic draft (``synoptic.json``, ``synoptic_report.pdf/.html``, ``synoptic.geojson``
    and the margin report) when a lesion is found; its flat values go to ``counts["synoptic"]``
    for the batch report. No lesion: nothing written, ``counts["synoptic"]`` says so."""
    from wsi_pipeline.report.synoptic import build_draft
    from wsi_pipeline.report.synoptic_render import write_draft

    draft = build_draft(out, mpp=tuple(slide.mpp), frame_px=slide.bounds, summary=summary_data(job, slide, cfg, run),
                        diagnosis=job.metadata.get("diagnosis"), specimen_id=job.metadata.get("specimen_id"))
    if not draft.assessment.lesion.found:
        why = no_map_reason(run.counts)  # no tissue map made is not "no tumour found"
        lesion = f"{NOT_ASSESSED}: no tissue map ({why})" if why else "no tumour found"
        run.counts["synoptic"] = {"lesion": lesion}
        run.notes.append(f"report: {lesion} (no synoptic draft)")
        return
    data = write_draft(out, draft, slide=slide)
    run.counts["synoptic"] = data.get("summary")
    run.notes.append("report: synoptic draft written (computer-assisted draft, to be confirmed by the pathologist)")
