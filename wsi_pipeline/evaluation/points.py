"""Point detections against point ground truth (e.g. mitotic figures): precision, recall, F1.

Matching is one-to-one within ``radius`` pixels (MIDOG uses 30 px at 0.25 µm/px, 7.5 µm):
the pairs are assigned by the Hungarian algorithm on distance (optimal, so the count of
matches is the largest possible), pairs farther than ``radius`` never match.
Polygons are reduced to their centroids; GeoJSON features can be filtered by class.

:func:`evaluate_figure_crops`: a folder of image crops each centred on a mitotic figure
(e.g. a lab's own scanner; class sub-folders such as ``normal/`` and ``atypical/`` are
reported apart): the mitosis detector runs on each crop; a figure is found when a
detection lies within ``radius_um`` of the centre. Candidate nuclei are chosen with the
nuclei of all the crops pooled (a crop holds too few nuclei for the rule's median; a slide
run pools the whole slide). Also the candidate recall (a candidate
nucleus within the radius: the ceiling of any scorer) and the other detections per crop.
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


def _crop_files(folder: Path) -> list[tuple[str, Path]]:
    """(class, image) pairs: images in ``folder`` (class ``figure``) and in its sub-folders."""
    from wsi_pipeline.training.mitosis_data import IMAGE_SUFFIXES

    if not folder.is_dir():
        raise InputError(folder, "not a folder of crops centred on mitotic figures")
    out = []
    for d in [folder, *sorted(x for x in folder.iterdir() if x.is_dir())]:
        cls = "figure" if d == folder else d.name
        out += [(cls, f) for f in sorted(d.iterdir()) if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES]
    if not out:
        raise InputError(folder, "no crops (.png/.tif/.jpg) here or in its sub-folders")
    return out


def evaluate_figure_crops(folder: str | Path, *, detector, mpp: float, radius_um: float = 7.5) -> dict:
    """Recall of ``detector`` (a :class:`~detectors.mitosis.detector.MitosisDetector`) on
    crops centred on mitotic figures. ``mpp``: µm/px of the crops (resampled to the
    detector's). Returns ``{"radius_um", "mpp", "model", "validated", "threshold",
    "total": {...}, "by_class": {cls: {...}}, "images": {cls/name: {...}}}``; each summary has
    ``crops``, ``found``, ``recall``, ``candidates_found``, ``candidate_recall``,
    ``other_detections`` (detections farther than the radius from the centre) and
    ``other_detections_per_crop``.

    Candidates are judged as on a slide: nucleus darkness and the blob candidates' darkness
    against the nuclei of *all the crops of the folder pooled* (one median). That suits one
    lab's folder (one scanner, one stain); a folder mixing scanners or stains should be
    split into one folder per scanner, or the pooled median favours the darker ones."""
    from detectors.mitosis.candidates import pooled_candidates
    from wsi_pipeline.training.mitosis_data import MODEL_MPP, read_rgb

    if mpp <= 0 or radius_um <= 0:
        raise InputError(None, f"mpp and radius must be positive, got {mpp} and {radius_um}")
    scorer = detector.scorer
    if abs(scorer.mpp - MODEL_MPP) > 1e-6:
        raise ValueError(f"the mitosis scorer works at {scorer.mpp} µm/px, crops are read at {MODEL_MPP}")
    radius = radius_um / MODEL_MPP
    files = _crop_files(Path(folder))
    images = [read_rgb(path, mpp=mpp) for _, path in files]  # resampled to MODEL_MPP
    nuclei = [detector.nuclei.predict(im) for im in images]
    masks, ref = pooled_candidates(nuclei)
    per: dict[str, dict] = {}
    for (cls, path), im, nuc, mask in zip(files, images, nuclei, masks):
        centres, probs = detector.score_candidates(im, nuc, candidates=mask, reference=ref)
        d = np.hypot(centres[:, 0] - im.shape[1] / 2, centres[:, 1] - im.shape[0] / 2)
        det = probs >= scorer.threshold
        per[f"{cls}/{path.name}"] = {"class": cls, "found": bool((det & (d <= radius)).any()),
                                     "candidate": bool((d <= radius).any()),
                                     "best_probability": float(probs[d <= radius].max()) if (d <= radius).any() else None,
                                     "other_detections": int((det & (d > radius)).sum())}
    classes = sorted({r["class"] for r in per.values()})
    return {"radius_um": float(radius_um), "mpp": float(mpp), "model": scorer.description,
            "validated": bool(scorer.validated), "threshold": float(scorer.threshold),
            "total": _crop_summary(per.values()),
            "by_class": {c: _crop_summary(r for r in per.values() if r["class"] == c) for c in classes},
            "images": per}


def _crop_summary(rows) -> dict:
    rows = list(rows)
    n = len(rows)
    found, cand = sum(r["found"] for r in rows), sum(r["candidate"] for r in rows)
    other = sum(r["other_detections"] for r in rows)
    return {"crops": n, "found": found, "recall": found / n if n else 0.0, "candidates_found": cand,
            "candidate_recall": cand / n if n else 0.0, "other_detections": other,
            "other_detections_per_crop": other / n if n else 0.0}


def format_crops_table(result: dict) -> str:
    """Recall per class and in total, for people."""
    lines = [f"mitotic figures at the crop centres, found within {result['radius_um']:g} µm "
             f"(crops at {result['mpp']:g} µm/px)",
             f"model: {result['model']}",
             f"{'class':14s} {'crops':>6s} {'found':>6s} {'recall':>7s} {'candidate recall':>17s} {'other det./crop':>16s}"]
    rows = list(result["by_class"].items())
    if len(rows) > 1:
        rows.append(("TOTAL", result["total"]))
    for name, s in rows:
        lines.append(f"{name[:14]:14s} {s['crops']:6d} {s['found']:6d} {s['recall']:7.3f} {s['candidate_recall']:17.3f} "
                     f"{s['other_detections_per_crop']:16.2f}")
    return "\n".join(lines)


def format_points_table(result: dict) -> str:
    lines = [f"point matching within {result['radius']:g} px", f"{'image':30s} {'TP':>5s} {'FP':>5s} {'FN':>5s} "
             f"{'precision':>9s} {'recall':>7s} {'F1':>6s}"]
    rows = list(result["images"].items()) + [("TOTAL", result["total"])]
    for name, s in rows:
        lines.append(f"{name[:30]:30s} {s['tp']:5d} {s['fp']:5d} {s['fn']:5d} {s['precision']:9.3f} "
                     f"{s['recall']:7.3f} {s['f1']:6.3f}")
    return "\n".join(lines)
