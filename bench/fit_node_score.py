"""Fit the weight-free detector's level choice (:class:`detectors.nuclei.tree.NodeScore`).

Every tile of the dev set is segmented at each threshold level; each object is labelled
"true" when its IoU with a ground-truth nucleus is >= 0.5 and described by its log area
(and its square), solidity, rim contrast and stability. A logistic regression (Newton's
method, a little L2) gives the coefficients. ``--loo`` also fits them leave-one-tile-out
and scores the detector on each held-out tile with the coefficients fitted without it.

    python bench/fit_node_score.py [--data ../shared/data/nuclei/monuseg-dev] [--loo]
    python bench/fit_node_score.py --data ../shared/data/nuclei/monuseg-train --mpp 0.5
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import shapely
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_nuclei_weightfree import DEFAULT_DATA, load, summary  # noqa: E402

from detectors.nuclei.polygons import rasterise  # noqa: E402
from detectors.nuclei.tree import NodeScore, score_terms, tree_features  # noqa: E402
from detectors.nuclei.weightfree import WeightFreeNucleiDetector, WeightFreeParams  # noqa: E402
from wsi_pipeline.evaluation.metrics import ImageScores, overlaps, score_labels  # noqa: E402

SOURCE_MPP = 0.25  # MoNuSeg tiles are 40x


def fit_logistic(x: np.ndarray, y: np.ndarray, *, l2: float = 1e-2, iters: int = 50) -> np.ndarray:
    """Intercept and weights (in the units of ``x``) of a logistic regression."""
    mu, sd = x.mean(0), x.std(0) + 1e-9
    z = np.c_[np.ones(len(x)), (x - mu) / sd]
    w = np.zeros(z.shape[1])
    for _ in range(iters):
        p = 1 / (1 + np.exp(-z @ w))
        grad = z.T @ (p - y) + l2 * w
        hess = (z * (p * (1 - p))[:, None]).T @ z + l2 * np.eye(len(w))
        w -= np.linalg.solve(hess, grad)
    weights = w[1:] / sd
    return np.r_[w[0] - (weights * mu).sum(), weights]


def at_mpp(rgb: np.ndarray, gt: np.ndarray, mpp: float) -> tuple[np.ndarray, np.ndarray]:
    """A 0.25 µm/px tile and its truth labels at ``mpp``: the image box-averaged (as a slide
    read at that resolution), the labels sampled at the centre of each new pixel."""
    f = mpp / SOURCE_MPP
    if f == 1:
        return rgb, gt
    h, w = round(rgb.shape[0] / f), round(rgb.shape[1] / f)
    small = np.asarray(Image.fromarray(rgb).resize((w, h), Image.Resampling.BOX))
    rows = np.minimum(((np.arange(h) + 0.5) * f).astype(int), gt.shape[0] - 1)
    cols = np.minimum(((np.arange(w) + 0.5) * f).astype(int), gt.shape[1] - 1)
    return small, gt[np.ix_(rows, cols)]


def objects(tiles: dict, params: WeightFreeParams, mpp: float = 0.25) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{tile: (score terms (n, 5), IoU with the best ground-truth nucleus (n,))} over all levels,
    the tiles segmented at ``mpp`` (truth sampled to it)."""
    out = {}
    for stem, (rgb0, gt0) in tiles.items():
        rgb, gt = at_mpp(rgb0, gt0, mpp)
        det = WeightFreeNucleiDetector(device="cpu", params=params, mpp=mpp).calibrate(rgb)
        levels, nmap, level = det.level_labels(rgb)
        _, feats, usable = tree_features(levels, nmap, level, ring=det.px.ring, area_unit=det.px.area_unit)
        ious = [overlaps(gt, lab).iou.max(0) if lab.max() else np.zeros(0) for lab in levels]
        ok = np.concatenate(usable)  # healed splits are never chosen
        out[stem] = (score_terms(np.concatenate(feats))[ok], np.concatenate(ious)[ok])
    return out


def node_score(coef: np.ndarray, bias: float) -> NodeScore:
    keys = ("intercept", "log_area", "log_area2", "solidity", "contrast", "stability")
    return NodeScore(**{k: round(float(v), 4) for k, v in zip(keys, coef)}, bias=bias)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--loo", action="store_true", help="also fit leave-one-tile-out and score held-out tiles")
    ap.add_argument("--bias", type=float, default=WeightFreeParams().node_score.bias)
    ap.add_argument("--levels", help="threshold levels, comma-separated multiples of the global level")
    ap.add_argument("--mpp", type=float, default=0.25, help="segment at this resolution (tiles box-averaged; "
                                                             "the fitted score then belongs to it)")
    args = ap.parse_args()
    tiles = load(args.data)
    params = WeightFreeParams()
    if args.levels:
        params = replace(params, levels=tuple(float(v) for v in args.levels.split(",")))
    t0 = time.perf_counter()
    data = objects(tiles, params, args.mpp)
    x = np.concatenate([d[0] for d in data.values()])
    y = np.concatenate([d[1] for d in data.values()]) >= 0.5
    coef = fit_logistic(x, y.astype(float))
    filled = " and the filled level" if params.filled_level > 0 else ""
    print(f"{len(x)} objects over {len(params.levels)} levels{filled}, {y.mean():.1%} true "
          f"({time.perf_counter() - t0:.0f} s)")
    print(f"all tiles: {node_score(coef, args.bias)}")
    if not args.loo:
        return
    total, per = ImageScores(), []
    for held, (rgb, gt) in tiles.items():
        xs = np.concatenate([d[0] for s, d in data.items() if s != held])
        ys = np.concatenate([d[1] for s, d in data.items() if s != held]) >= 0.5
        p = replace(params, node_score=node_score(fit_logistic(xs, ys.astype(float)), args.bias))
        small, _ = at_mpp(rgb, gt, args.mpp)
        det = WeightFreeNucleiDetector(device="cpu", params=p, mpp=args.mpp).calibrate(small)
        geoms = shapely.transform(det.predict(small).geometry, lambda c: c * (args.mpp / SOURCE_MPP))
        s = score_labels(gt, rasterise(geoms, gt.shape))
        total = total + s
        per.append(f"{held[:12]} {s.aji:.3f}")
    aji, f1, pq = summary(total)
    print(f"leave-one-tile-out: AJI {aji:.4f} F1@0.5 {f1:.4f} PQ {pq:.4f} | " + ", ".join(per))


if __name__ == "__main__":
    main()
