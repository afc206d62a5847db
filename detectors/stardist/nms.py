"""StarDist's non-maximum suppression in torch, so that it runs where the network ran.

The rule is stardist's: candidates are taken in decreasing probability, and a kept
polygon suppresses every later one whose overlap with it, intersection area over the
smaller of the two areas, exceeds ``nms_thresh``. stardist computes the intersections
exactly (polygon clipping, in C, on the CPU), one candidate after another. Here every
step is a batched tensor operation:

* **pairs**: candidates are hashed into square cells as wide as the largest polygon's
  bounding box, so two polygons can only overlap if their cells touch; pairs from the
  3 x 3 neighbouring cells are kept when their bounding boxes intersect;
* **overlap**: a star-convex polygon is a fan of ``n_rays`` triangles around its centre.
  Each triangle of one polygon of a pair is cut into ``m²`` equal sub-triangles whose
  centroids are tested against the other polygon: a point lies inside a star-convex
  polygon iff it lies on the centre's side of the edge of the sector that holds its
  angle (exact), so the only approximation is the area quadrature: ``m`` = 4 (512 points
  per pair for 32 rays; overlap within 0.05 of the exact one) for every pair, then ``m`` = 16
  (within 0.004) for the pairs whose overlap came out near the threshold;
* **greedy order**: the sequential rule is resolved in rounds: a candidate is kept once
  every higher-ranked candidate that overlaps it is suppressed, and suppressed once one
  of them is kept. Each round decides at least the best undecided candidate, so the
  result is the sequential one; rounds number the longest chain of overlaps, not the
  candidates.

On a CPU stardist's C code is faster and stays the default there
(:func:`detectors.stardist.predict.instances_from_prob_dist`); on a GPU this keeps the
candidates on the device, and only the kept polygons come back.
"""

from __future__ import annotations

import math

import torch

POINT_CHUNK = 1 << 25  # sample points tested at once (pairs x n_rays x m²): ~128 MB per float tensor


def ray_angles(n_rays: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(sin, cos) of stardist's ray angles 2πk/n: ray k ends at (y + d sin, x + d cos)."""
    phi = torch.arange(n_rays, device=device, dtype=torch.float32) * (2 * math.pi / n_rays)
    return torch.sin(phi), torch.cos(phi)


def polygon_areas(dist: torch.Tensor) -> torch.Tensor:
    """(N, R) ray lengths -> (N,) areas of the star polygons (sum of the fan's triangles)."""
    n_rays = dist.shape[1]
    return 0.5 * math.sin(2 * math.pi / n_rays) * (dist * dist.roll(-1, dims=1)).sum(1)


def bounding_boxes(points: torch.Tensor, dist: torch.Tensor) -> torch.Tensor:
    """(N, 4) y0, x0, y1, x1 of the polygons' vertices."""
    sin, cos = ray_angles(dist.shape[1], dist.device)
    ys = points[:, :1] + dist * sin
    xs = points[:, 1:] + dist * cos
    return torch.stack([ys.min(1).values, xs.min(1).values, ys.max(1).values, xs.max(1).values], 1)


def candidate_pairs(points: torch.Tensor, boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Index pairs (a, b), a < b, of the candidates whose bounding boxes intersect."""
    n = len(points)
    if n < 2:
        empty = torch.empty(0, dtype=torch.long, device=points.device)
        return empty, empty
    extent = (boxes[:, 2:] - boxes[:, :2]).max()
    cell = float(extent) + 1.0
    cy = torch.floor(points[:, 0] / cell).long()
    cx = torch.floor(points[:, 1] / cell).long()
    cy, cx = cy - cy.min() + 1, cx - cx.min() + 1  # a ring of empty cells around: no negative keys
    width = int(cx.max()) + 2
    key = cy * width + cx
    order = torch.argsort(key)
    sorted_key = key[order]
    a_parts, b_parts = [], []
    for oy in (-1, 0, 1):
        for ox in (-1, 0, 1):
            nkey = key + oy * width + ox
            lo = torch.searchsorted(sorted_key, nkey, side="left")
            hi = torch.searchsorted(sorted_key, nkey, side="right")
            counts = hi - lo
            a = torch.repeat_interleave(torch.arange(n, device=points.device), counts)
            starts = torch.repeat_interleave(lo - torch.cumsum(counts, 0) + counts, counts)
            b = order[starts + torch.arange(len(a), device=points.device)]
            keep = a < b
            a, b = a[keep], b[keep]
            hit = ((boxes[a, 0] <= boxes[b, 2]) & (boxes[b, 0] <= boxes[a, 2])
                   & (boxes[a, 1] <= boxes[b, 3]) & (boxes[b, 1] <= boxes[a, 3]))
            a_parts.append(a[hit])
            b_parts.append(b[hit])
    return torch.cat(a_parts), torch.cat(b_parts)


def _sub_triangle_centroids(m: int, device) -> torch.Tensor:
    """(m², 2) barycentric weights (u, v) of the centroids of a triangle cut into m² equal parts."""
    uv = []
    for i in range(m):
        for j in range(m - i):
            uv.append(((i + 1 / 3) / m, (j + 1 / 3) / m))  # upright sub-triangles
            if i + j < m - 1:
                uv.append(((i + 2 / 3) / m, (j + 2 / 3) / m))  # inverted ones
    return torch.tensor(uv, dtype=torch.float32, device=device)


def inside_star(py: torch.Tensor, px: torch.Tensor, dist: torch.Tensor, sin: torch.Tensor,
                cos: torch.Tensor) -> torch.Tensor:
    """Whether points (P, K), relative to their polygon's centre, lie inside the star polygon of
    ray lengths ``dist`` (P, R)."""
    n_rays = dist.shape[1]
    phi = torch.atan2(py, px) % (2 * math.pi)
    k = torch.clamp((phi * (n_rays / (2 * math.pi))).long(), max=n_rays - 1)
    k1 = (k + 1) % n_rays
    d0, d1 = torch.gather(dist, 1, k), torch.gather(dist, 1, k1)
    ay, ax = d0 * sin[k], d0 * cos[k]
    by, bx = d1 * sin[k1], d1 * cos[k1]
    # sign of the cross product (b - a) x (p - a) against that of the centre, (b - a) x (0 - a)
    ey, ex = by - ay, bx - ax
    side_p = ex * (py - ay) - ey * (px - ax)
    side_c = ex * (-ay) - ey * (-ax)
    return side_p * side_c >= 0


def intersection_areas(points: torch.Tensor, dist: torch.Tensor, a: torch.Tensor, b: torch.Tensor, *,
                       m: int = 4) -> torch.Tensor:
    """Approximate area of polygon a ∩ polygon b for each pair: a's fan triangles sampled at
    the centroids of m² equal sub-triangles, each tested against b (:func:`inside_star`)."""
    n_rays = dist.shape[1]
    sin, cos = ray_angles(n_rays, dist.device)
    uv = _sub_triangle_centroids(m, dist.device)  # (S, 2)
    out = torch.empty(len(a), dtype=torch.float32, device=dist.device)
    chunk = max(1, POINT_CHUNK // (n_rays * len(uv)))
    for s in range(0, len(a), chunk):
        ia, ib = a[s:s + chunk], b[s:s + chunk]
        da = dist[ia]
        # vertices of a relative to a's centre: (P, R)
        vy, vx = da * sin, da * cos
        wy, wx = vy.roll(-1, 1), vx.roll(-1, 1)
        tri_area = 0.5 * (vx * wy - vy * wx)  # (P, R), >= 0 for counter-clockwise fans
        py = (vy[:, :, None] * uv[:, 0] + wy[:, :, None] * uv[:, 1]).flatten(1)  # (P, R*S)
        px = (vx[:, :, None] * uv[:, 0] + wx[:, :, None] * uv[:, 1]).flatten(1)
        off = points[ia] - points[ib]  # a's centre relative to b's
        inside = inside_star(py + off[:, :1], px + off[:, 1:], dist[ib], sin, cos)
        frac = inside.view(len(ia), n_rays, -1).float().mean(2)
        out[s:s + chunk] = (frac * tri_area.abs()).sum(1)
    return out


def resolve_greedy(n: int, winner: torch.Tensor, loser: torch.Tensor) -> torch.Tensor:
    """The sequential greedy NMS decided in rounds: candidates 0..n-1 in rank order, edges
    ``winner`` -> ``loser`` (winner ranked higher) where keeping the winner suppresses the loser.
    Returns a (n,) bool mask of the kept candidates."""
    device = winner.device
    undecided, kept, removed = 0, 1, 2
    state = torch.zeros(n, dtype=torch.int8, device=device)
    while True:
        open_ = state == undecided
        if not bool(open_.any()):
            return state == kept
        # suppressed: some winner already kept
        hit = torch.zeros(n, dtype=torch.bool, device=device)
        hit[loser[state[winner] == kept]] = True
        state[open_ & hit] = removed
        # kept: no winner left that is kept or undecided
        alive = torch.zeros(n, dtype=torch.int32, device=device)
        alive.index_add_(0, loser, (state[winner] != removed).int())
        state[(state == undecided) & (alive == 0)] = kept


COARSE, FINE, COARSE_ERROR = 4, 16, 0.05  # sub-triangles per side; coarse overlap's worst error


def nms_sparse(dist: torch.Tensor, prob: torch.Tensor, points: torch.Tensor, *, nms_thresh: float) -> torch.Tensor:
    """stardist's ``non_maximum_suppression_sparse`` on tensors (any device).

    dist (N, R) ray lengths, prob (N,), points (N, 2) (y, x) pixels. Returns the indices of the
    kept candidates in decreasing probability (as stardist orders its result).
    """
    order = torch.argsort(prob, descending=True, stable=True)
    dist, points = dist[order].float(), points[order].float()
    n = len(order)
    if n == 0:
        return order
    boxes = bounding_boxes(points, dist)
    a, b = candidate_pairs(points, boxes)  # a < b: a ranks higher
    if len(a):
        areas = polygon_areas(dist)
        # sample the smaller polygon of each pair: the overlap is relative to it
        small_a = areas[a] <= areas[b]
        sa, sb = torch.where(small_a, a, b), torch.where(small_a, b, a)
        smaller = torch.minimum(areas[a], areas[b]) + 1e-10
        overlap = intersection_areas(points, dist, sa, sb, m=COARSE) / smaller
        near = torch.nonzero((overlap - nms_thresh).abs() < COARSE_ERROR).squeeze(1)
        if len(near):
            overlap[near] = intersection_areas(points, dist, sa[near], sb[near], m=FINE) / smaller[near]
        hit = overlap > nms_thresh
        a, b = a[hit], b[hit]
    keep = resolve_greedy(n, a, b)
    return order[keep]
