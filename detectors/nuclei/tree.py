"""Each nucleus at its own threshold: a tree of segmentations over threshold levels.

One global threshold cannot suit every nucleus: pale vesicular nuclei need a low level,
and touching dark nuclei only come apart at a high one. So the weight-free detector
segments the tile at several levels (each a fraction or multiple of the slide's
threshold) and keeps, for each part of the tile, the level that makes the most
nucleus-like objects:

1. every level gives objects (threshold, opening, distance-watershed split: the same
   steps as the single-level detector); each object's parent is the object of the next
   lower level that holds most of its pixels, so the objects form a tree (a forest);
2. every object gets a score in (0, 1) from four measurements, a logistic model:
   size (log area, and its square: nuclei have a typical size), solidity (area over
   convex-hull area: merged neighbours and ragged stroma are not convex), contrast with
   its rim, and stability (log of parent area over own area: a fragment of a larger
   blob is much smaller than its parent);
3. the choice: a set of objects, none an ancestor of another, that maximises the sum of
   ``score - bias`` (objects below ``bias`` are never worth taking). Dynamic programming
   from the highest level down: an object is worth its own value or the best of its
   children together, whichever is larger. Two objects that one object of the next level
   up straddles are a split that heals at a higher threshold: the watershed cutting an
   elongated nucleus, not two nuclei (a higher threshold only shrinks nuclei apart), so
   neither is ever chosen.

The coefficients come from a logistic fit of "this object has IoU >= 0.5 with a true
nucleus" on the 7 MoNuSeg dev tiles (32,837 objects over the 6 levels the default then had), made by
``bench/fit_node_score.py``; fitted leave-one-tile-out, the pooled AJI is 0.603 against
0.605 with all tiles.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from skimage.segmentation import relabel_sequential

from detectors.nuclei.watershed import label_means, rim_means


def score_terms(feats: np.ndarray) -> np.ndarray:
    """(n, 4) features (log area, solidity, contrast, stability) -> the (n, 5) terms the
    score weighs: log area, its square, solidity, contrast, stability."""
    a, s, c, t = feats.T
    return np.stack([a, a * a, s, c, t], 1)


@dataclass(frozen=True)
class NodeScore:
    """``sigmoid(intercept + log_area * a + log_area2 * a**2 + solidity * s + contrast * c
    + stability * t)`` with ``a = log(area / 300 px)``, ``c`` = (mean map inside - mean of
    the rim) / threshold level, ``t = log(parent area / area)`` (``log 3`` for a root);
    objects are worth ``score - bias``."""

    intercept: float = -13.3684
    log_area: float = 1.8529
    log_area2: float = -0.871
    solidity: float = 12.2211
    contrast: float = 4.3634
    stability: float = -0.2478
    bias: float = 0.45

    def __call__(self, feats: np.ndarray) -> np.ndarray:
        """(n, 4) features (log area, solidity, contrast, stability) -> (n,) scores."""
        w = np.array([self.log_area, self.log_area2, self.solidity, self.contrast, self.stability])
        return 1.0 / (1.0 + np.exp(-(self.intercept + score_terms(feats) @ w)))


ROOT_STABILITY = float(np.log(3.0))
#: an object with at least this share of itself in each of two objects one level lower straddles them
STRADDLE = 0.2


def parents(lower: np.ndarray, labels: np.ndarray, area: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each object of ``labels`` (H, W) int ids 1..n, of ``area`` (n,) pixels: the index
    (0-based) of the object of ``lower`` holding most of it (-1 where it lies on ``lower``'s
    background), and a bool mask over ``lower``'s objects: those that one object of
    ``labels`` straddles together (each holding >= ``STRADDLE`` of it)."""
    n, m = len(area), int(lower.max())
    if n == 0 or m == 0:
        return np.full(n, -1, np.int64), np.zeros(m, bool)
    sel = labels > 0
    pairs = np.bincount((labels[sel].astype(np.int64) - 1) * (m + 1) + lower[sel],
                        minlength=n * (m + 1)).reshape(n, m + 1)
    best = pairs.argmax(1)
    big = pairs[:, 1:] >= STRADDLE * np.maximum(area, 1)[:, None]
    straddled = (big & (big.sum(1) >= 2)[:, None]).any(0)
    return np.where(pairs[np.arange(n), best] > 0, best - 1, -1), straddled


def convex_areas(labels: np.ndarray, n: int, *, n_dirs: int = 16) -> np.ndarray:
    """(n,) area of a convex polygon around each object of ``labels`` (H, W) int ids 1..n,
    its pixels taken as unit squares: the polygon bounded by the object's supporting lines
    in ``n_dirs`` evenly spaced directions (the convex hull itself as ``n_dirs`` grows; at
    16, at most 2.6 % larger for a disc). All objects at once, no loop over objects."""
    area = np.zeros(n)
    if n == 0 or not labels.any():
        return area
    # an object's supporting lines touch it at pixels on its border: a pixel whose four
    # neighbours are all its own has a neighbour further out in every direction
    inner = np.zeros(labels.shape, bool)
    mid = labels[1:-1, 1:-1]
    inner[1:-1, 1:-1] = ((mid == labels[:-2, 1:-1]) & (mid == labels[2:, 1:-1])
                         & (mid == labels[1:-1, :-2]) & (mid == labels[1:-1, 2:]))
    flat = labels.ravel().astype(np.int64)
    counts_all = np.bincount(flat, minlength=n + 1)
    rows, cols = labels.shape
    cx_all = np.bincount(flat, weights=np.tile(np.arange(cols, dtype=np.float64), rows), minlength=n + 1)
    cy_all = np.bincount(flat, weights=np.repeat(np.arange(rows, dtype=np.float64), cols), minlength=n + 1)
    ys, xs = np.nonzero((labels > 0) & ~inner)
    ids = labels[ys, xs].astype(np.int64) - 1
    order = np.argsort(ids, kind="stable")
    ids, xs, ys = ids[order], xs[order].astype(np.float64), ys[order].astype(np.float64)
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    present = ids[starts]
    counts = np.diff(np.r_[starts, len(ids)])
    cx = cx_all[present + 1] / counts_all[present + 1]  # origin inside each object, for precision
    cy = cy_all[present + 1] / counts_all[present + 1]
    theta = 2 * np.pi * np.arange(n_dirs) / n_dirs
    c, s = np.cos(theta), np.sin(theta)
    rel = np.repeat(np.arange(len(starts)), counts)
    proj = (xs - cx[rel])[:, None] * c + (ys - cy[rel])[:, None] * s
    h = np.maximum.reduceat(proj, starts, axis=0) + 0.5 * (np.abs(c) + np.abs(s))  # square corners
    delta = 2 * np.pi / n_dirs
    edge = (np.roll(h, 1, axis=1) + np.roll(h, -1, axis=1) - 2 * h * np.cos(delta)) / np.sin(delta)
    area[present] = 0.5 * (h * edge).sum(1)
    return area


def node_features(labels: np.ndarray, nmap: torch.Tensor, level: float, *, ring: int,
                  area_unit: float = 300.0) -> tuple[np.ndarray, np.ndarray]:
    """(n, 3) log area (over ``area_unit`` px: 300 at 0.25 µm/px), solidity and rim contrast of
    the objects of ``labels`` (H, W) int ids 1..n on the nucleus map ``nmap`` (H, W), and their
    (n,) areas."""
    n = int(labels.max())
    lab = torch.from_numpy(labels.astype(np.int64)).to(nmap.device)
    area = np.bincount(labels.ravel(), minlength=n + 1)[1:].astype(np.float64)
    vals = nmap.float()
    contrast = ((label_means(lab, vals, n) - rim_means(lab, vals, n, ring=ring)) / max(level, 1e-6)).cpu().numpy()
    solidity = area / np.maximum(convex_areas(labels, n), 1.0)
    return np.stack([np.log(np.maximum(area, 1) / area_unit), solidity, contrast], 1), area


def tree_features(levels: list[np.ndarray], nmap: torch.Tensor, level: float, *,
                  ring: int, area_unit: float = 300.0) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """Per level (lowest threshold first): each object's parent index one level lower (-1:
    none), its (n, 4) features (log area, solidity, rim contrast, stability), and whether
    it may be chosen: not when it is part of a split that heals one level higher (module
    docstring)."""
    par, feats, usable = [], [], []
    area_prev = np.zeros(0)
    for k, lab in enumerate(levels):
        n = int(lab.max())
        f, area = node_features(lab, nmap, level, ring=ring, area_unit=area_unit) if n else (np.zeros((0, 3)), np.zeros(0))
        p = np.full(n, -1, np.int64)
        if k:
            p, straddled = parents(levels[k - 1], lab, area)
            usable[k - 1] &= ~straddled
        parent_area = area_prev[np.maximum(p, 0)] if len(area_prev) else np.zeros(n)
        stability = np.where(p >= 0, np.log(np.maximum(parent_area, 1) / np.maximum(area, 1)), ROOT_STABILITY)
        par.append(p)
        feats.append(np.c_[f, stability])
        usable.append(np.ones(n, bool))
        area_prev = area
    return par, feats, usable


def select(levels: list[np.ndarray], par: list[np.ndarray], value: list[np.ndarray]) -> np.ndarray:
    """One (H, W) int32 label image (ids 1..m): the objects of ``levels`` (per-level label
    images, lowest threshold first; ``par`` their parents) with the largest total ``value``,
    none an ancestor of another; objects worth <= 0 are never taken."""
    k_levels = len(levels)
    n = [len(v) for v in value]
    best: list[np.ndarray] = [np.zeros(0)] * k_levels
    take: list[np.ndarray] = [np.zeros(0, bool)] * k_levels
    for k in range(k_levels - 1, -1, -1):  # best value of each subtree, highest level first
        children = np.zeros(n[k])
        if k + 1 < k_levels and n[k + 1]:
            ok = par[k + 1] >= 0
            np.add.at(children, par[k + 1][ok], best[k + 1][ok])
        own = value[k] > children
        take[k] = own & (value[k] > 0)
        best[k] = np.maximum(np.where(own, value[k], children), 0.0)
    out = np.zeros(levels[0].shape, np.int32)  # paint taken objects with no taken ancestor
    blocked_prev = np.zeros(0, bool)
    next_id = 1
    for k, lab in enumerate(levels):
        blocked = np.zeros(n[k], bool)
        if k and n[k] and n[k - 1]:
            ok = par[k] >= 0
            blocked[ok] = blocked_prev[par[k][ok]] | take[k - 1][par[k][ok]]
        chosen = np.flatnonzero(take[k] & ~blocked)
        if len(chosen):
            lut = np.zeros(n[k] + 1, np.int32)
            lut[chosen + 1] = np.arange(next_id, next_id + len(chosen), dtype=np.int32)
            paint = lut[lab]
            free = (paint > 0) & (out == 0)  # parents are by majority: a stray pixel may overlap
            out[free] = paint[free]
            next_id += len(chosen)
        blocked_prev = blocked
    return relabel_sequential(out)[0]


def choose(levels: list[np.ndarray], nmap: torch.Tensor, level: float, score: NodeScore, *, ring: int,
           area_unit: float = 300.0) -> np.ndarray:
    """The tree's choice (module docstring): per-level label images -> one label image;
    ``area_unit`` the pixel area the score's log area is taken over (300 px at 0.25 µm/px)."""
    par, feats, usable = tree_features(levels, nmap, level, ring=ring, area_unit=area_unit)
    value = [np.where(ok, score(f) - score.bias, -np.inf) for f, ok in zip(feats, usable)]
    return select(levels, par, value)

