"""Detector output -> features, and back.

:class:`detectors.base.Instances` (already shifted to level-0 ``(x, y)`` by the merge step)
become :class:`Feature` s with the score as QuPath's ``"Detection probability"``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

import numpy as np
from wsi_pipeline.annotations.colors import RGB, class_color
from wsi_pipeline.annotations.feature import Feature, new_id

if TYPE_CHECKING:  # detectors.base imports torch; keep `import wsi_pipeline.annotations` light
    from detectors.base import Instances

SCORE_MEASUREMENT = "Detection probability"


def instances_to_features(
    instances: "Instances",
    *,
    object_type: str = "detection",
    classification: str | None = None,
    color: RGB | None = None,
    score_name: str = SCORE_MEASUREMENT,
    ids: Iterable[str] | None = None,
) -> Iterator[Feature]:
    """One :class:`Feature` per instance (lazy, so millions stream into the writer).

    classification : class name for all; ``None`` uses each instance's ``label``.
    color : colour for all; ``None`` uses :func:`class_color` of the class.
    score_name : measurement name the score is stored under.
    ids : one id per instance (e.g. stable ids); fresh UUIDs when ``None``.
    """
    n = len(instances)
    names = list(instances.measurements)
    columns = [instances.measurements[k].tolist() for k in names]
    scores = instances.score.tolist()
    labels = instances.label.tolist() if classification is None else None
    colors: dict[str | None, RGB | None] = {}
    id_iter = iter(ids) if ids is not None else None
    for i in range(n):
        cls = classification if labels is None else _label(labels[i])
        if cls not in colors:
            colors[cls] = color if color is not None else class_color(cls)
        meas = {score_name: scores[i]}
        for k, col in zip(names, columns):
            meas[k] = col[i]
        yield Feature(
            instances.geometry[i],
            object_type,
            cls,
            colors[cls],
            meas,
            new_id() if id_iter is None else str(next(id_iter)),
        )


def _label(value) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value == "":
        return None
    return str(value)


def features_to_instances(features: Iterable[Feature], *, score_name: str = SCORE_MEASUREMENT) -> "Instances":
    """Features -> :class:`Instances` (score from ``score_name``, NaN when absent; label =
    classification; other numeric measurements as columns, NaN where a feature lacks one)."""
    from detectors.base import Instances

    feats = list(features)
    geoms = np.empty(len(feats), dtype=object)
    geoms[:] = [f.geometry for f in feats]
    keys: dict[str, None] = {}
    for f in feats:
        for k, v in f.measurements.items():
            if k != score_name and isinstance(v, (int, float)):
                keys.setdefault(k)
    meas = {k: np.array([_num(f.measurements.get(k)) for f in feats], dtype=np.float64) for k in keys}
    score = np.array([_num(f.measurements.get(score_name)) for f in feats], dtype=np.float32)
    label = np.array([f.classification for f in feats], dtype=object)
    return Instances(geoms, score, label, meas)


def _num(v) -> float:
    return float(v) if isinstance(v, (int, float)) else math.nan
