"""Nucleus outlines redrawn from the image, then turned into star-convex polygons.

Shared by the two nucleus detectors:

* the weight-free detector finds objects by thresholding and watershed and then redraws
  each outline (:func:`outline_polygons`);
* a StarDist model predicts 32-ray polygons on a coarse grid (2 px at its 0.5 µm/px);
  :func:`refine_instances` redraws them on the hematoxylin map at the tile's own pixels.
  A trained model's folder says whether to (``config.json`` key
  ``"wsi_pipeline"."outline_refinement"``, chosen on validation images by training).

Redrawing: for object ``i`` with mean nucleus map ``m_i`` inside and ``r_i`` on a rim
``ring`` wide around it, its new pixels are those within ``reach`` of it where the map
exceeds ``r_i + alpha (m_i - r_i)`` (:func:`detectors.nuclei.watershed.refine_outlines`).
:class:`OutlineRefinement` holds those lengths in µm, so the same setting serves any
resolution; the defaults are the weight-free detector's (its pixel values at 0.25 µm/px).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np
import shapely
import torch

from detectors.nuclei.polygons import interior_points, ray_distances, star_polygons
from detectors.nuclei.stain import RUIFROK_HE, rgb_to_od, unmix
from detectors.nuclei.watershed import distance_transform, gaussian_blur, refine_outlines


def nucleus_map(tiles: torch.Tensor, *, vectors: np.ndarray = RUIFROK_HE, eosin_weight: float = 0.3,
                sigma: float = 1.0) -> torch.Tensor:
    """(B, H, W, 3) uint8 tensor -> (B, 1, H, W) float32: hematoxylin OD minus ``eosin_weight``
    x eosin OD (unmixed with ``vectors``), Gaussian-smoothed by ``sigma`` px."""
    he = unmix(rgb_to_od(tiles), vectors)
    h = he[:, :1] - eosin_weight * he[:, 1:2] if eosin_weight else he[:, :1]
    return gaussian_blur(h.float(), sigma)


@dataclass(frozen=True)
class OutlineRefinement:
    """Outline redrawing and polygon settings, lengths in µm.

    alpha : level between rim (0) and nucleus mean (1) where the outline is drawn.
    reach_um : how far an outline may move outwards.
    ring_um : width of the rim whose mean is the object's background.
    sigma_um : smoothing of the nucleus map.
    grow_um : added to every ray of the polygon (pathologists draw on the membrane).
    ray_smooth : ray lengths averaged over this many neighbours (1: none).
    n_rays : polygon vertices.
    eosin_weight : the map is hematoxylin - eosin_weight x eosin.
    """

    alpha: float = 0.5
    reach_um: float = 0.75
    ring_um: float = 1.0
    sigma_um: float = 0.25
    grow_um: float = 0.125
    ray_smooth: int = 3
    n_rays: int = 32
    eosin_weight: float = 0.3

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "OutlineRefinement":
        """Known keys of ``d`` (others are ignored, so newer folders still load)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def pixels(self, mpp: float) -> dict:
        """The lengths in pixels at ``mpp``: reach and ring rounded to whole pixels (>= 1)."""
        return dict(reach=max(1, round(self.reach_um / mpp)), ring=max(1, round(self.ring_um / mpp)),
                    sigma=self.sigma_um / mpp, grow=self.grow_um / mpp)


def smooth_rays(rays: torch.Tensor, window: int) -> torch.Tensor:
    """(n, R) ray lengths averaged over ``window`` neighbouring rays (circularly; 1 = as is)."""
    if window <= 1 or rays.shape[0] == 0:
        return rays
    r = window // 2
    padded = torch.cat([rays[:, -r:], rays, rays[:, :r]], dim=1)
    return padded.unfold(1, 2 * r + 1, 1).mean(-1)


def outline_polygons(labels: torch.Tensor, nmap: torch.Tensor, *, alpha: float, reach: int, ring: int,
                     n_rays: int, ray_smooth: int, grow: float, max_radius: float,
                     depth: torch.Tensor | None = None) -> tuple[np.ndarray, torch.Tensor]:
    """Redraw the outlines of ``labels`` on ``nmap`` and make one star polygon per object.

    labels : (H, W) long, ids 1..n; nmap : (H, W) float nucleus map; depth : (H, W) float
    whose maximum inside each object is its polygon centre (default: the distance to the
    background of the redrawn objects). Returns (n,) shapely polygons in (x, y) pixels,
    polygon ``i`` for id ``i + 1`` (an object the redrawing emptied keeps a degenerate
    polygon: check ``area > 0``), and the redrawn labels.
    """
    n = int(labels.max())
    lab = refine_outlines(labels, nmap, alpha=alpha, reach=reach, ring=ring) if alpha > 0 else labels
    if depth is None:
        depth = distance_transform((lab > 0)[None, None], max_distance=int(max_radius))[0, 0]
    centres = interior_points(lab, depth, n)
    rays = smooth_rays(ray_distances(lab, centres, n_rays=n_rays, max_radius=float(max_radius)), ray_smooth) + grow
    h, w = labels.shape
    return star_polygons(centres.cpu().numpy(), rays.float().cpu().numpy(), width=w, height=h), lab


def refine_instances(labels: np.ndarray, rgb: np.ndarray, *, mpp: float, refinement: OutlineRefinement,
                     max_radius: float, vectors: np.ndarray = RUIFROK_HE,
                     device: torch.device | str = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """Objects of ``labels`` (H, W) int (ids 1..n, 0 background) redrawn on the tile ``rgb``
    (H, W, 3) uint8 at ``mpp`` µm/px. Returns (polygons (m,), ids (m,) of the objects kept):
    objects the redrawing leaves empty are dropped."""
    n = int(labels.max())
    if n == 0:
        return np.empty(0, object), np.empty(0, int)
    px = refinement.pixels(mpp)
    t = torch.from_numpy(np.ascontiguousarray(rgb))[None].to(device)
    nmap = nucleus_map(t, vectors=vectors, eosin_weight=refinement.eosin_weight, sigma=px["sigma"])[0, 0]
    lab = torch.from_numpy(labels.astype(np.int64)).to(device)
    polys, lab = outline_polygons(lab, nmap, alpha=refinement.alpha, reach=px["reach"], ring=px["ring"],
                                  n_rays=refinement.n_rays, ray_smooth=refinement.ray_smooth, grow=px["grow"],
                                  max_radius=max_radius)
    present = torch.bincount(lab.reshape(-1), minlength=n + 1)[1:].cpu().numpy() > 0
    ids = np.nonzero(present & (shapely.area(polys) > 0))[0] + 1
    return polys[ids - 1], ids
