"""Cell types for detected nuclei: ``Lymphocyte``, ``Epithelial``, ``Stromal``, ``Tumor``, ``Other``.

:func:`classify_cells` types the nuclei of a run (level-0 pixels, with the measurements of
:mod:`detectors.nuclei.measurements`): by default with weight-free rules on the per-nucleus
feature table (:mod:`detectors.cells.rules` documents the thresholds in µm), or with a model
folder from ``wsi-pipeline train cells`` (:func:`load_cell_model`).
"""

from __future__ import annotations

import numpy as np

from detectors.base import Instances
from detectors.cells.features import feature_table, missing_measurements
from detectors.cells.model import CellModel, load_cell_model
from detectors.cells.rules import classify_rules
from detectors.cells.types import CLASSES, truth_cell_type

__all__ = ["CLASSES", "CellModel", "classify_cells", "load_cell_model", "nucleus_features", "truth_cell_type"]


def nucleus_features(nuclei: Instances, *, mpp: float):
    """(feature table name -> (N,) float64, Neighbourhood) of ``nuclei`` in level-0 px."""
    missing = missing_measurements(nuclei.measurements)
    if missing:
        raise ValueError(f"nuclei lack the measurements cell typing needs: {missing}")
    xy_um = nuclei.centroids() * float(mpp)
    return feature_table(nuclei.measurements, xy_um)


def classify_cells(nuclei: Instances, *, mpp: float, model: CellModel | None = None) -> np.ndarray:
    """(N,) object array of class names (see :data:`CLASSES`) for ``nuclei`` in level-0 px.

    ``mpp`` is level-0 µm per pixel; ``model`` a :class:`CellModel` (None: the rules).
    """
    if len(nuclei) == 0:
        return np.empty(0, object)
    features, nb = nucleus_features(nuclei, mpp=mpp)
    index = model.predict(features) if model is not None else classify_rules(features, nb)
    return np.asarray(CLASSES, dtype=object)[index]
