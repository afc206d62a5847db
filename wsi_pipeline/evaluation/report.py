"""Evaluate prediction files against ground truth: per image and overall, as a dict and a table."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tiling.errors import InputError
from wsi_pipeline.atomic import atomic_path
from wsi_pipeline.evaluation.io import load_pair, pair_files, stem_of
from wsi_pipeline.evaluation.metrics import ImageScores, score_labels


def evaluate_paths(pred: str | Path, gt: str | Path, *, iou_thresholds=(0.5,)) -> dict:
    """Score ``pred`` against ``gt`` (two files, or two folders matched by file stem).

    Returns ``{"iou_thresholds", "images": {stem: scores}, "overall": scores}`` where
    ``scores`` is :meth:`ImageScores.to_dict`; "overall" sums counts over images (AJI
    overall = summed intersections / summed unions) and adds ``mean_per_image``.
    """
    pred, gt = Path(pred), Path(gt)
    thresholds = tuple(sorted({round(float(t), 6) for t in iou_thresholds}))
    if not thresholds or any(not 0 < t <= 1 for t in thresholds):
        raise InputError(None, f"IoU thresholds must be in (0, 1], got {list(iou_thresholds)}")
    for p in (pred, gt):
        if not p.exists():
            raise InputError(p, "no such file or folder")
    if pred.is_dir() != gt.is_dir():
        raise InputError(pred, f"give two files or two folders (the ground truth {gt} is "
                         f"{'a folder' if gt.is_dir() else 'a file'})")
    pairs = pair_files(pred, gt) if pred.is_dir() else [(stem_of(gt), pred, gt)]
    images: dict[str, ImageScores] = {}
    for stem, p, g in pairs:
        p_lab, g_lab = load_pair(p, g)
        images[stem] = score_labels(g_lab, p_lab, iou_thresholds=thresholds)
    total = sum(images.values(), ImageScores())
    overall = total.to_dict()
    per = [s.to_dict() for s in images.values()]
    key = f"{0.5 if 0.5 in thresholds else thresholds[0]:g}"
    overall["mean_per_image"] = {
        "aji": float(np.mean([d["aji"] for d in per])),
        "dice": float(np.mean([d["dice"] for d in per])),
        f"f1@{key}": float(np.mean([d["iou"][key]["f1"] for d in per])),
        f"pq@{key}": float(np.mean([d["iou"][key]["pq"] for d in per])),
    }
    return {"iou_thresholds": list(thresholds), "images": {k: v.to_dict() for k, v in images.items()},
            "overall": overall}


def format_table(result: dict) -> str:
    """Text table: one row per image and IoU threshold, then the overall rows."""
    head = f"{'image':<32} {'IoU':>5} {'n_gt':>6} {'n_pred':>6} {'prec':>6} {'recall':>6} {'F1':>6} " \
           f"{'DQ':>6} {'SQ':>6} {'PQ':>6} {'AJI':>6} {'Dice':>6}"
    lines = [head, "-" * len(head)]
    rows = list(result["images"].items())
    if len(rows) > 1 or not rows:
        rows.append(("OVERALL", result["overall"]))
    for name, d in rows:
        for t, m in d["iou"].items():
            lines.append(f"{name[:32]:<32} {t:>5} {d['n_gt']:>6} {d['n_pred']:>6} {m['precision']:6.3f} "
                         f"{m['recall']:6.3f} {m['f1']:6.3f} {m['dq']:6.3f} {m['sq']:6.3f} {m['pq']:6.3f} "
                         f"{d['aji']:6.3f} {d['dice']:6.3f}")
    return "\n".join(lines)


def write_json_atomic(path: str | Path, data: dict) -> None:
    """Write ``data`` as JSON to ``path`` via a temporary file and a rename."""
    path = Path(path)
    if not path.parent.is_dir():
        raise InputError(path, "the folder for the JSON output does not exist")
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=1))
