"""Cell-type scores: predicted nuclei matched to true nuclei, then a confusion matrix.

PRED and GT are nuclei files (GeoJSON, gzipped or not, or our ``nuclei.parquet``) or
results / truth folders holding one (``nuclei.geojson.gz``, ``nuclei.geojson``,
``nuclei.parquet``). A nucleus' class is its ``nucleusType`` property (synthetic truth,
mapped by :func:`detectors.cells.types.truth_cell_type`) when it has one, else its
classification; GT nuclei whose class is not a cell type (e.g. ``Nucleus``) are not scored.
Predicted names that are not cell types count as ``Other``.

Matching: one to one, polygons overlapping with IoU >= ``iou`` (0.5); when either side has no
polygons (Parquet), centroids within ``radius`` px, nearest first. Then, over matched pairs:
the confusion matrix (rows truth, columns prediction, in :data:`CLASSES` order), per-class
precision, recall and F1, and the macro-F1 over the classes present in the (matched) truth.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import shapely

from detectors.cells.types import CLASSES, OTHER, class_index, truth_cell_type
from tiling.errors import InputError
from wsi_pipeline.training.cells import resolve_nuclei_file

def read_typed_nuclei(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """``((N,) shapely geometries, (N,) class names)`` of the nuclei in a file or folder.

    Parquet gives centroid Points; a name is the mapped ``nucleusType`` when present.
    """
    path = resolve_nuclei_file(path)
    if path.suffix == ".parquet":
        from wsi_pipeline.tables import read_table

        df = read_table(path)
        if "class" not in df or "centroid_x" not in df:
            raise InputError(path, "not a nuclei table (no class / centroid_x columns)")
        geoms = shapely.points(df["centroid_x"].to_numpy(float), df["centroid_y"].to_numpy(float))
        names = df["class"].astype(object).where(df["class"].notna(), None).to_numpy(object)
        return np.asarray(geoms, object), names
    from wsi_pipeline.annotations import read_geojson

    geoms, names = [], []
    for f in read_geojson(path).features:
        if f.geometry is None or f.geometry.is_empty or f.object_type not in ("detection", "cell"):
            continue
        g = f.nucleus_geometry if f.nucleus_geometry is not None else f.geometry
        geoms.append(g)
        kind = (f.extra or {}).get("nucleusType")
        names.append(truth_cell_type(kind) if kind is not None else f.classification)
    return np.asarray(geoms, object), np.asarray(names, object)


def _has_polygons(geoms: np.ndarray) -> bool:
    return len(geoms) > 0 and bool(np.all(shapely.get_type_id(geoms) >= 3))


def match_nuclei(pred: np.ndarray, gt: np.ndarray, *, iou: float = 0.5, radius: float = 16.0
                 ) -> tuple[np.ndarray, np.ndarray]:
    """``(pred rows, gt rows)`` of one-to-one matches (see the module docstring).

    pred, gt : (P,), (G,) shapely geometries in one pixel frame.
    """
    if len(pred) == 0 or len(gt) == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    tree = shapely.STRtree(gt)
    if _has_polygons(pred) and _has_polygons(gt):
        pi, gi = tree.query(pred, predicate="intersects")
        inter = shapely.area(shapely.intersection(pred[pi], gt[gi]))
        score = inter / (shapely.area(pred[pi]) + shapely.area(gt[gi]) - inter)
        keep = score >= iou
    else:
        pc, gc = shapely.centroid(pred), shapely.centroid(gt)
        pi, gi = tree.query(pc, predicate="dwithin", distance=radius) if len(pc) else ([], [])
        pi, gi = np.asarray(pi, np.int64), np.asarray(gi, np.int64)
        score = -shapely.distance(pc[pi], gc[gi]) if len(pi) else np.empty(0)
        keep = np.ones(len(pi), bool)
    pi, gi, score = pi[keep], gi[keep], score[keep]
    order = np.argsort(-score, kind="stable")
    used_p, used_g, mp, mg = set(), set(), [], []
    for k in order:
        p, g = int(pi[k]), int(gi[k])
        if p not in used_p and g not in used_g:
            used_p.add(p)
            used_g.add(g)
            mp.append(p)
            mg.append(g)
    return np.asarray(mp, np.int64), np.asarray(mg, np.int64)


def cell_type_scores(pred_names, gt_names) -> dict:
    """Scores of matched pairs: ``confusion`` (rows truth, cols prediction, CLASSES order),
    ``per_class`` {class: precision, recall, f1, n_true, n_pred}, ``macro_f1`` over the
    classes present in the truth, ``accuracy``."""
    t = class_index(list(gt_names))
    p = class_index([n if n in CLASSES else OTHER for n in pred_names])
    ok = t >= 0
    t, p = t[ok], p[ok]
    k = len(CLASSES)
    cm = np.bincount(t * k + p, minlength=k * k).reshape(k, k)
    per_class = {}
    for i, name in enumerate(CLASSES):
        tp, n_true, n_pred = int(cm[i, i]), int(cm[i].sum()), int(cm[:, i].sum())
        prec = tp / n_pred if n_pred else None
        rec = tp / n_true if n_true else None
        f1 = 2 * tp / (n_true + n_pred) if n_true + n_pred else None
        per_class[name] = {"precision": prec, "recall": rec, "f1": f1, "n_true": n_true, "n_pred": n_pred}
    present = [v["f1"] for v in per_class.values() if v["n_true"] > 0]
    return {
        "classes": list(CLASSES),
        "confusion": cm.tolist(),
        "per_class": per_class,
        "macro_f1": float(np.mean(present)) if present else None,
        "accuracy": float(np.trace(cm) / cm.sum()) if cm.sum() else None,
        "n_scored": int(cm.sum()),
    }


def evaluate_cell_paths(pred: str | Path, gt: str | Path, *, iou: float = 0.5, radius: float = 16.0) -> dict:
    """Read, match and score; an InputError when ``gt`` holds no typed nuclei."""
    pg, pn = read_typed_nuclei(pred)
    gg, gn = read_typed_nuclei(gt)
    typed = np.isin(gn.astype(str), CLASSES)
    if not typed.any():
        raise InputError(gt, f"no nuclei typed as a cell class ({', '.join(CLASSES)}) or with nucleusType")
    gg, gn = gg[typed], gn[typed]
    mp, mg = match_nuclei(pg, gg, iou=iou, radius=radius)
    out = cell_type_scores(pn[mp], gn[mg])
    out.update({"pred": str(pred), "gt": str(gt), "n_pred": len(pg), "n_gt": len(gg), "n_matched": len(mp),
                "matching": f"IoU >= {iou}" if _has_polygons(pg) and _has_polygons(gg) else f"centroids within {radius} px"})
    return out


def format_cells_table(result: dict) -> str:
    """Confusion matrix (rows truth) then per-class precision / recall / F1 and macro-F1."""
    short = [c[:10] for c in CLASSES]
    lines = [f"matched {result['n_matched']} of {result['n_gt']} true / {result['n_pred']} predicted nuclei "
             f"({result['matching']})", "", f"{'truth/pred':<12}" + "".join(f"{s:>11}" for s in short)]
    for name, row in zip(CLASSES, result["confusion"]):
        lines.append(f"{name:<12}" + "".join(f"{v:>11d}" for v in row))
    lines += ["", f"{'class':<12}{'precision':>11}{'recall':>11}{'F1':>11}{'n true':>9}"]
    fmt = lambda v: f"{v:>11.3f}" if v is not None else f"{'-':>11}"  # noqa: E731
    for name, v in result["per_class"].items():
        lines.append(f"{name:<12}{fmt(v['precision'])}{fmt(v['recall'])}{fmt(v['f1'])}{v['n_true']:>9d}")
    if result["macro_f1"] is not None:
        lines.append(f"{'macro-F1 (classes in truth)':<34}{result['macro_f1']:>11.3f}")
    return "\n".join(lines)
