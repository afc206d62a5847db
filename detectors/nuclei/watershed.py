"""Weight-free nucleus segmentation steps on hematoxylin maps.

Everything up to the flooding runs in torch on the tile batch's device (smoothing,
threshold, distance transform, marker detection); the flooding itself is
:func:`skimage.segmentation.watershed` on the CPU, one tile at a time, because a
priority-queue flood is sequential and already fast there (~50 ms per 1000² tile).

Shapes: ``(B, 1, H, W)`` float32 tensors unless said otherwise.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from skimage.segmentation import watershed


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur with reflect padding; ``sigma`` in pixels (0 = identity).

    On a CPU the two passes are scipy's ``correlate1d`` with the same kernel and the same
    mirrored edges (several times faster than a one-channel ``conv2d`` there)."""
    if sigma <= 0:
        return x
    r = max(1, int(math.ceil(3 * sigma)))
    t = torch.arange(-r, r + 1, device=x.device, dtype=x.dtype)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    if x.device.type == "cpu" and min(x.shape[-2:]) > r:
        a = np.ascontiguousarray(x.numpy())
        kn = k.numpy()
        a = ndimage.correlate1d(a, kn, axis=-1, mode="mirror")
        return torch.from_numpy(ndimage.correlate1d(a, kn, axis=-2, mode="mirror"))
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="reflect"), k.view(1, 1, 1, -1))
    return F.conv2d(F.pad(x, (0, 0, r, r), mode="reflect"), k.view(1, 1, -1, 1))


def otsu(x: torch.Tensor, *, mask: torch.Tensor | None = None, bins: int = 256, lo: float = 0.0,
         hi: float = 2.0) -> torch.Tensor:
    """Otsu threshold of each image in ``x`` over ``[lo, hi]``, counting only pixels where
    ``mask`` (same shape, bool) is true when given; returns ``(B,)``."""
    b = x.shape[0]
    v = x.reshape(b, -1).clamp(lo, hi)
    idx = ((v - lo) / (hi - lo) * (bins - 1)).round().long()
    hist = torch.zeros(b, bins, device=x.device, dtype=torch.float64)
    w = torch.ones_like(idx, dtype=torch.float64) if mask is None else mask.reshape(b, -1).to(torch.float64)
    hist.scatter_add_(1, idx, w)
    centers = torch.linspace(lo, hi, bins, device=x.device, dtype=torch.float64)
    w0 = hist.cumsum(1)
    m0 = (hist * centers).cumsum(1)
    total, mtotal = w0[:, -1:], m0[:, -1:]
    w1 = total - w0
    between = (mtotal * w0 - m0 * total) ** 2 / (w0 * w1).clamp(min=1e-12)
    between[(w0 == 0) | (w1 == 0)] = -1
    return centers[between.argmax(1)].to(x.dtype)


def _min_plus_pass(f: torch.Tensor, dim: int, radius: int) -> torch.Tensor:
    """``out[i] = min_{|k| <= radius} f[i + k] + k²`` along ``dim`` (outside = +inf)."""
    out = f.clone()
    n = f.shape[dim]
    for k in range(1, min(radius, n - 1) + 1):
        a = f.narrow(dim, k, n - k) + k * k  # neighbour at i + k
        out.narrow(dim, 0, n - k).copy_(torch.minimum(out.narrow(dim, 0, n - k), a))
        b = f.narrow(dim, 0, n - k) + k * k  # neighbour at i - k
        out.narrow(dim, k, n - k).copy_(torch.minimum(out.narrow(dim, k, n - k), b))
    return out


def distance_transform(mask: torch.Tensor, *, max_distance: int) -> torch.Tensor:
    """Exact Euclidean distance to the nearest background pixel, capped at ``max_distance``.

    Two separable min-plus passes (Meijster-style, brute force over a window of
    ``2 * max_distance + 1``), so it is cheap on a GPU and bounded on a CPU. Pixels outside
    the image count as foreground (objects cut by the tile edge keep their depth).
    On a CPU tensor scipy's exact EDT gives the same numbers faster.
    ``mask`` is ``(B, 1, H, W)`` bool; returns float32 of the same shape.
    """
    if mask.device.type == "cpu":
        m = mask.numpy()
        out = np.stack([ndimage.distance_transform_edt(m[i, 0]) for i in range(m.shape[0])])[:, None]
        return torch.from_numpy(np.minimum(out, max_distance).astype(np.float32))
    return distance_transform_torch(mask, max_distance=max_distance)


def distance_transform_torch(mask: torch.Tensor, *, max_distance: int) -> torch.Tensor:
    """The torch implementation of :func:`distance_transform` (any device)."""
    big = float(max_distance + 1) ** 2
    f = torch.where(mask, torch.full_like(mask, big, dtype=torch.float32), torch.zeros_like(mask, dtype=torch.float32))
    f = _min_plus_pass(f, 3, max_distance)
    f = _min_plus_pass(f, 2, max_distance)
    return f.clamp_(max=big).sqrt_().clamp_(max=float(max_distance))


def local_maxima(x: torch.Tensor, *, radius: int, min_value: float) -> torch.Tensor:
    """Pixels equal to the maximum of their ``(2r+1)²`` window and ``>= min_value`` (bool)."""
    k = 2 * radius + 1
    pooled = F.max_pool2d(x, (1, k), stride=1, padding=(0, radius))
    pooled = F.max_pool2d(pooled, (k, 1), stride=1, padding=(radius, 0))
    return (x >= pooled) & (x >= min_value)


def h_maxima(x: torch.Tensor, *, h: float, min_value: float, check_every: int = 8) -> torch.Tensor:
    """Bool ``(B, 1, H, W)``: the maxima of ``x`` that stand at least ``h`` above every path to
    a higher point (the h-maxima transform), and ``>= min_value``.

    Grayscale reconstruction by dilation of ``x - h`` under ``x`` (3 x 3 max-pooling
    repeated until nothing changes), then the pixels where ``x`` exceeds it by ``~h``.
    Unlike maxima within a fixed radius, two touching nuclei keep two markers when the
    neck between them is ``h`` shallower than both centres, whatever their distance.
    ``x`` must be >= 0 (a distance map) and ``min_value`` >= ``h``: the reconstruction then
    starts from ``max(x - h, 0)``, which leaves every maximum >= ``h`` as it is and spares
    the iterations that would otherwise creep over the background.
    """
    if min_value < h:
        raise ValueError(f"h_maxima needs min_value >= h (got {min_value} < {h})")
    rec = (x - h).clamp_(min=0.0)
    for i in range(x.shape[0]):
        _reconstruct(rec[i], x[i], check_every)
    return (x - rec >= h - 1e-4) & (x >= min_value)


def _reconstruct(rec: torch.Tensor, x: torch.Tensor, check_every: int) -> None:
    """Grayscale reconstruction of ``rec`` under ``x`` ((1, H, W)) in place: 3 x 3 dilations
    capped by ``x`` until nothing changes. After every ``check_every`` steps the work shrinks
    to the box around the pixels that changed, grown by ``check_every + 1`` (a change travels
    one pixel per step, so nothing outside the box can change in the next round): large
    flat sheets of foreground need hundreds of steps, but only where they are."""
    h, w = rec.shape[-2:]
    y0, y1, x0, x1 = 0, h, 0, w
    while True:
        r, c = rec[..., y0:y1, x0:x1], x[..., y0:y1, x0:x1]
        prev = r.clone()
        for _ in range(check_every):
            torch.minimum(_dilate3(r), c, out=r)
        changed = (r != prev).any(0)
        if not bool(changed.any()):
            return
        rows = torch.nonzero(changed.any(1)).flatten()
        cols = torch.nonzero(changed.any(0)).flatten()
        m = check_every + 1
        y0, y1 = max(0, y0 + int(rows[0]) - m), min(h, y0 + int(rows[-1]) + 1 + m)
        x0, x1 = max(0, x0 + int(cols[0]) - m), min(w, x0 + int(cols[-1]) + 1 + m)


def _dilate3(x: torch.Tensor) -> torch.Tensor:
    """3 x 3 grey dilation of ``(..., H, W)`` (edges replicated) by shifted maxima: on a CPU
    several times faster than ``max_pool2d``."""
    y = x.clone()
    torch.maximum(y[..., 1:, :], x[..., :-1, :], out=y[..., 1:, :])
    torch.maximum(y[..., :-1, :], x[..., 1:, :], out=y[..., :-1, :])
    z = y.clone()
    torch.maximum(z[..., 1:], y[..., :-1], out=z[..., 1:])
    torch.maximum(z[..., :-1], y[..., 1:], out=z[..., :-1])
    return z


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """``ndimage.binary_fill_holes`` of an (H, W) bool mask in one labelling pass: holes are
    the 4-connected background components that do not touch the image border (the same
    result; the iterative propagation it replaces was ~10% of a tile's time)."""
    bg, n = ndimage.label(~mask)
    if n == 0:
        return mask.copy()
    border = np.zeros(n + 1, bool)
    for edge in (bg[0], bg[-1], bg[:, 0], bg[:, -1]):
        border[edge] = True
    border[0] = True  # label 0 is the mask itself
    return mask | ~border[bg]


def fill_small_holes(mask: np.ndarray, *, max_extent: int) -> np.ndarray:
    """(H, W) bool with its holes filled where a hole's bounding box is at most
    ``max_extent`` px on each side (4-connected background components that do not touch the
    border). Thresholding a map and then filling its holes is thresholding the map with its
    closed basins filled (grayscale hole filling): the hollow centre of a vesicular nucleus,
    whose chromatin lines its membrane, joins its ring. Wider holes (cells outlined by their
    membranes, gland lumens) stay open. A hole cut by a tile's border stays open in that tile,
    so a tile and the whole image can differ only within ``max_extent`` of its border (inside
    the halo)."""
    bg, n = ndimage.label(~mask)
    if n == 0:
        return mask.copy()
    small = np.zeros(n + 1, bool)
    for i, sl in enumerate(ndimage.find_objects(bg), start=1):
        small[i] = max(sl[0].stop - sl[0].start, sl[1].stop - sl[1].start) <= max_extent
    for edge in (bg[0], bg[-1], bg[:, 0], bg[:, -1]):
        small[edge] = False
    small[0] = False  # label 0 is the mask itself
    return mask | small[bg]


def fill_holes_and_size(mask: np.ndarray, *, min_area: int) -> np.ndarray:
    """(H, W) bool: holes filled, connected components smaller than ``min_area`` removed."""
    mask = fill_holes(mask)
    lab, n = ndimage.label(mask)
    if n:
        area = np.bincount(lab.ravel())
        keep = area >= min_area
        keep[0] = False
        mask = keep[lab]
    return mask


def flood(landscape: np.ndarray, markers: np.ndarray, mask: np.ndarray, *, min_area: int) -> np.ndarray:
    """Marker-controlled watershed of ``-landscape`` inside ``mask``; (H, W) int32 labels.

    ``markers`` is a bool image; touching marker pixels form one marker. Regions smaller
    than ``min_area`` are dropped and ids renumbered 1..N. A connected part of the mask
    (4-connected, as the watershed floods) with one marker is that marker's region, so
    only the parts with several markers are flooded. The result is one watershed's over
    the whole mask except at ties: a pixel equally high in two basins may go to the other
    one, as the flooding order no longer interleaves other parts (the part alone decides,
    which suits tiling).
    """
    seeds, n = ndimage.label(markers & mask, structure=np.ones((3, 3)))
    if n == 0:
        return np.zeros(mask.shape, np.int32)
    parts, n_parts = ndimage.label(mask)
    on = seeds > 0
    pairs = np.unique(np.stack([parts[on], seeds[on]]), axis=1)  # (part, seed) pairs
    per_part = np.bincount(pairs[0], minlength=n_parts + 1)
    lut = np.zeros(n_parts + 1, np.int64)
    one = per_part[pairs[0]] == 1
    lut[pairs[0][one]] = pairs[1][one]
    lab = lut[parts]
    several = per_part[parts] >= 2
    if several.any():
        lab[several] = watershed(-landscape, np.where(several, seeds, 0), mask=several)[several]
    area = np.bincount(lab.ravel())
    keep = area >= min_area
    keep[0] = False
    out = np.zeros(area.size, np.int32)
    out[keep] = np.arange(1, keep.sum() + 1)
    return out[lab]


def label_means(labels: torch.Tensor, values: torch.Tensor, n: int) -> torch.Tensor:
    """(n,) mean of ``values`` (H, W) over the pixels of each id 1..n of ``labels`` (H, W)
    long (0 where an id has no pixel)."""
    if labels.device.type == "cpu":  # numpy's bincount: several times faster than index_add_ there
        lab = labels.reshape(-1).numpy()
        vals = values.reshape(-1).float().numpy()
        s = np.bincount(lab, weights=vals, minlength=n + 1)[1:n + 1]
        c = np.bincount(lab, minlength=n + 1)[1:n + 1]
        return torch.from_numpy((s / np.maximum(c, 1)).astype(np.float32))
    flat = labels.reshape(-1)
    sel = flat > 0
    ids = flat[sel] - 1
    s = torch.zeros(n, device=values.device).index_add_(0, ids, values.reshape(-1)[sel].float())
    c = torch.zeros(n, device=values.device).index_add_(0, ids, torch.ones_like(ids, dtype=torch.float32))
    return s / c.clamp(min=1)


def grow_labels(labels: torch.Tensor, steps: int) -> torch.Tensor:
    """Labels (H, W) long grown ``steps`` pixels into the background, one 3 x 3 step at a
    time (a background pixel reached by two objects in the same step takes the larger id)."""
    out = labels
    for _ in range(steps):
        out = torch.where(out == 0, _dilate3(out), out)
    return out


def rim_means(labels: torch.Tensor, values: torch.Tensor, n: int, *, ring: int) -> torch.Tensor:
    """(n,) mean of ``values`` (H, W) over the background pixels within ``ring`` px of each
    object 1..n of ``labels`` (H, W) long: the object's local background (where two rims
    meet, the pixel counts for the larger id, as in :func:`grow_labels`)."""
    grown = grow_labels(labels, ring)
    return label_means(torch.where(labels == 0, grown, torch.zeros_like(grown)), values, n)


def refine_outlines(labels: torch.Tensor, nucleus_map: torch.Tensor, *, alpha: float, reach: int,
                    ring: int) -> torch.Tensor:
    """Redraw each object's outline at its own half-contrast level; (H, W) long -> (H, W) long.

    For object ``i`` with mean nucleus map ``m_i`` inside and ``r_i`` over the background
    pixels within ``ring`` px, its pixels are those of its zone (the object grown by
    ``reach`` px) whose map exceeds ``r_i + alpha * (m_i - r_i)``; holes enclosed by one
    object are filled (CPU, :func:`fill_own_holes`). A pale nucleus keeps its full size and
    a dark one does not swallow its rim, whatever the slide-wide threshold that found them.
    """
    n = int(labels.max())
    if n == 0 or alpha <= 0:
        return labels
    inside = label_means(labels, nucleus_map, n)
    level = rim_means(labels, nucleus_map, n, ring=ring)
    level = level + alpha * (inside - level)
    zone = grow_labels(labels, reach)
    lut = torch.cat([torch.full((1,), float("inf"), device=level.device), level])
    out = torch.where(nucleus_map > lut[zone], zone, torch.zeros_like(zone))
    return torch.from_numpy(fill_own_holes(out.cpu().numpy())).to(out.device)


def fill_own_holes(labels: np.ndarray) -> np.ndarray:
    """(H, W) int labels with every background hole that touches a single object given to it.

    Holes between several objects stay background: whether such a gap is enclosed can depend
    on objects far away (a sheet of touching nuclei), so filling it would make a tile's
    result depend on where the tile ends. A hole of one object lies within that object.
    """
    fg = labels > 0
    holes, n = ndimage.label(fill_holes(fg) & ~fg)
    if n == 0:
        return labels
    rim = ndimage.grey_dilation(holes, size=(3, 3)) * fg  # hole id seen from each object pixel next to it
    ids, owner = rim[rim > 0], labels[rim > 0]
    lo = np.full(n + 1, np.iinfo(np.int64).max)
    hi = np.zeros(n + 1, np.int64)
    np.minimum.at(lo, ids, owner)
    np.maximum.at(hi, ids, owner)
    single = np.where(lo == hi, hi, 0)
    single[0] = 0
    return np.where(holes > 0, single[holes], labels).astype(labels.dtype)
