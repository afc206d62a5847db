"""Point detections against point ground truth (e.g. mitotic figures): precision, recall, F1.

Matching is one-to-one within ``radius`` pixels (MIDOG uses 30 px at 0.25 µm/px, 7.5 µm):
the pairs are assigned by the Hungarian algorithm on distance (optimal, so the count of
matches is the largest possible), pairs farther than ``radius`` never match.
Polygons are reduced to their centroids; GeoJSON features can be filtered by class.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.spatial import cKDTree

from tiling.errors import InputError


@dataclass(frozen=True)
class PointScores:
    tp: int
    fp: int
    fn: int
    radius: float

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else (1.0 if self.fn == 0 else 0.0)

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    @property
    def f1(self) -> float:
        d = 2 * self.tp + self.fp + self.fn
        return 2 * self.tp / d if d else 1.0

    def to_dict(self) -> dict:
        return {**asdict(self), "precision": self.precision, "recall": self.recall, "f1": self.f1}

    def __add__(self, other: "PointScores") -> "PointScores":
        return PointScores(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn, self.radius)


def match_points(pred_xy: np.ndarray, gt_xy: np.ndarray, *, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """Optimal one-to-one matching within ``radius``: (K,) prediction and (K,) truth indices."""
    pred = np.asarray(pred_xy, float).reshape(-1, 2)
    gt = np.asarray(gt_xy, float).reshape(-1, 2)
    if radius <= 0:
        raise ValueError(f"radius must be positive, got {radius}")
    if not len(pred) or not len(gt):
        return np.empty(0, int), np.empty(0, int)
    pairs = cKDTree(pred).sparse_distance_matrix(cKDTree(gt), radius, output_type="coo_matrix")
    if pairs.nnz == 0:
        return np.empty(0, int), np.empty(0, int)
    rows, cols = np.unique(pairs.row), np.unique(pairs.col)
    big = radius * 10 + 1.0
    cost = np.full((len(rows), len(cols)), big)
    cost[np.searchsorted(rows, pairs.row), np.searchsorted(cols, pairs.col)] = pairs.data
    r, c = linear_sum_assignment(cost)
    ok = cost[r, c] <= radius
    return rows[r[ok]], cols[c[ok]]


def score_points(pred_xy: np.ndarray, gt_xy: np.ndarray, *, radius: float) -> PointScores:
    """TP/FP/FN counts of ``pred_xy`` (N, 2) against ``gt_xy`` (M, 2) matched within ``radius``."""
    n, m = len(np.asarray(pred_xy).reshape(-1, 2)), len(np.asarray(gt_xy).reshape(-1, 2))
    k = len(match_points(pred_xy, gt_xy, radius=radius)[0])
    return PointScores(k, n - k, m - k, float(radius))


def read_points(path: str | Path, *, classes: tuple[str, ...] | None = None) -> np.ndarray:
    """(N, 2) (x, y) of a GeoJSON file's features (centroids), optionally only those whose
    classification is in ``classes``; hotspot/tissue annotations are never points."""
    from wsi_pipeline.annotations import read_geojson

    path = Path(path)
    feats = read_geojson(path).features
    xy = []
    for f in feats:
        if classes is not None and f.classification not in classes:
            continue
        if classes is None and f.object_type == "annotation" and f.geometry.geom_type != "Point":
            continue  # e.g. the mitotic hotspot window
        c = f.geometry.centroid
        if not c.is_empty:
            xy.append((c.x, c.y))
    return np.array(xy, float).reshape(-1, 2)


def evaluate_point_paths(pred: str | Path, gt: str | Path, *, radius: float = 30.0,
                         classes: tuple[str, ...] | None = None) -> dict:
    """Score two GeoJSON files, or two folders matched by file stem. Returns
    ``{"radius", "images": {stem: scores}, "total": scores}`` (scores as dicts)."""
    pred, gt = Path(pred), Path(gt)
    pairs = _pairs(pred, gt)
    total = PointScores(0, 0, 0, float(radius))
    per = {}
    for stem, p, g in pairs:
        s = score_points(read_points(p, classes=classes), read_points(g, classes=classes), radius=radius)
        per[stem] = s.to_dict()
        total = total + s
    return {"radius": float(radius), "images": per, "total": total.to_dict()}


def _stem(p: Path) -> str:
    name = p.name
    for suf in (".geojson.gz", ".geojson", ".json"):
        if name.endswith(suf):
            return name[: -len(suf)]
    return p.stem


def _pairs(pred: Path, gt: Path) -> list[tuple[str, Path, Path]]:
    for p in (pred, gt):
        if not p.exists():
            raise InputError(p, "no such file or folder")
    if pred.is_file() and gt.is_file():
        return [(_stem(gt), pred, gt)]
    if pred.is_dir() and gt.is_dir():
        exts = (".geojson", ".json", ".geojson.gz")
        g = {_stem(f): f for f in gt.iterdir() if f.name.endswith(exts)}
        p = {_stem(f): f for f in pred.iterdir() if f.name.endswith(exts)}
        common = sorted(set(g) & set(p))
        if not common:
            raise InputError(pred, f"no GeoJSON file name matches one in {gt}")
        return [(s, p[s], g[s]) for s in common]
    raise InputError(pred, "give two GeoJSON files or two folders")


def format_points_table(result: dict) -> str:
    lines = [f"point matching within {result['radius']:g} px", f"{'image':30s} {'TP':>5s} {'FP':>5s} {'FN':>5s} "
             f"{'precision':>9s} {'recall':>7s} {'F1':>6s}"]
    rows = list(result["images"].items()) + [("TOTAL", result["total"])]
    for name, s in rows:
        lines.append(f"{name[:30]:30s} {s['tp']:5d} {s['fp']:5d} {s['fn']:5d} {s['precision']:9.3f} "
                     f"{s['recall']:7.3f} {s['f1']:6.3f}")
    return "\n".join(lines)
