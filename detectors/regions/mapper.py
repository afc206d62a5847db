"""``map_regions``: the tissue-region map of one slide (rules, or a trained model).

Steps: read the slide at ``grid_um / 4`` µm/px -> stain features pooled on the label grid
(torch, on the chosen device) -> nuclei binned on the grid (densities per cell type) ->
tissue mask and distance to the tissue surface -> labels (:mod:`detectors.regions.rules`
by default, or a :class:`~detectors.regions.model.RegionModel`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage

from detectors.device import select_device
from detectors.regions.features import (
    NUCLEUS_NAMES, STAIN_NAMES, Grid, fine_features, gaussian, nucleus_maps, read_fine,
)
from detectors.regions.regionmap import RegionMap

DEFAULT_GRID_UM = 8.0
#: nucleus density smoothing (µm): one fine scale, one neighbourhood scale
DENSITY_SIGMAS_UM = (8.0, 24.0)


@dataclass
class FeatureSet:
    """Features of one slide on its label grid.

    maps : name -> (H, W) float32 tensor (stain features; nucleus densities per mm² at each
        sigma as ``<name>@<sigma>``; ``area@<sigma>`` mean nuclear area in µm²).
    tissue : (H, W) bool tensor. edge_um : (H, W) float32 tensor, distance to the nearest
        non-tissue pixel inside the slide (the image border is not a surface).
    ink : (H, W) bool tensor, surgical ink on the tissue (None when unknown).
    tint : (H*SUB, W*SUB) float16 tensor, :func:`~detectors.regions.features.fine_tint`
        (boundaries finer than the label grid).
    """

    grid: Grid
    maps: dict[str, torch.Tensor]
    tissue: torch.Tensor
    edge_um: torch.Tensor
    ink: torch.Tensor | None = None
    tint: torch.Tensor | None = None

    @property
    def device(self) -> torch.device:
        return self.tissue.device


def tissue_on_grid(tissue, grid: Grid, *, ink: bool = False) -> np.ndarray:
    """(H, W) bool: the TissueResult mask (its ink mask when ``ink``) sampled at the label
    pixels' centres."""
    h, w = grid.shape
    ys = ((np.arange(h) + 0.5) * grid.downsample / tissue.downsample).astype(np.int64)
    xs = ((np.arange(w) + 0.5) * grid.downsample / tissue.downsample).astype(np.int64)
    m = np.asarray(tissue.ink_mask if ink else tissue.mask) > 0
    ys, xs = np.clip(ys, 0, m.shape[0] - 1), np.clip(xs, 0, m.shape[1] - 1)
    return m[np.ix_(ys, xs)]


def edge_distance_um(mask: np.ndarray, um_per_px: float) -> np.ndarray:
    """(H, W) float32 distance (µm) from each tissue pixel to the nearest non-tissue pixel;
    outside the image counts as tissue (a crop's border is no surface)."""
    padded = np.pad(mask, 1, constant_values=True)
    d = ndimage.distance_transform_edt(padded)[1:-1, 1:-1]
    return (d * um_per_px).astype(np.float32)


def compute_features(slide, tissue, nuclei, *, grid_um: float = DEFAULT_GRID_UM,
                     device: torch.device | str = "auto", cell_labels: bool = False) -> FeatureSet:
    """Features of ``slide`` on a ``grid_um`` grid (see :class:`FeatureSet`); nucleus
    types from morphology, or from ``nuclei.label`` with ``cell_labels``."""
    dev = device if isinstance(device, torch.device) else select_device(device)
    mpp = float(slide.mpp[0])
    grid = Grid.for_slide(slide.dimensions, mpp, grid_um)
    fine = read_fine(slide, grid)
    with torch.inference_mode():
        stain, tint = fine_features(fine, dev)
        del fine
        maps = {name: stain[i] for i, name in enumerate(STAIN_NAMES)}
        raw = nucleus_maps(nuclei, grid, mpp=mpp, device=dev, cell_labels=cell_labels)
        px_mm2 = (grid.um_per_px / 1000.0) ** 2
        for s_um in DENSITY_SIGMAS_UM:
            sm = gaussian(raw, s_um / grid.um_per_px)
            for i, name in enumerate(NUCLEUS_NAMES[:-1]):
                maps[f"{name}@{s_um:g}"] = sm[i] / px_mm2
            maps[f"area@{s_um:g}"] = sm[5] / sm[0].clamp(min=1e-3)
    mask = tissue_on_grid(tissue, grid)
    ink = tissue_on_grid(tissue, grid, ink=True) if getattr(tissue, "ink_mask", None) is not None else None
    return FeatureSet(grid, maps, torch.from_numpy(mask).to(dev),
                      torch.from_numpy(edge_distance_um(mask, grid.um_per_px)).to(dev),
                      None if ink is None else torch.from_numpy(ink).to(dev), tint)


def map_regions(slide, tissue, nuclei, *, grid_um: float = DEFAULT_GRID_UM,
                device: torch.device | str = "auto", model=None, cell_labels: bool = False) -> RegionMap:
    """Region map of ``slide``.

    tissue : detectors.tissue's TissueResult. nuclei : Instances in level-0 px with the
    run's measurements.
    cell_labels : take each nucleus' type from ``nuclei.label`` (Lymphocyte, Epithelial,
    Stromal, Tumor; Other weighs nothing) instead of the region map's own morphology
    weights (:func:`~detectors.regions.features.cell_type_weights`). Meant for a trained
    cell model's classes: the rules' densities were tuned on the morphology weights, and
    the weight-free cell rules' labels (tuned per nucleus) cost the demo its tumour.
    grid_um : feature grid (µm); a model uses its own training grid. The rules' map comes
    out ``RuleParams.refine`` x finer (the Epidermis boundary re-decided on the fine tint,
    :func:`~detectors.regions.rules.refine_epidermis`): 4 µm pixels on the 8 µm grid.
    model : a :class:`~detectors.regions.model.RegionModel` (``load_region_model``) or None
    for the weight-free rules.
    """
    if model is not None:
        grid_um = model.grid_um
    fs = compute_features(slide, tissue, nuclei, grid_um=grid_um, device=device, cell_labels=cell_labels)
    if model is not None:
        labels = model.predict(fs)
    else:
        from detectors.regions.rules import RuleParams, refine_epidermis, rule_labels

        p = RuleParams()
        labels = refine_epidermis(fs, rule_labels(fs, p), p.refine, p)
    f = labels.shape[0] // fs.grid.shape[0]  # the rules' map is finer than the grid (refine)
    return RegionMap(labels=labels, um_per_px=fs.grid.um_per_px / f, downsample=fs.grid.downsample / f)
