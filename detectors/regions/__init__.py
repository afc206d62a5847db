"""Skin tissue regions (Epidermis, Dermis, Tumor, Inflammation, Other) on a coarse grid.

>>> rm = map_regions(slide, tissue, nuclei)          # weight-free rules
>>> rm = map_regions(slide, tissue, nuclei, model=load_region_model("models/tissue"))
>>> write_regions(out_dir, rm, properties)           # regions.geojson + regions.npy
"""

from detectors.regions.mapper import DEFAULT_GRID_UM, FeatureSet, compute_features, map_regions
from detectors.regions.model import RegionModel, load_region_model
from detectors.regions.output import (
    legend, napari_labels, overview_layers, overview_legend, read_regions, write_regions,
    write_regions_labels,
)
from detectors.regions.regionmap import CLASSES, COLORS, LABELS, RegionMap, rasterize_regions

__all__ = [
    "CLASSES", "COLORS", "DEFAULT_GRID_UM", "FeatureSet", "LABELS", "RegionMap", "RegionModel",
    "compute_features", "legend", "load_region_model", "map_regions", "napari_labels",
    "overview_layers", "overview_legend", "rasterize_regions", "read_regions", "write_regions",
    "write_regions_labels",
]
