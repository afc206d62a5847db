"""Tissue-region scores: Dice and IoU per class between two region GeoJSONs.

Each file's polygonal features are grouped by classification name (Epidermis, Dermis,
Tumor, Inflammation, Other; other names are ignored and listed); each class is the union
of its polygons. Scores are exact areas (shapely), in level-0 px², so the two files must
share one coordinate frame (the same slide):

``IoU = |P ∩ G| / |P ∪ G|``   ``Dice = 2 |P ∩ G| / (|P| + |G|)``

A class absent from both files is not scored (``null``); present in only one it scores 0.
``mean_iou`` / ``mean_dice`` average the classes present in the ground truth.
"""

from __future__ import annotations

from pathlib import Path

import shapely

from tiling.errors import InputError

CLASSES = ("Epidermis", "Dermis", "Tumor", "Inflammation", "Other")


def read_region_geometries(path: str | Path) -> tuple[dict, list[str]]:
    """``({class name: union geometry}, [ignored class names])`` from a GeoJSON file."""
    from wsi_pipeline.annotations import read_geojson

    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file not found")
    groups: dict[str, list] = {}
    ignored: set[str] = set()
    for f in read_geojson(path):
        g = f.geometry
        if g is None or g.is_empty or g.geom_type not in ("Polygon", "MultiPolygon", "GeometryCollection"):
            continue
        if f.classification in CLASSES:
            groups.setdefault(f.classification, []).append(g)
        else:
            ignored.add(str(f.classification))
    geoms = {}
    for name, parts in groups.items():
        u = shapely.union_all([p if p.is_valid else shapely.make_valid(p) for p in parts])
        u = shapely.union_all([x for x in getattr(u, "geoms", [u]) if x.geom_type in ("Polygon", "MultiPolygon")])
        if not u.is_empty:
            geoms[name] = u
    return geoms, sorted(ignored)


def region_scores(pred: dict, gt: dict) -> dict:
    """Per-class ``{iou, dice, pred_area, gt_area, intersection}`` (areas in level-0 px²)."""
    per_class = {}
    for name in CLASSES:
        p, g = pred.get(name), gt.get(name)
        if p is None and g is None:
            per_class[name] = None
            continue
        pa = 0.0 if p is None else float(p.area)
        ga = 0.0 if g is None else float(g.area)
        inter = 0.0 if p is None or g is None else float(shapely.intersection(p, g).area)
        union = pa + ga - inter
        per_class[name] = {
            "iou": inter / union if union > 0 else None,
            "dice": 2 * inter / (pa + ga) if pa + ga > 0 else None,
            "pred_area": pa, "gt_area": ga, "intersection": inter,
        }
    scored = [v for k, v in per_class.items() if v is not None and k in gt and v["iou"] is not None]
    return {
        "per_class": per_class,
        "mean_iou": sum(v["iou"] for v in scored) / len(scored) if scored else None,
        "mean_dice": sum(v["dice"] for v in scored) / len(scored) if scored else None,
    }


def evaluate_region_paths(pred: str | Path, gt: str | Path) -> dict:
    """Read both files and score them; an InputError when ``gt`` holds no region class."""
    pg, p_ignored = read_region_geometries(pred)
    gg, g_ignored = read_region_geometries(gt)
    if not gg:
        raise InputError(gt, f"no region annotations (classes {', '.join(CLASSES)}) in the ground truth")
    out = region_scores(pg, gg)
    out.update({"pred": str(pred), "gt": str(gt), "ignored_classes": {"pred": p_ignored, "gt": g_ignored}})
    return out


def format_regions_table(result: dict) -> str:
    """A fixed-width table: class, IoU, Dice, predicted and true area share."""
    lines = [f"{'class':<14}{'IoU':>8}{'Dice':>8}{'pred px²':>14}{'truth px²':>14}"]
    for name in CLASSES:
        v = result["per_class"].get(name)
        if v is None:
            lines.append(f"{name:<14}{'-':>8}{'-':>8}{'-':>14}{'-':>14}")
            continue
        iou = "-" if v["iou"] is None else f"{v['iou']:.3f}"
        dice = "-" if v["dice"] is None else f"{v['dice']:.3f}"
        lines.append(f"{name:<14}{iou:>8}{dice:>8}{v['pred_area']:>14.0f}{v['gt_area']:>14.0f}")
    if result.get("mean_iou") is not None:
        lines.append(f"{'mean (truth)':<14}{result['mean_iou']:>8.3f}{result['mean_dice']:>8.3f}")
    return "\n".join(lines)
