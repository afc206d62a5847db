"""Leaf helpers shared by the stages of a run: stable object ids, a stable object order,
atomic JSON. Imports nothing from the stages, so ``run`` -> ``run_stages`` ->
``mitosis_stage`` read top-down without import cycles."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import shapely

from detectors.base import Instances
from wsi_pipeline.atomic import write_text_atomic


def stable_ids(slide_key: str, kind: str, geometries: np.ndarray) -> Iterator[str]:
    """UUIDs derived from the slide, the object kind and the object's centroid."""
    ns = uuid.uuid5(uuid.NAMESPACE_URL, f"wsi-pipeline/{slide_key}/{kind}")
    if len(geometries) == 0:
        return iter(())
    xy = shapely.get_coordinates(shapely.centroid(geometries))
    return (str(uuid.uuid5(ns, f"{x:.2f},{y:.2f},{i}")) for i, (x, y) in enumerate(xy))


def sort_instances(inst: Instances) -> Instances:
    """Row-major order of centroids: the same objects always come out in the same order."""
    if len(inst) == 0:
        return inst
    c = inst.centroids()
    return inst.subset(np.lexsort((c[:, 0].round(2), c[:, 1].round(2))))


def write_json(path: Path, data: dict) -> None:
    """``data`` as indented JSON at ``path``, written to a temporary name and renamed."""
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=False, default=str))
