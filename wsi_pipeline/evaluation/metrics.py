"""Instance-segmentation metrics on label images: matching F1, PQ, AJI, pixel Dice.

All functions take two label images of the same shape ``(H, W)`` (integer, 0 =
background, each object one positive id). Scores are kept as *sums* in
:class:`ImageScores` so that several images aggregate exactly (AJI overall is the ratio of
the summed intersections and unions, as in the MoNuSeg challenge).

Definitions
-----------
* IoU matching at threshold ``t``: a one-to-one assignment of ground-truth and predicted
  objects (Hungarian, maximising the summed IoU) among pairs with ``IoU >= t``;
  TP = matched pairs, FP = unmatched predictions, FN = unmatched ground truth.
  precision = TP/(TP+FP), recall = TP/(TP+FN), F1 = 2TP/(2TP+FP+FN).
* Panoptic quality at ``t``: DQ = F1, SQ = mean IoU of the matched pairs, PQ = DQ * SQ.
* AJI (Kumar et al., IEEE TMI 2017): every ground-truth object G is paired with the
  prediction S of largest IoU with it (a prediction may serve several G; G with no
  overlap adds |G| to the union only); C = sum |G ∩ S|, U = sum |G ∪ S| + the areas of
  the predictions never chosen; AJI = C / U.
* Pixel Dice: 2 |F_gt ∩ F_pred| / (|F_gt| + |F_pred|) on the foreground masks.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment


@dataclass(frozen=True)
class Overlaps:
    """Pairwise overlap table between ``n_gt`` ground-truth and ``n_pred`` predicted objects.

    gt_area : (n_gt,) pixels per ground-truth object.
    pred_area : (n_pred,) pixels per predicted object.
    inter : (n_gt, n_pred) intersection pixel counts.
    """

    gt_area: np.ndarray
    pred_area: np.ndarray
    inter: np.ndarray

    @property
    def iou(self) -> np.ndarray:
        union = self.gt_area[:, None] + self.pred_area[None, :] - self.inter
        return np.divide(self.inter, union, out=np.zeros(self.inter.shape), where=union > 0)


def _relabel(labels: np.ndarray) -> tuple[np.ndarray, int]:
    """Labels mapped to 0..n (0 = background); returns (relabelled int64 image, n)."""
    labels = np.asarray(labels)
    if labels.size == 0 or labels.max() <= 0:
        return np.zeros(labels.shape, np.int64), 0
    if labels.min() < 0:
        raise ValueError("label images must be non-negative")
    present = np.bincount(labels.ravel().astype(np.int64)) > 0
    present[0] = False
    lut = np.zeros(present.size, np.int64)
    lut[present] = np.arange(1, present.sum() + 1)
    return lut[labels], int(present.sum())


def overlaps(gt: np.ndarray, pred: np.ndarray) -> Overlaps:
    """Overlap table of two ``(H, W)`` label images (ids need not be consecutive)."""
    gt = np.asarray(gt)
    pred = np.asarray(pred)
    if gt.shape != pred.shape:
        raise ValueError(f"label images differ in shape: ground truth {gt.shape}, prediction {pred.shape}")
    g, ng = _relabel(gt)
    p, npred = _relabel(pred)
    gt_area = np.bincount(g.ravel(), minlength=ng + 1)[1:].astype(np.float64)
    pred_area = np.bincount(p.ravel(), minlength=npred + 1)[1:].astype(np.float64)
    both = (g > 0) & (p > 0)
    pair = np.bincount((g[both] - 1) * max(npred, 1) + (p[both] - 1), minlength=ng * npred)
    return Overlaps(gt_area, pred_area, pair[: ng * npred].reshape(ng, npred).astype(np.float64))


def match(ov: Overlaps, *, iou_threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """One-to-one matching at ``IoU >= iou_threshold``; returns (gt index, pred index) arrays."""
    iou = ov.iou
    ok = iou >= iou_threshold
    if iou_threshold <= 0 or not ok.any():
        return np.empty(0, int), np.empty(0, int)
    rows = np.flatnonzero(ok.any(axis=1))
    cols = np.flatnonzero(ok.any(axis=0))
    sub = np.where(ok[np.ix_(rows, cols)], iou[np.ix_(rows, cols)], 0.0)
    r, c = linear_sum_assignment(sub, maximize=True)
    keep = sub[r, c] >= iou_threshold
    return rows[r[keep]], cols[c[keep]]


@dataclass
class ImageScores:
    """Additive counts for one image (or a sum over images); derived scores as properties.

    counts : IoU threshold -> {"tp", "fp", "fn", "sum_iou"}.
    """

    counts: dict[float, dict[str, float]] = field(default_factory=dict)
    aji_inter: float = 0.0
    aji_union: float = 0.0
    dice_inter: float = 0.0
    dice_sum: float = 0.0
    n_gt: int = 0
    n_pred: int = 0

    def __add__(self, other: "ImageScores") -> "ImageScores":
        counts = {}
        for t in sorted(set(self.counts) | set(other.counts)):
            a, b = self.counts.get(t, {}), other.counts.get(t, {})
            counts[t] = {k: a.get(k, 0.0) + b.get(k, 0.0) for k in ("tp", "fp", "fn", "sum_iou")}
        return ImageScores(
            counts, self.aji_inter + other.aji_inter, self.aji_union + other.aji_union,
            self.dice_inter + other.dice_inter, self.dice_sum + other.dice_sum,
            self.n_gt + other.n_gt, self.n_pred + other.n_pred,
        )

    @property
    def aji(self) -> float:
        return self.aji_inter / self.aji_union if self.aji_union > 0 else 1.0

    @property
    def dice(self) -> float:
        return 2 * self.dice_inter / self.dice_sum if self.dice_sum > 0 else 1.0

    def at(self, iou_threshold: float) -> dict[str, float]:
        """precision, recall, f1, dq, sq, pq, tp, fp, fn at one IoU threshold."""
        c = self.counts[iou_threshold]
        tp, fp, fn = c["tp"], c["fp"], c["fn"]
        precision = tp / (tp + fp) if tp + fp else float(fn == 0)
        recall = tp / (tp + fn) if tp + fn else float(fp == 0)
        f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0
        sq = c["sum_iou"] / tp if tp else float(fp + fn == 0)
        return {"precision": precision, "recall": recall, "f1": f1, "dq": f1, "sq": sq, "pq": f1 * sq,
                "tp": int(tp), "fp": int(fp), "fn": int(fn)}

    def to_dict(self) -> dict:
        out = {"n_gt": self.n_gt, "n_pred": self.n_pred, "aji": self.aji, "dice": self.dice}
        out["iou"] = {f"{t:g}": self.at(t) for t in sorted(self.counts)}
        return out


def aji_sums(ov: Overlaps) -> tuple[float, float]:
    """(summed intersection, summed union) of the aggregated Jaccard index."""
    n_gt, n_pred = ov.inter.shape
    if n_gt == 0:
        return 0.0, float(ov.pred_area.sum())
    inter_total, union_total = 0.0, 0.0
    used = np.zeros(n_pred, bool)
    if n_pred:
        iou = ov.iou
        best = iou.argmax(axis=1)
        hit = iou[np.arange(n_gt), best] > 0
        inter = ov.inter[np.arange(n_gt), best]
        union = ov.gt_area + ov.pred_area[best] - inter
        inter_total = float(inter[hit].sum())
        union_total = float(union[hit].sum()) + float(ov.gt_area[~hit].sum())
        used[best[hit]] = True
    else:
        union_total = float(ov.gt_area.sum())
    union_total += float(ov.pred_area[~used].sum())
    return inter_total, union_total


def score_labels(gt: np.ndarray, pred: np.ndarray, *, iou_thresholds=(0.5,)) -> ImageScores:
    """All metrics for one pair of ``(H, W)`` label images, as additive :class:`ImageScores`."""
    ov = overlaps(gt, pred)
    iou = ov.iou
    counts = {}
    for t in iou_thresholds:
        gi, pi = match(ov, iou_threshold=float(t))
        counts[float(t)] = {"tp": float(len(gi)), "fp": float(len(ov.pred_area) - len(gi)),
                            "fn": float(len(ov.gt_area) - len(gi)), "sum_iou": float(iou[gi, pi].sum())}
    ai, au = aji_sums(ov)
    fg_gt, fg_pred = np.asarray(gt) > 0, np.asarray(pred) > 0
    return ImageScores(counts, ai, au, float((fg_gt & fg_pred).sum()), float(fg_gt.sum() + fg_pred.sum()),
                       len(ov.gt_area), len(ov.pred_area))
