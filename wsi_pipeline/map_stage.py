"""Where things are: each nucleus typed, then the skin region map (issue: tissue map).

Runs after the nuclei stage of :func:`wsi_pipeline.run.run_slide`:

* cell types (``Lymphocyte``, ``Epithelial``, ``Stromal``, ``Tumor``, ``Other``) go into
  the nuclei's ``label`` so ``nuclei.geojson.gz`` / ``nuclei.parquet`` carry them as their
  classification; counts per class into summary.json;
* the region map (``Epidermis``, ``Dermis``, ``Tumor``, ``Inflammation``, ``Other``) from
  stain, texture and the typed nuclei -> ``regions.geojson`` + ``regions.npy``; areas per
  class and the raster's pixel size into summary.json.

The default needs no weights (rules); ``cells.model`` / ``regions.model`` name model
folders from ``train cells`` / ``train tissue``. Logs and summary.json say which ran.

Context after the map (:func:`type_in_context`, weight-free rules only): a nucleus that
the rules called ``Stromal`` or ``Other`` but that lies inside the map's ``Epidermis`` is
``Epithelial``. The nucleated epidermis holds no fibroblasts; on real 20x skin (CMU-1) the
nuclei detector outlines keratinocyte nuclei as elongated as dermal ones, and shape alone
typed most of them ``Stromal``. Lymphocytes (exocytosis) and ``Tumor`` (pagetoid spread)
keep their type.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from detectors.base import Instances
from wsi_pipeline.config import PipelineConfig

log = logging.getLogger(__name__)


def type_cells(nuclei: Instances, *, mpp: float, cfg: PipelineConfig, run) -> Instances:
    """``nuclei`` with ``label`` set to each nucleus' cell type (a new Instances)."""
    from detectors.cells import classify_cells, load_cell_model

    model = load_cell_model(cfg.cells.model) if cfg.cells.model else None
    name = f"cell model {Path(cfg.cells.model).name}" if model is not None else "weight-free rules"
    run.notes.append(f"cell types: {name}")
    run.models["cells"] = {"name": name, "folder": Path(cfg.cells.model).name if model is not None else None}
    if len(nuclei) == 0:
        run.counts["cell_types"] = {}
        return nuclei
    types = np.asarray(classify_cells(nuclei, mpp=mpp, model=model), dtype=object)
    run.counts["cell_types"] = _count_types(types)
    return Instances(nuclei.geometry, nuclei.score, types, dict(nuclei.measurements), nuclei.origin)


def _count_types(types: np.ndarray) -> dict[str, int]:
    """summary.json's nuclei per cell type."""
    names, counts = np.unique(types.astype(str), return_counts=True)
    return {str(n): int(c) for n, c in zip(names, counts)}


def type_in_context(nuclei: Instances, region_map, *, run) -> Instances:
    """Stromal/Other nuclei whose centre lies in the map's Epidermis become Epithelial."""
    from detectors.regions.regionmap import LABELS

    if len(nuclei) == 0 or region_map is None:
        return nuclei
    centres = np.array([(g.centroid.x, g.centroid.y) for g in nuclei.geometry], dtype=np.float64)
    lab = region_map.labels
    col = np.clip((centres[:, 0] / region_map.downsample).astype(np.int64), 0, lab.shape[1] - 1)
    row = np.clip((centres[:, 1] / region_map.downsample).astype(np.int64), 0, lab.shape[0] - 1)
    in_epidermis = lab[row, col] == LABELS["Epidermis"]
    types = np.asarray(nuclei.label, dtype=object).copy()
    flip = in_epidermis & np.isin(types.astype(str), ["Stromal", "Other"])
    if not flip.any():
        return nuclei
    types[flip] = "Epithelial"
    run.counts["cell_types"] = _count_types(types)
    run.counts["cell_types_from_epidermis"] = int(flip.sum())
    run.notes.append(f"cell types: {int(flip.sum())} Stromal/Other nuclei inside the epidermis typed Epithelial")
    return Instances(nuclei.geometry, nuclei.score, types, dict(nuclei.measurements), nuclei.origin)


def map_tissue_regions(slide, tissue, nuclei: Instances, *, cfg: PipelineConfig, out: Path, props: dict, run,
                       slide_id: str | None = None):
    """The region map -> ``regions.geojson`` + ``regions.npy``; returns the RegionMap."""
    from detectors.regions import load_region_model, map_regions, write_regions

    model = load_region_model(cfg.regions.model) if cfg.regions.model else None
    name = f"tissue model {Path(cfg.regions.model).name}" if model is not None else "weight-free rules"
    run.notes.append(f"tissue regions: {name}")
    run.models["regions"] = {"name": name, "folder": Path(cfg.regions.model).name if model is not None else None}
    region_map = map_regions(slide, tissue, nuclei, grid_um=cfg.regions.grid_um, device=cfg.device, model=model,
                             cell_labels=bool(cfg.cells.model))  # a trained cell model's types; the rules' own otherwise
    source = "model" if model is not None else "weight-free"
    meta = write_regions(out, region_map, {**props, "regionsSource": source, "regionsModel": name}, id_key=slide_id)
    run.regions = {**meta, "source": source, "area_mm2": {k: round(v, 4) for k, v in region_map.area_mm2().items()}}
    return region_map
