"""One slide, end to end: tissue -> nuclei -> cell types -> regions -> mitoses -> merged outputs
in ``DIR/<slide-id>/``.

Outputs are written into a hidden temporary folder and renamed into place at the end,
with a done marker (input checksum + config hash) so a batch can resume. Object ids are
derived from the slide and the object's position, so re-running gives identical files.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import shapely

from detectors.base import Instances
from tiling import open_slide
from tiling.grid import tile_grid
from wsi_pipeline.annotations import Feature, bounds_properties, instances_to_features, write_geojson
from wsi_pipeline.atomic import publish_dir
from wsi_pipeline.batch.manifest import SlideJob
from wsi_pipeline.batch.markers import file_checksum, write_marker
from wsi_pipeline.config import PipelineConfig
from wsi_pipeline.detection import nuclei_factory
from wsi_pipeline.ids import sort_instances, stable_ids
from wsi_pipeline.map_stage import map_tissue_regions, type_cells, type_in_context
from wsi_pipeline.reasons import no_map

log = logging.getLogger(__name__)

CALIBRATION_TILES = 6  # tissue tiles sampled across the slide to fix one nuclei threshold


@dataclass
class SlideRun:
    """What one slide's run produced (also the basis of summary.json)."""

    slide_id: str
    out_dir: Path
    counts: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    mitoses: list = field(default_factory=list)  # level-0 points, drawn on overview.png
    hotspot: object | None = None  # level-0 polygon of the mitotic hotspot
    models: dict = field(default_factory=dict)  # stage -> name, weights hash
    regions: dict | None = None  # summary.json's "regions": raster metadata, source, area per class
    region_map: object | None = None  # detectors.regions.RegionMap, drawn on overview.png


def _with_ids(features: Iterator[Feature], ids: Iterator[str]) -> Iterator[Feature]:
    for f, i in zip(features, ids):
        f.id = i
        yield f


class _Timer:
    def __init__(self, timings: dict, name: str) -> None:
        self.timings, self.name = timings, name

    def __enter__(self) -> None:
        self.t0 = time.perf_counter()

    def __exit__(self, *exc) -> None:
        self.timings[self.name] = round(time.perf_counter() - self.t0, 3)


def counts_line(counts: dict) -> str:
    """The run's counts as one line: numbers as ``name value``, the cell types as
    ``cell_types Tumor 12 ...``; what is not assessed (None) and nested records (the stain
    check, the mitotic rate: their reasons are among the notes) are left out."""
    parts = []
    for key, value in counts.items():
        if isinstance(value, bool) or value is None or isinstance(value, str):
            continue
        if isinstance(value, (int, float)):
            parts.append(f"{key} {value}")
        elif key == "cell_types" and isinstance(value, dict):
            parts.append("cell_types " + " ".join(f"{k} {v}" for k, v in value.items()))
    return ", ".join(parts)


def run_slide(
    job: SlideJob,
    out_root: Path,
    cfg: PipelineConfig,
    *,
    client=None,
    checksum: str | None = None,
    progress=None,
) -> SlideRun:
    """Process one slide into ``out_root/<slide_id>/`` (atomically, with a done marker)."""
    from wsi_pipeline.run_stages import (
        detect_mitoses, detect_tissue_stage, write_overview, write_report, write_summary,
    )

    out_root = Path(out_root)
    out_root.mkdir(parents=True, exist_ok=True)
    final = out_root / job.slide_id
    tmp = out_root / f".{job.slide_id}.partial"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    run = SlideRun(job.slide_id, final)
    t_start = time.perf_counter()
    try:
        with open_slide(job.path, mpp=job.mpp) as slide:
            slide.mpp  # a missing mpp fails here, before any work
            props = bounds_properties(slide.bounds)
            with _Timer(run.timings, "tissue"):
                tissue = detect_tissue_stage(slide, cfg, tmp, props)
            run.counts["tissue_mm2"] = round(tissue.total_area_mm2, 4)
            run.counts["tissue_pieces"] = len(tissue.polygons)
            run.counts["ink_regions"] = len(tissue.inks)
            he = _stain_check(tissue, cfg, run)
            nuclei = Instances.empty()
            if cfg.nuclei.enabled and tissue.polygons:
                with _Timer(run.timings, "nuclei"):
                    nuclei = _nuclei(job, slide, tissue, cfg, client, run, progress)
                    nuclei = _outside_ink(nuclei, tissue.inks, run)
            rules_fit = _rules_fit_nuclei(cfg, run)
            typed = (he and cfg.cells.enabled and cfg.nuclei.enabled and bool(tissue.polygons)
                     and (rules_fit or bool(cfg.cells.model)))
            if typed:
                with _Timer(run.timings, "cells"):
                    nuclei = type_cells(nuclei, mpp=slide.mpp[0], cfg=cfg, run=run)
            run.counts["nuclei"] = len(nuclei)
            if he and cfg.regions.enabled and tissue.polygons and (rules_fit or cfg.regions.model):
                with _Timer(run.timings, "regions"):
                    run.region_map = map_tissue_regions(slide, tissue, nuclei, cfg=cfg, out=tmp, props=props, run=run,
                                                        slide_id=job.slide_id)
                if typed and not cfg.cells.model:
                    nuclei = type_in_context(nuclei, run.region_map, run=run)
            elif he and tissue.polygons and not cfg.regions.enabled:
                run.counts["tissue_map"] = no_map("turned off, regions.enabled false")
            if cfg.nuclei.enabled and tissue.polygons:
                with _Timer(run.timings, "nuclei_write"):
                    _write_nuclei(tmp, job, nuclei, props, typed=typed)
            if he and cfg.mitosis.enabled:
                with _Timer(run.timings, "mitosis"):
                    detect_mitoses(slide, job, cfg, nuclei, tissue, tmp, props, run)
            with _Timer(run.timings, "overview"):
                write_overview(slide, tissue, nuclei, tmp, run, cfg)
            if he and tissue.polygons:
                with _Timer(run.timings, "report"):
                    write_report(slide, job, cfg, tmp, run)
            if cfg.output.ome_zarr:
                from tiling.omezarr import write_omezarr

                with _Timer(run.timings, "ome_zarr"):
                    write_omezarr(slide, tmp / "slide.ome.zarr")
                    if run.region_map is not None:  # the region map as the NGFF label image labels/regions
                        from detectors.regions.output import write_regions_labels

                        write_regions_labels(tmp / "slide.ome.zarr", run.region_map)
        run.timings["total"] = round(time.perf_counter() - t_start, 3)
        write_summary(job, slide, cfg, tmp, run)
        write_marker(tmp, checksum=checksum or file_checksum(Path(job.path)), config_hash=cfg.hash())
        publish_dir(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return run


def nuclei_tiles(slide, tissue, spec, cfg: PipelineConfig, tile_size: int) -> list:
    """The nuclei stage's tiles: ``tile_size`` px at the detector's ``spec`` resolution with its
    halo, over the tissue mask (tiles under ``tissue.min_tile_tissue_fraction`` dropped)."""
    return tile_grid(
        slide.dimensions, slide_mpp=slide.mpp[0], working_mpp=spec.mpp, tile_size=tile_size,
        halo=spec.halo, max_object=spec.max_object_size, tissue_mask=tissue.mask,
        mask_downsample=tissue.downsample, min_tissue_fraction=cfg.tissue.min_tile_tissue_fraction,
    )


def _rules_fit_nuclei(cfg: PipelineConfig, run: SlideRun) -> bool:
    """Whether the weight-free cell-type and tissue-map rules may read these nuclei. Their
    thresholds (nuclear area, darkness, mean area per field) were set on the weight-free
    detector's outlines; a trained nuclei model draws its own (``stardist-monuseg``: about 1.4x
    the area on CMU-1), and on normal skin the rules then proposed a tumour, a Breslow thickness
    and an ulcer. With such a model, the rules whose trained replacement was not given are not
    run; the notes and ``counts.tissue_map`` say why."""
    nuclei = run.models.get("nuclei") or {}
    if not nuclei.get("trained") or (cfg.cells.model and cfg.regions.model):
        return True
    reason = no_map("its rules are not set on this nuclei model",
                    f"the weight-free cell-type and tissue-map rules are set on the weight-free detector's nuclear "
                    f"outlines, not on those of {nuclei.get('folder')}; give --cell-model and --tissue-model trained "
                    "on its nuclei")
    log.warning("%s", reason)
    run.notes.append(f"cell types / tissue map: {reason}")
    run.counts.setdefault("tissue_map", reason)  # a slide that is not H&E keeps that reason
    return False


def _stain_check(tissue, cfg: PipelineConfig, run: SlideRun) -> bool:
    """Whether the H&E-specific stages run: not when the tissue stage found no eosin
    (:mod:`detectors.tissue.stain`; ``tissue.stain_check`` false skips the check). A slide
    that is not H&E gets tissue and nuclei only; the counts and notes say what was not
    assessed and why (``stain``, ``mitotic_rate``, ``synoptic``)."""
    check = getattr(tissue, "stain", None)
    if check is None:
        return True
    run.counts["stain"] = {**check.to_dict(), "checked": bool(cfg.tissue.stain_check)}
    if not cfg.tissue.stain_check or check.he is not False:
        if check.he is None:
            run.notes.append(check.reason)
        return True
    reason = "not assessed: not an H&E slide (stain check: no eosin)"
    log.warning("%s", check.reason)
    run.notes.append(f"{check.reason}; cell types, tissue map, mitoses and the synoptic report are not assessed "
                     "(tissue.stain_check: false runs them anyway)")
    run.counts["mitoses_per_mm2"] = None
    run.counts["mitotic_rate"] = {"value": None, "assessed": False, "reason": reason}
    run.counts["synoptic"] = {"lesion": reason}
    run.counts["tissue_map"] = no_map("not an H&E slide, stain check")
    return False


#: tiles of a batch hold at most ``batch_size`` x this many pixels: a network with a wide
#: receptive field gets large tiles (8 halos: 2048 px for the deep StarDist at 0.25 µm/px), and
#: 8 of them at once took more than a Dask worker's 6 GB (workers killed)
BATCH_TILE_PX = 1024 * 1024


def tile_batch(batch_size: int, tile_size: int) -> int:
    """Tiles per batch: ``batch_size``, fewer for tiles over 1024 px (same pixels per batch)."""
    return max(1, min(batch_size, int(batch_size * BATCH_TILE_PX // (tile_size * tile_size))))


def _outside_ink(nuclei: Instances, inks, run) -> Instances:
    """The nuclei whose centre is not in an ink region. Ink is dark, so the detector finds
    "nuclei" in it (116 in the demo's black ink, 98 of them typed as tumour cells); what lies
    under ink cannot be measured or typed. Margins are measured from the tumour region to the
    ink, not from these. Count: ``nuclei_in_ink_dropped``."""
    if not inks or not len(nuclei):
        run.counts["nuclei_in_ink_dropped"] = 0
        return nuclei
    ink = shapely.union_all([i.polygon for i in inks])
    xy = nuclei.centroids().reshape(-1, 2)
    inside = shapely.contains_xy(ink, xy[:, 0], xy[:, 1])
    run.counts["nuclei_in_ink_dropped"] = int(inside.sum())
    return nuclei.subset(~inside) if inside.any() else nuclei


def _nuclei(job, slide, tissue, cfg, client, run, progress) -> Instances:
    from wsi_pipeline.detection import calibrated
    from wsi_pipeline.tile_runner import read_tile, run_dask, run_inprocess

    factory, description = nuclei_factory(cfg.nuclei.model, cfg.device, slide=slide, mpp=cfg.nuclei.mpp)
    run.notes.append(f"nuclei: {description}")
    folder = factory.args[1]
    weights = Path(folder) / "weights_best.h5" if folder else None
    run.models["nuclei"] = {"name": description, "trained": bool(folder), "folder": Path(folder).name if folder else None,
                            "weights_sha256": file_checksum(weights) if weights and weights.is_file() else None}
    detector = factory()
    spec = detector.spec
    tile_size = cfg.nuclei.tile_size or spec.tile_size
    tiles = nuclei_tiles(slide, tissue, spec, cfg, tile_size)
    if tiles:
        # the calibration sample comes from the detector's own tile grid, so a different
        # nuclei.tile_size changes how the slide is cut, not its threshold (the same nuclei)
        cal = tiles if tile_size == spec.tile_size else nuclei_tiles(slide, tissue, spec, cfg, spec.tile_size)
        pick = np.linspace(0, len(cal) - 1, num=min(CALIBRATION_TILES, len(cal))).round().astype(int)
        factory = calibrated(factory, detector, np.stack([read_tile(slide, cal[i], spec.mpp) for i in pick]))
        detector = factory()
    run.counts["nuclei_tiles"] = len(tiles)
    run.counts["nuclei_model"] = description
    if progress is not None:
        progress.reset(total=len(tiles))
        progress.set_description(f"{job.slide_id}: nuclei tiles")
    tick = progress.update if progress is not None else None
    batch = tile_batch(cfg.nuclei.batch_size, tile_size)
    if client is None:
        parts = run_inprocess(slide, detector, tiles, batch_size=batch, on_progress=tick)
    else:
        key = f"{job.slide_id}-{cfg.hash()}"
        parts = run_dask(client, str(job.path), job.mpp, factory, key, tiles,
                         batch_size=batch, on_progress=tick)
    return sort_instances(Instances.concatenate(list(parts)))


def _write_nuclei(out: Path, job: SlideJob, nuclei: Instances, props: dict, *, typed: bool = False) -> None:
    """``nuclei.geojson.gz`` + ``nuclei.parquet``; classified by cell type when ``typed``
    (``nuclei.label``), else all ``Nucleus``."""
    from wsi_pipeline.tables import write_measurements_table

    ids = list(stable_ids(job.slide_id, "nucleus", nuclei.geometry))
    feats = _with_ids(instances_to_features(nuclei, classification=None if typed else "Nucleus"), iter(ids))
    write_geojson(out / "nuclei.geojson.gz", feats, properties=props, decimals=2)  # 0.01 px: half the size
    write_measurements_table(out / "nuclei.parquet", nuclei, ids=ids)
