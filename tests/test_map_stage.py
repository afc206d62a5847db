"""Cell types in context of the region map (wsi_pipeline.map_stage.type_in_context)."""

from __future__ import annotations

import numpy as np
from shapely.geometry import Point

from detectors.base import Instances
from detectors.regions.regionmap import LABELS, RegionMap
from wsi_pipeline.map_stage import type_in_context


class _Run:
    def __init__(self):
        self.counts, self.notes = {}, []


def test_stromal_nuclei_inside_the_epidermis_become_epithelial_others_keep_their_type():
    labels = np.full((10, 10), LABELS["Dermis"], np.uint8)
    labels[:, :5] = LABELS["Epidermis"]  # left half of the map is epidermis (10 level-0 px per label px)
    region_map = RegionMap(labels, um_per_px=2.5, downsample=10.0)
    centres = [(12, 30), (25, 70), (33, 50), (41, 41), (75, 30), (88, 88)]
    types = ["Stromal", "Other", "Lymphocyte", "Tumor", "Stromal", "Epithelial"]
    nuclei = Instances(np.array([Point(x, y).buffer(3) for x, y in centres], dtype=object), np.ones(6), types)
    run = _Run()
    out = type_in_context(nuclei, region_map, run=run)
    assert list(out.label) == ["Epithelial", "Epithelial", "Lymphocyte", "Tumor", "Stromal", "Epithelial"]
    assert run.counts["cell_types_from_epidermis"] == 2
    assert run.counts["cell_types"] == {"Epithelial": 3, "Lymphocyte": 1, "Stromal": 1, "Tumor": 1}
    assert list(nuclei.label) == types  # the input is not changed


def test_no_epidermis_changes_nothing():
    region_map = RegionMap(np.full((4, 4), LABELS["Dermis"], np.uint8), um_per_px=2.5, downsample=10.0)
    nuclei = Instances(np.array([Point(5, 5).buffer(2)], dtype=object), np.ones(1), ["Stromal"])
    run = _Run()
    assert type_in_context(nuclei, region_map, run=run) is nuclei and run.counts == {}
