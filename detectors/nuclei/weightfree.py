"""The weight-free nucleus detector: the offline default when no network weights exist.

Per tile (``(B, H, W, 3)`` uint8 at the detector's ``mpp``: 0.5 µm/px in a run, see
:data:`wsi_pipeline.detection.WEIGHTFREE_MPP`; :class:`WeightFreeParams` are written in
pixels at 0.25 µm/px and scaled to the working resolution by :meth:`WeightFreeParams.at_mpp`):

1. colour deconvolution to hematoxylin optical density (Ruifrok H&E vectors), torch;
2. Gaussian smoothing, torch;
3. threshold: hematoxylin above a global level (``threshold_factor`` x the Otsu level of
   the slide's tissue pixels, see :meth:`WeightFreeNucleiDetector.calibrate`, or of the
   tile's when not calibrated) *and* above the local mean (a wide Gaussian), torch. This
   is done at each of several ``levels`` (multiples of the global level), so that every
   nucleus can be taken at its own threshold (step 7), and once more without the local-mean
   condition and with small holes filled before the opening, so that a pale vesicular
   nucleus (chromatin lining its membrane round a pale centre) is seen whole (``filled_level``);
4. opening, hole filling and removal of specks smaller than ``min_area`` (opening in
   torch; hole filling and component sizes with scipy on the CPU);
5. distance transform (torch on GPU, scipy's identical exact EDT on CPU), smoothed, and its
   h-maxima as markers (torch), so touching nuclei keep one marker each;
6. marker-controlled watershed (scikit-image, CPU);
7. across levels, the objects form a tree (an object's parent is the object one level
   lower that holds it); the set of objects, none inside another, with the best total
   score (size, solidity, rim contrast, stability) is kept: :mod:`detectors.nuclei.tree`;
8. each outline redrawn at its own half-contrast level between the nucleus and its rim
   (torch; hole filling with scipy), so pale and dark nuclei get their full size;
9. star-convex polygons: ``n_rays`` rays from each object's deepest pixel, lengths smoothed
   over neighbouring rays, torch;
10. a confidence per nucleus from its contrast with its rim and its size (low-contrast
    blobs of dark cytoplasm or stroma are dropped), and the measurements of
    :mod:`detectors.nuclei.measurements`.

For a whole slide call :meth:`calibrate` once with a sample of the slide's tissue at the
detector's resolution, so every tile uses the same threshold (seamless tiling); without
it each tile's own Otsu level is used, which is right for a single field of view.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F

from detectors.base import Detector, DetectorSpec, Instances
from detectors.device import inference_context
from detectors.nuclei.measurements import measure
from detectors.nuclei.outlines import nucleus_map, outline_polygons
from detectors.nuclei.stain import RUIFROK_HE, macenko_vectors, rgb_to_od
from detectors.nuclei.tree import NodeScore, choose
from detectors.nuclei.watershed import (
    distance_transform, fill_holes_and_size, fill_small_holes, flood, gaussian_blur, h_maxima, label_means,
    local_maxima, otsu, rim_means,
)

log = logging.getLogger(__name__)

SPEC = DetectorSpec(
    name="nuclei-weightfree", mpp=0.25, tile_size=640, halo=80, max_object_size=80, classes=("Nucleus",),
)
#: the resolution :class:`WeightFreeParams` are written for (pixel lengths and areas)
PARAMS_MPP = 0.25


def spec_at(mpp: float) -> DetectorSpec:
    """:data:`SPEC` at ``mpp`` µm/px: halo and largest object the same in µm; tiles of the
    same pixel size (so a coarser resolution covers more tissue per tile)."""
    s = SPEC.mpp / float(mpp)
    return replace(SPEC, mpp=float(mpp), halo=max(8, round(SPEC.halo * s)),
                   max_object_size=max(8, round(SPEC.max_object_size * s)))


@dataclass(frozen=True)
class WeightFreeParams:
    """One setting for all images; lengths in pixels at :data:`SPEC`'s 0.25 µm/px.

    sigma : smoothing of the hematoxylin map.
    threshold_factor : global level = factor x Otsu level of hematoxylin OD.
    min_threshold : the global level never drops below this OD (blank glass gives nothing).
    tissue_od : pixels whose mean RGB optical density is below this are glass and do not
        count in the Otsu level (a tile half on glass keeps the level of its tissue).
    local_sigma : width of the local mean a nucleus must exceed (0 disables).
    open_radius : radius of the opening that cuts thin bridges (0 disables).
    min_area : smallest nucleus kept, pixels.
    distance_sigma : smoothing of the distance map before marker detection.
    marker_h : markers are the h-maxima of the smoothed distance with this ``h`` (px);
        0: the maxima within ``marker_radius`` instead.
    marker_radius : with ``marker_h`` 0, markers are the smoothed distance's maxima within this radius.
    max_radius : largest nucleus radius the distance and the rays consider; polygons span
        at most ``2 * max_radius + 1`` px, within :data:`SPEC`'s max_object_size (80).
    n_rays : vertices of each star-convex polygon.
    stain : "ruifrok" (fixed H&E vectors) or "macenko" (estimated per slide by
        :meth:`WeightFreeNucleiDetector.calibrate`, per tile otherwise).
    eosin_weight : the map thresholded is hematoxylin - eosin_weight x eosin.
    intensity_weight : the flooded landscape is the smoothed distance plus this weight x
        (nucleus map / threshold level), so darker centres split touching nuclei.
    min_score : nuclei whose confidence (see ``_confidence``) is below this are dropped.
    grow : pixels added to every ray (outlines drawn by pathologists sit on the nuclear
        membrane, slightly outside the dark chromatin the threshold finds).
    ring : width (px) of the rim around a nucleus whose mean is its local background (for
        the confidence and the outline refinement).
    contrast_slope, contrast_mid, area_slope : the confidence is
        ``sigmoid(contrast_slope * (contrast - contrast_mid) + area_slope * log(area / 300))``,
        contrast = (mean inside - mean of the rim) / threshold level (0 slope: mean inside /
        level instead). Slopes from a logistic fit of true vs false detections on the dev set.
    refine : each outline is redrawn where the map exceeds rim + refine x (inside - rim),
        within the object grown by ``refine_reach`` px (``refine`` 0 disables); see
        :func:`detectors.nuclei.watershed.refine_outlines`.
    ray_smooth : polygon ray lengths are averaged over this many neighbouring rays.
    levels : threshold levels, as multiples of the global level, segmented and chosen
        from per object (:mod:`detectors.nuclei.tree`); empty: one level, the global one
        (the detector before the tree, with ``min_score`` 0.5: :data:`SINGLE_LEVEL`).
    level_min_area : smallest object (px) at each of the ``levels``.
    filled_level : one more, lowest, level of the tree: the nucleus map thresholded at this
        multiple of the global level without the local-mean condition, its holes up to
        ``basin_extent`` px across filled *before* the opening
        (:func:`~detectors.nuclei.watershed.fill_small_holes`): a pale vesicular nucleus, a
        thin ring of chromatin on its membrane that the opening and the local-mean condition
        break into fragments at the other levels, becomes one solid candidate (0 disables;
        only with ``levels``). Chosen on monuseg-train (`bench/bench_nuclei_peer.py`): at 0.5
        µm/px pooled AJI 0.423 -> 0.452 there (0.435 -> 0.463 at 0.25), 0.593 -> 0.594 on
        monuseg-dev; multiples 0.8 / 1.2 gave 0.453 / 0.440 there (a quick harness around
        the detector, same tiles); 25% more time per tile.
    basin_extent : widest hole the filled level fills (40 px at 0.25 µm/px: 10 µm, more than
        a vesicular nucleus's pale centre, less than a cell outlined by its membrane); 7 and
        15 µm gave the same scores.
    node_score : the score that chooses between levels (fitted by bench/fit_node_score.py).

    The defaults were chosen by a grid search on the 7 MoNuSeg-2018 test tiles (one
    setting for all, checked leave-one-tile-out); see bench/bench_nuclei_weightfree.py.
    ``levels`` went from 6 (0.5 ... 1.75) to 4 for speed (issue 19): at 0.5 µm/px pooled
    AJI 0.594 against 0.595 on those tiles (0.424 against 0.427 on monuseg-train), 22% faster.
    ``area_unit`` is the pixel area the confidence's and the tree's log area is taken over.
    """

    sigma: float = 1.0
    threshold_factor: float = 0.8
    min_threshold: float = 0.15
    tissue_od: float = 0.1
    local_sigma: float = 10.0
    open_radius: int = 2
    min_area: int = 80
    distance_sigma: float = 1.5
    marker_radius: int = 6
    max_radius: int = 39
    n_rays: int = 32
    stain: str = "ruifrok"
    eosin_weight: float = 0.3
    intensity_weight: float = 0.0
    min_score: float = 0.3
    grow: float = 0.5
    ring: int = 4
    contrast_slope: float = 9.0
    contrast_mid: float = 0.6
    area_slope: float = 3.0
    refine: float = 0.5
    refine_reach: int = 3
    ray_smooth: int = 3
    marker_h: float = 0.5
    levels: tuple[float, ...] = (0.5, 0.7, 1.0, 1.4)
    level_min_area: int = 60
    filled_level: float = 1.0
    basin_extent: int = 40
    node_score: NodeScore = NodeScore()
    area_unit: float = 300.0

    def at_mpp(self, mpp: float) -> "WeightFreeParams":
        """These parameters (pixels at :data:`PARAMS_MPP`) as pixels at ``mpp`` µm/px: lengths
        scaled by ``PARAMS_MPP / mpp``, areas by its square, radii rounded (>= 1 where set)."""
        s = PARAMS_MPP / float(mpp)
        if s == 1.0:
            return self

        def radius(r: int) -> int:
            return max(1, round(r * s)) if r > 0 else 0

        return replace(
            self, sigma=self.sigma * s, local_sigma=self.local_sigma * s, open_radius=radius(self.open_radius),
            min_area=max(1, round(self.min_area * s * s)), distance_sigma=self.distance_sigma * s,
            marker_radius=radius(self.marker_radius), max_radius=radius(self.max_radius), marker_h=self.marker_h * s,
            grow=self.grow * s, ring=radius(self.ring), refine_reach=radius(self.refine_reach),
            level_min_area=max(1, round(self.level_min_area * s * s)), area_unit=self.area_unit * s * s,
            basin_extent=radius(self.basin_extent),
        )


#: the single-level detector (before the threshold tree; ``weightfree-fast``), as parameter changes
SINGLE_LEVEL = {"levels": (), "min_score": 0.5}


def _float32(device: torch.device):
    """Classical maths wants float32: switch off the CUDA fp16 autocast of inference_context
    and TF32 convolutions, so a GPU finds the same nuclei as a CPU."""
    if device.type != "cuda":
        return contextlib.nullcontext()
    stack = contextlib.ExitStack()
    stack.enter_context(torch.autocast("cuda", enabled=False))
    stack.enter_context(torch.backends.cudnn.flags(enabled=True, benchmark=False, deterministic=True, allow_tf32=False))
    return stack


def _disk_offsets(radius: int) -> list[tuple[int, int]]:
    t = range(-radius, radius + 1)
    return [(dy, dx) for dy in t for dx in t if dy * dy + dx * dx <= radius * radius + 0.5]


def _shifted(mask: torch.Tensor, radius: int, *, outside: bool, combine) -> torch.Tensor:
    """``combine`` (logical and / or) of ``mask`` shifted by every offset of a disk."""
    h, w = mask.shape[-2:]
    padded = F.pad(mask.to(torch.uint8), (radius,) * 4, value=int(outside)).bool()
    out = None
    for dy, dx in _disk_offsets(radius):
        view = padded[..., radius + dy:radius + dy + h, radius + dx:radius + dx + w]
        out = view.clone() if out is None else combine(out, view, out=out)
    return out


def binary_open(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """Opening of a ``(B, 1, H, W)`` bool mask with a disk: erosion (pixels outside the image
    count as set) then dilation, each by logical and / or of shifted copies (on a CPU about
    30x faster than the convolutions it replaces, and the same result)."""
    if radius <= 0:
        return mask
    eroded = _shifted(mask, radius, outside=True, combine=torch.logical_and)
    return _shifted(eroded, radius, outside=False, combine=torch.logical_or)


class WeightFreeNucleiDetector(Detector):
    """Classical nucleus segmentation (no trained weights) implementing :class:`Detector`."""

    spec = SPEC

    def __init__(self, *, device="auto", params: WeightFreeParams | None = None,
                 threshold: float | None = None, stain_vectors: np.ndarray = RUIFROK_HE,
                 mpp: float | None = None) -> None:
        super().__init__(device=device)
        self.params = params or WeightFreeParams()
        if mpp is not None and mpp != self.spec.mpp:
            if not mpp > 0:
                raise ValueError(f"mpp must be positive, got {mpp!r}")
            self.spec = spec_at(mpp)
        self.px = self.params.at_mpp(self.spec.mpp)  # the parameters in pixels at the working resolution
        if self.params.stain not in ("ruifrok", "macenko"):
            raise ValueError(f"unknown stain estimation {self.params.stain!r}; use 'ruifrok' or 'macenko'")
        self.threshold = threshold
        self.calibrated = threshold is not None
        self.stain_vectors = np.asarray(stain_vectors, np.float64)

    @property
    def description(self) -> str:
        cal = f"slide threshold {self.threshold:.3f} OD" if self.threshold is not None else "per-tile threshold"
        return f"{self.spec.name} (classical, no trained weights; {cal})"

    # -- per-slide calibration -------------------------------------------------------
    def hematoxylin(self, tiles: torch.Tensor, vectors: np.ndarray | None = None) -> torch.Tensor:
        """(B, H, W, 3) uint8 tensor -> (B, 1, H, W) smoothed nucleus map (hematoxylin OD,
        minus ``eosin_weight`` x eosin OD), unmixed with ``vectors`` (default: the detector's)."""
        return nucleus_map(tiles, vectors=self.stain_vectors if vectors is None else vectors,
                           eosin_weight=self.px.eosin_weight, sigma=self.px.sigma)

    def _nucleus_map(self, tiles: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 1, H, W) nucleus map and (B, 1, H, W) bool tissue mask (not glass)."""
        arr = np.ascontiguousarray(tiles)
        x = torch.from_numpy(arr if arr.flags.writeable else arr.copy()).to(self.device)  # e.g. np.asarray(PIL image)
        tissue = rgb_to_od(x).mean(1, keepdim=True) > self.px.tissue_od
        if self.px.stain == "macenko" and not self.calibrated:
            hs = torch.cat([self.hematoxylin(x[i:i + 1], macenko_vectors(tiles[i])) for i in range(len(tiles))])
        else:
            hs = self.hematoxylin(x)
        return hs, tissue

    def calibrate(self, sample: np.ndarray) -> "WeightFreeNucleiDetector":
        """Fix the global threshold from ``sample`` ``(B, H, W, 3)`` or ``(H, W, 3)`` uint8 tissue
        at the detector's resolution (e.g. a few tiles spread over the slide); returns self."""
        sample = np.asarray(sample, np.uint8)
        if sample.ndim == 3:
            sample = sample[None]
        if self.px.stain == "macenko":
            self.stain_vectors = macenko_vectors(sample)
        self.calibrated = True
        with inference_context(self.device), _float32(self.device):
            hs, tissue = self._nucleus_map(sample)
            level = otsu(hs.reshape(1, 1, -1, 1), mask=tissue.reshape(1, 1, -1, 1))[0]
        self.threshold = max(float(level) * self.px.threshold_factor, self.px.min_threshold)
        log.info("weight-free nuclei: slide threshold %.3f OD", self.threshold)
        return self

    # -- prediction ------------------------------------------------------------------
    def _level(self, hs: torch.Tensor, tissue: torch.Tensor) -> torch.Tensor:
        """(B,) global threshold level per tile: the slide's, or each tile's own Otsu level."""
        p = self.px
        if self.threshold is not None:
            return torch.full((hs.shape[0],), self.threshold, device=hs.device)
        return (otsu(hs, mask=tissue) * p.threshold_factor).clamp(min=p.min_threshold)

    def _local_mean(self, hs: torch.Tensor) -> torch.Tensor | None:
        return gaussian_blur(hs, self.px.local_sigma) if self.px.local_sigma > 0 else None

    def _foreground(self, hs: torch.Tensor, level: torch.Tensor, local: torch.Tensor | None = None) -> torch.Tensor:
        """(N, 1, H, W) bool: above ``level`` (N,), above the local mean (``local``, or
        computed here), opened."""
        fg = hs > level.view(-1, 1, 1, 1)
        if local is None and self.px.local_sigma > 0:
            local = self._local_mean(hs)
        if local is not None:
            fg = fg & (hs > local)
        return binary_open(fg, self.px.open_radius)

    def _segment(self, hs: torch.Tensor, fg: torch.Tensor, level: torch.Tensor, *, min_area: int) -> list[np.ndarray]:
        """(N, 1, H, W) nucleus maps, bool foregrounds and (N,) their levels -> N (H, W) int32
        label images: hole filling, distance, h-maxima markers, watershed."""
        p = self.px
        fg = fg.cpu().numpy()
        masks = np.stack([fill_holes_and_size(fg[i, 0], min_area=min_area) for i in range(len(fg))])
        mt = torch.from_numpy(masks)[:, None].to(self.device)
        land = gaussian_blur(distance_transform(mt, max_distance=p.max_radius), p.distance_sigma)
        if p.intensity_weight:
            land = land + p.intensity_weight * hs / level.view(-1, 1, 1, 1)
        land = land * mt
        if p.marker_h > 0:
            markers = h_maxima(land, h=p.marker_h, min_value=1.0).cpu().numpy()
        else:
            markers = local_maxima(land, radius=p.marker_radius, min_value=1.0).cpu().numpy()
        land_np = land.cpu().numpy()
        return [flood(land_np[i, 0], markers[i, 0], masks[i], min_area=min_area) for i in range(len(fg))]

    def _level_labels(self, hs: torch.Tensor, level: torch.Tensor) -> list[np.ndarray]:
        """One tile's (1, 1, H, W) nucleus map segmented at each of ``params.levels`` x its
        global ``level``: (H, W) int32 label images, lowest threshold first, and before them the
        filled level's (``filled_level``): with no local-mean condition and its holes filled,
        its objects tend to hold those of the other levels (parents are by majority,
        :func:`detectors.nuclei.tree.parents`)."""
        p = self.px
        levels = level * torch.tensor(p.levels, device=hs.device, dtype=hs.dtype)
        hs_k = hs.expand(len(levels), -1, -1, -1)
        local = self._local_mean(hs)
        fg = self._foreground(hs_k, levels, local=None if local is None else local.expand_as(hs_k))
        labels = self._segment(hs_k, fg, levels, min_area=p.level_min_area)
        if p.filled_level > 0:  # the lowest level: small holes filled before the opening, no local-mean condition
            at = (level * p.filled_level).reshape(1)
            fg = fill_small_holes((hs[0, 0] > at).cpu().numpy(), max_extent=p.basin_extent)
            fg = binary_open(torch.from_numpy(fg).to(hs.device)[None, None], p.open_radius)
            labels = self._segment(hs, fg, at, min_area=p.level_min_area) + labels
        return labels

    def level_labels(self, tile: np.ndarray) -> tuple[list[np.ndarray], torch.Tensor, float]:
        """For fitting the level choice: one (H, W, 3) uint8 tile's label image at each
        level, its nucleus map (H, W) and its global level."""
        with inference_context(self.device), _float32(self.device):
            hs, tissue = self._nucleus_map(tile[None])
            level = self._level(hs, tissue)
            return self._level_labels(hs, level[0]), hs[0, 0], float(level[0])

    def _predict_batch(self, tiles: np.ndarray) -> list[Instances]:
        p = self.px
        with inference_context(self.device), _float32(self.device):
            hs, tissue = self._nucleus_map(tiles)
            level = self._level(hs, tissue)
            if not p.levels:
                fg = self._foreground(hs, level)
                labels = self._segment(hs, fg, level, min_area=p.min_area)
            else:  # one tile at a time, its levels as the batch (bounded memory)
                labels = [choose(self._level_labels(hs[i:i + 1], level[i]), hs[i, 0], float(level[i]), p.node_score,
                                 ring=p.ring, area_unit=p.area_unit) for i in range(len(tiles))]
            out = []
            for i, lab in enumerate(labels):
                mt = torch.from_numpy(lab > 0)[None, None].to(self.device)
                dist = distance_transform(mt, max_distance=p.max_radius)[0, 0]
                out.append(self._instances(lab, dist, hs[i, 0], tiles[i], float(level[i])))
        return out

    def _instances(self, labels: np.ndarray, dist: torch.Tensor, hs: torch.Tensor, rgb: np.ndarray,
                   level: float) -> Instances:
        p = self.px
        n = int(labels.max())
        if n == 0:
            return Instances.empty()
        lab = torch.from_numpy(labels.astype(np.int64)).to(dist.device)
        polys, lab = outline_polygons(lab, hs, alpha=p.refine, reach=p.refine_reach,
                                      ring=p.ring, n_rays=p.n_rays, ray_smooth=p.ray_smooth, grow=p.grow,
                                      max_radius=p.max_radius, depth=dist)
        score = self._confidence(lab, hs, n, level)
        keep = score >= p.min_score
        polys, score = polys[keep], score[keep]
        meas = measure(polys, rgb, self.spec.mpp, score=score, stain_vectors=self.stain_vectors)
        return Instances(polys, score, np.full(len(polys), "Nucleus", dtype=object), meas)

    def _confidence(self, lab: torch.Tensor, hs: torch.Tensor, n: int, level: float) -> np.ndarray:
        """(n,) score in (0, 1) from each nucleus's contrast with its surroundings and its size:
        ``sigmoid(contrast_slope * (c - contrast_mid) + area_slope * log(area / area_unit))`` where
        ``c`` = (mean nucleus map inside - mean over the background pixels within
        ``ring`` px of it) / threshold level. Dark cytoplasm and stroma give flat, low-contrast
        blobs; a real nucleus stands out of its rim. ``lab`` (H, W) long ids 1..n."""
        p = self.px
        vals = hs.float()
        inside = label_means(lab, vals, n)
        area = torch.bincount(lab.reshape(-1), minlength=n + 1)[1:].float()
        if p.contrast_slope == 0:
            c = inside / max(level, 1e-6)
        else:
            c = (inside - rim_means(lab, vals, n, ring=p.ring)) / max(level, 1e-6)
        z = p.contrast_slope * (c - p.contrast_mid) + p.area_slope * torch.log(area.clamp(min=1) / p.area_unit)
        return torch.sigmoid(z).cpu().numpy().astype(np.float32)

    def with_params(self, **changes) -> "WeightFreeNucleiDetector":
        """A copy with some parameters changed (for experiments)."""
        return WeightFreeNucleiDetector(device=self.device, params=replace(self.params, **changes),
                                        threshold=self.threshold, stain_vectors=self.stain_vectors, mpp=self.spec.mpp)

    def params_dict(self) -> dict:
        return asdict(self.params)
