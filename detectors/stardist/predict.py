"""Prediction with the torch StarDist network; post-processing is stardist's own.

The steps follow ``StarDist2D.predict_instances`` (sparse path): reflect-pad the image at
its end to a multiple of the network's ``div_by``, run the net, keep grid cells with
``prob > prob_thresh`` away from a ``b``-cell border, clamp ray lengths to >= 1e-3, drop
candidates in the padding, then :func:`stardist.nms.non_maximum_suppression_sparse` and
:func:`stardist.geometry.polygons_to_label`.

stardist's NMS parallelises every candidate's neighbour loop with OpenMP (its own libgomp,
next to torch's). On a loaded machine those many tiny parallel regions stall on their
barriers: the same 50k-candidate NMS took 0.7 s or 37 s from one run to the next. It runs
here with one OpenMP thread (always ~1 s for that input): :func:`serial_openmp`.

For large images :func:`predict_prob_dist_tiled` runs the net on tiles with enough
context that the stitched maps equal an untiled run (tile windows are aligned to
``div_by`` and never extend past the image, so the zero padding of every convolution
falls where it would without tiling).
"""

from __future__ import annotations

import contextlib
import functools

import numpy as np
import torch
from stardist.geometry import dist_to_coord, polygons_to_label
from stardist.nms import non_maximum_suppression_sparse

from detectors.stardist.config import Thresholds
from detectors.stardist.unet import StarDistNet


@functools.cache
def _openmp_controller():
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def serial_openmp() -> contextlib.AbstractContextManager:
    """Context in which OpenMP libraries (stardist's included) run one thread in this thread."""
    return _openmp_controller().limit(limits=1, user_api="openmp")


def pad_to_multiple(image: np.ndarray, div_by: tuple[int, int]) -> np.ndarray:
    """(H, W, C) -> (H', W', C) reflect-padded at the bottom/right to multiples of ``div_by``."""
    h, w = image.shape[:2]
    ph = (-h) % div_by[0]
    pw = (-w) % div_by[1]
    if ph == 0 and pw == 0:
        return image
    return np.pad(image, ((0, ph), (0, pw)) + ((0, 0),) * (image.ndim - 2), mode="reflect")


def _run_net(net: StarDistNet, x: np.ndarray, device: torch.device, *,
             tta: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(H, W, C) float32 (multiple of div_by) -> prob (h, w), dist (h, w, R) on the grid
    (``tta``: the mean over the 8 mirror images, :func:`predict_dihedral`)."""
    t = torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))[None].to(device)
    with torch.inference_mode():
        prob, dist = forward(net, t, tta=tta)
    return prob[0, 0].float().cpu().numpy(), dist[0].float().permute(1, 2, 0).cpu().numpy()


def predict_prob_dist(net: StarDistNet, image: np.ndarray, *, device: torch.device | str = "cpu",
                      tta: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Network outputs for one normalised image.

    image : (H, W, C) float32, already normalised.
    tta : average over the image's 8 mirror images and rotations (:func:`predict_dihedral`).
    Returns prob (ceil(H'/gy), ...) and dist (..., n_rays) for the *padded* image
    (H' = H rounded up to ``div_by``), as stardist's ``predict`` before cropping.
    """
    return _run_net(net, pad_to_multiple(image, net.config.div_by), torch.device(device), tta=tta)


def predict_prob_dist_tiled(
    net: StarDistNet,
    image: np.ndarray,
    *,
    tile: int = 1024,
    context: int = 128,
    device: torch.device | str = "cpu",
) -> tuple[np.ndarray, np.ndarray]:
    """Same result as :func:`predict_prob_dist`, computed in tiles of ``tile`` pixels.

    ``context`` pixels on each side (rounded up to ``div_by``) must cover the receptive
    field (about 100 px for the 2D_versatile_he architecture).
    """
    device = torch.device(device)
    dy, dx = net.config.div_by
    gy, gx = net.config.grid
    x = pad_to_multiple(image, (dy, dx))
    H, W = x.shape[:2]
    ty, tx = max(dy, tile // dy * dy), max(dx, tile // dx * dx)
    cy, cx = -(-context // dy) * dy, -(-context // dx) * dx
    prob = np.empty((H // gy, W // gx), np.float32)
    dist = np.empty((H // gy, W // gx, net.config.n_rays), np.float32)
    for y0 in range(0, H, ty):
        for x0 in range(0, W, tx):
            y1, x1 = min(H, y0 + ty), min(W, x0 + tx)
            wy0, wx0 = max(0, y0 - cy), max(0, x0 - cx)
            wy1, wx1 = min(H, y1 + cy), min(W, x1 + cx)
            p, d = _run_net(net, x[wy0:wy1, wx0:wx1], device)
            sy, sx = slice((y0 - wy0) // gy, (y1 - wy0) // gy), slice((x0 - wx0) // gx, (x1 - wx0) // gx)
            prob[y0 // gy:y1 // gy, x0 // gx:x1 // gx] = p[sy, sx]
            dist[y0 // gy:y1 // gy, x0 // gx:x1 // gx] = d[sy, sx]
    return prob, dist


def candidates(
    prob: np.ndarray,
    dist: np.ndarray,
    *,
    grid: tuple[int, int],
    shape: tuple[int, int],
    prob_thresh: float,
    b: int = 2,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sparse candidates as stardist's ``predict_sparse``.

    prob (h, w), dist (h, w, R) on the grid of the padded image; ``shape`` (H, W) is the
    unpadded image. Returns prob (N,), dist (N, R) clamped to >= 1e-3, points (N, 2) (y, x)
    in image pixels.
    """
    keep = prob > prob_thresh
    if b:
        border = np.zeros_like(keep)
        border[b:-b, b:-b] = True
        keep &= border
    points = np.argwhere(keep) * np.asarray(grid)
    probs = prob[keep]
    dists = np.maximum(np.float32(1e-3), dist[keep])
    inside = np.all(points < np.asarray(shape), axis=1)
    return probs[inside], dists[inside], points[inside]


def instances_from_prob_dist(
    prob: np.ndarray,
    dist: np.ndarray,
    *,
    grid: tuple[int, int],
    shape: tuple[int, int],
    thresholds: Thresholds,
    return_labels: bool = True,
) -> tuple[np.ndarray | None, dict]:
    """Candidates -> stardist NMS -> (labels (H, W) int32 or None, details).

    details: ``coord`` (N, 2, R) polygon vertices (y, x), ``points`` (N, 2), ``prob`` (N,),
    the same keys as stardist's ``predict_instances``.
    """
    probs, dists, points = candidates(prob, dist, grid=grid, shape=shape, prob_thresh=thresholds.prob)
    with serial_openmp():
        points, probs, dists, _ = non_maximum_suppression_sparse(dists, probs, points, nms_thresh=thresholds.nms)
    labels = polygons_to_label(dists, points, prob=probs, shape=shape) if return_labels else None
    coord = dist_to_coord(dists, points)
    return labels, {"coord": coord, "points": points, "prob": probs}


def instances_on_device(
    prob: torch.Tensor,
    dist: torch.Tensor,
    *,
    grid: tuple[int, int],
    shape: tuple[int, int],
    thresholds: Thresholds,
    return_labels: bool = True,
    b: int = 2,
) -> tuple[np.ndarray | None, dict]:
    """:func:`instances_from_prob_dist` with the candidates and the NMS on ``prob``'s device
    (:func:`detectors.stardist.nms.nms_sparse`): prob (h, w) and dist (R, h, w) tensors
    (the network's output for one image); only the kept polygons leave the device."""
    from detectors.stardist.nms import nms_sparse

    keep = prob > thresholds.prob
    if b:
        border = torch.zeros_like(keep)
        border[b:-b, b:-b] = True
        keep &= border
    cells = torch.nonzero(keep)
    points = cells * torch.as_tensor(grid, device=cells.device)
    inside = (points < torch.as_tensor(shape, device=cells.device)).all(1)
    cells, points = cells[inside], points[inside]
    probs = prob[cells[:, 0], cells[:, 1]].float()
    dists = dist[:, cells[:, 0], cells[:, 1]].T.float().clamp_min(1e-3)
    kept = nms_sparse(dists, probs, points, nms_thresh=thresholds.nms)
    points = points[kept].cpu().numpy()
    probs, dists = probs[kept].cpu().numpy(), dists[kept].cpu().numpy()
    labels = polygons_to_label(dists, points, prob=probs, shape=shape) if return_labels else None
    return labels, {"coord": dist_to_coord(dists, points), "points": points, "prob": probs}


def predict_instances(
    net: StarDistNet,
    image: np.ndarray,
    *,
    thresholds: Thresholds,
    device: torch.device | str = "cpu",
    tile: int | None = None,
    return_labels: bool = True,
) -> tuple[np.ndarray | None, dict]:
    """stardist's ``predict_instances`` for an already normalised (H, W, C) float32 image.

    ``tile`` (pixels) runs the network in tiles (same result, bounded memory).
    """
    if tile is None:
        prob, dist = predict_prob_dist(net, image, device=device)
    else:
        prob, dist = predict_prob_dist_tiled(net, image, tile=tile, device=device)
    return instances_from_prob_dist(prob, dist, grid=net.config.grid, shape=image.shape[:2],
                                    thresholds=thresholds, return_labels=return_labels)


# ------------------------------------------------------------------ test-time augmentation
#
# stardist's ray k points at angle 2πk/n with x = cos and y = sin, so a mirror image moves
# the rays among themselves: flipping x sends ray k to n/2 - k, flipping y to -k, swapping
# x and y to n/4 - k (each its own inverse).


def mirror_rays(n_rays: int, kind: str) -> np.ndarray:
    """Channel order of ``dist`` for a mirrored image (``kind`` "x", "y" or "transpose"):
    new[..., i] = old[..., perm[i]]."""
    k = np.arange(n_rays)
    shift = {"x": n_rays // 2, "y": 0, "transpose": n_rays // 4}[kind]
    if n_rays % (4 if kind == "transpose" else 2):
        raise ValueError(f"mirroring rays ({kind}) needs n_rays divisible by {4 if kind == 'transpose' else 2}")
    return (shift - k) % n_rays


def _mirror(t: torch.Tensor, dim: int, step: int) -> torch.Tensor:
    """Flip along ``dim`` so that grid points (every ``step`` pixels from 0) stay grid points:
    index ``c`` of the result is index ``W - c`` of ``t`` (a plain flip for step 1; the first
    index, without a partner, wraps). The same call on a map sampled on that grid (index
    ``i`` of the result is cell ``W/step - i``) undoes it."""
    out = torch.flip(t, (dim,))
    return torch.roll(out, 1, dim) if step > 1 else out


def predict_dihedral(net, x: torch.Tensor, *, n_rays: int, grid: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """The mean of ``net``'s (prob (B, 1, h, w), dist (B, R, h, w)) over the 8 mirror images
    and rotations of ``x`` (B, C, H, W) (sides multiples of the net's ``div_by``), each
    mapped back to ``x``'s frame with its rays renumbered (:func:`mirror_rays`).

    Flips keep grid points on grid points (the mirror of pixel ``c`` is ``W - c``), so every
    view's cells lie on the same pixels. Needs a square grid and ``n_rays`` divisible by 4.
    """
    gy, gx = grid
    if gy != gx:
        raise ValueError(f"test-time augmentation needs a square grid, got {grid}")
    perms = {k: torch.as_tensor(mirror_rays(n_rays, k), device=x.device) for k in ("x", "y", "transpose")}
    prob_sum = dist_sum = None
    for transpose in (False, True):
        for fy in (False, True):
            for fx in (False, True):
                v = x.transpose(2, 3) if transpose else x
                v = _mirror(v, 2, gy) if fy else v
                v = _mirror(v, 3, gx) if fx else v
                prob, dist = net(v)
                prob, dist = prob.float(), dist.float()
                for on, dim, kind in ((fx, 3, "x"), (fy, 2, "y")):
                    if on:
                        prob, dist = _mirror(prob, dim, gx), _mirror(dist, dim, gx)[:, perms[kind]]
                if transpose:
                    prob, dist = prob.transpose(2, 3), dist.transpose(2, 3)[:, perms["transpose"]]
                prob_sum = prob if prob_sum is None else prob_sum + prob
                dist_sum = dist if dist_sum is None else dist_sum + dist
    return prob_sum / 8, dist_sum / 8


def forward(net: StarDistNet, x: torch.Tensor, *, tta: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """``net(x)`` for (B, C, H, W) ``x``, or with ``tta`` its mean over the 8 mirror images
    (:func:`predict_dihedral`)."""
    if tta:
        return predict_dihedral(net, x, n_rays=net.config.n_rays, grid=net.config.grid)
    return net(x)
