"""Tissue and ink masks from low-resolution RGB, the steps shared by the whole-slide
function and the tile detector.

Pipeline (torch on the chosen device, except connected components on CPU):

1. features: glass colour, optical density, white-balanced HSV, tissue score (:mod:`.features`);
2. threshold: Otsu on the smoothed score, clamped (:mod:`.threshold`), learned from the
   whole image unless given;
3. ink candidates: strongly coloured non-H&E pixels (:mod:`.ink`); the rest of the
   foreground is H&E tissue, closed and cleaned of specks;
4. marker pen is rejected: foreground components that are mostly ink-coloured (strokes on
   the glass) are dropped, green/cyan hues never count as H&E, and candidate ink pixels
   count only within ``near_tissue_um`` of H&E tissue and within ``ink_edge_um`` of the
   glass (ink is painted on the edges);
5. tissue = H&E tissue + ink, closed, small holes filled, small objects removed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from detectors.tissue import components, morphology
from detectors.tissue.features import glass_colour, hsv, optical_density, tissue_score
from detectors.tissue.ink import classify_ink, never_he
from detectors.tissue.threshold import tissue_threshold


@dataclass(frozen=True)
class TissueParams:
    """Tuning, in physical units so it holds at any working resolution."""

    smooth_um: float = 12.0  # box radius for score smoothing
    floor: float = 0.06  # lowest tissue threshold (glass noise)
    ceiling: float = 0.16  # highest tissue threshold (keeps pale tissue)
    close_um: float = 40.0  # closing radius: joins porous / stippled tissue
    min_area_mm2: float = 0.01  # smaller tissue components are specks
    max_hole_mm2: float = 0.02  # holes smaller than this are filled
    near_tissue_um: float = 250.0  # ink must lie this close to H&E tissue ...
    ink_edge_um: float = 300.0  # ... and this close to the glass
    min_ink_area_mm2: float = 0.002  # smaller ink pieces are noise
    pen_fraction: float = 0.5  # components at least this ink-coloured are marker pen

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TissueParams":
        return cls(**d)


@dataclass
class Masks:
    """Result for one image: ``tissue`` (H, W) bool, ``ink`` (H, W) uint8 class ids
    (0 = none, see :data:`detectors.tissue.ink.INK_COLOURS`), the threshold used and the
    fraction of tissue pixels above threshold before morphology (a confidence)."""

    tissue: np.ndarray
    ink: np.ndarray
    threshold: float
    support: float


def _px(um: float, mpp: float) -> int:
    return max(0, int(round(um / mpp)))


def _area_px(mm2: float, mpp: float) -> float:
    return mm2 * 1e6 / (mpp * mpp)


def segment(
    rgb: torch.Tensor,
    *,
    mpp: float,
    params: TissueParams = TissueParams(),
    threshold: float | None = None,
    glass: torch.Tensor | None = None,
) -> list[Masks]:
    """Segment a batch ``rgb`` ``(B, 3, H, W)`` float in [0, 255] at ``mpp`` µm/px.

    ``threshold`` and ``glass`` ((3,) or (B, 3)) are learned per image when ``None``; pass
    the whole slide's to segment tiles consistently.
    """
    b = rgb.shape[0]
    if glass is None:
        glass = glass_colour(rgb)
    glass = glass.to(rgb.device, torch.float32).reshape(-1, 3).expand(b, 3)
    od = optical_density(rgb, glass)
    hue, sat, val = hsv(rgb, glass)
    score = morphology.box_mean(tissue_score(od, sat), max(1, _px(params.smooth_um, mpp)))
    ink_class = classify_ink(hue, sat, val)
    odd = never_he(hue, sat)
    out = []
    for i in range(b):
        t = threshold if threshold is not None else tissue_threshold(
            score[i], floor=params.floor, ceiling=params.ceiling)
        out.append(_one(score[i] >= t, ink_class[i], odd[i], mpp=mpp, params=params, threshold=t))
    return out


def _one(fg: torch.Tensor, ink_class: torch.Tensor, odd: torch.Tensor, *, mpp: float, params: TissueParams,
         threshold: float) -> Masks:
    """Morphology and pen/ink logic for one ``(H, W)`` foreground (``odd``: never-H&E hues)."""
    cand = (ink_class > 0) & fg
    fg_np = _drop_pen_components(fg.cpu().numpy(), (cand | odd).cpu().numpy(), params.pen_fraction)
    fg = torch.from_numpy(fg_np).to(cand.device)
    cand = cand & fg
    he = morphology.close((fg & ~cand & ~odd)[None], _px(params.close_um, mpp))[0]
    he_np = components.remove_small_objects(he.cpu().numpy(), _area_px(params.min_area_mm2, mpp))
    he = torch.from_numpy(he_np).to(fg.device)
    near = morphology.dilate(he[None], _px(params.near_tissue_um, mpp))[0]
    ink = cand & near
    tissue = morphology.close((he | ink)[None], _px(params.close_um, mpp))[0].cpu().numpy()
    tissue = components.fill_small_holes(tissue, _area_px(params.max_hole_mm2, mpp))
    tissue = components.remove_small_objects(tissue, _area_px(params.min_area_mm2, mpp))
    tissue_t = torch.from_numpy(tissue).to(fg.device)
    edge = morphology.dilate((~tissue_t)[None], _px(params.ink_edge_um, mpp))[0]
    ink_map = torch.where(ink & tissue_t & edge, ink_class, torch.zeros_like(ink_class)).cpu().numpy()
    ink_map = _clean_ink(ink_map, _area_px(params.min_ink_area_mm2, mpp))
    support = float(fg.cpu().numpy()[tissue].mean()) if tissue.any() else 0.0
    return Masks(tissue=tissue, ink=ink_map, threshold=float(threshold), support=support)


def _drop_pen_components(fg: np.ndarray, coloured: np.ndarray, fraction: float) -> np.ndarray:
    """Remove foreground components made mostly (>= ``fraction``) of ink-coloured pixels:
    marker strokes on the glass. Inked tissue keeps its ink on a thin edge band only."""
    lab, n = components.label(fg)
    if n == 0:
        return fg
    total = np.bincount(lab.ravel(), minlength=n + 1)
    col = np.bincount(lab.ravel(), weights=coloured.ravel(), minlength=n + 1)
    pen = col >= fraction * np.maximum(total, 1)
    pen[0] = False
    return fg & ~pen[lab]


def _clean_ink(ink_map: np.ndarray, min_pixels: float, *, min_share: float = 0.25) -> np.ndarray:
    """Tidy per-pixel ink colours: within each connected inked stretch, a colour covering less
    than ``min_share`` of it and less than ``2 * min_pixels`` takes the stretch's main colour
    (one stretch, one colour, unless two inks really meet); then pieces smaller than
    ``min_pixels`` are dropped."""
    lab, n = components.label(ink_map > 0)
    if n == 0:
        return np.zeros_like(ink_map)
    k = int(ink_map.max()) + 1
    counts = np.bincount(lab.ravel() * k + ink_map.ravel(), minlength=(n + 1) * k).reshape(n + 1, k)
    counts[:, 0] = 0
    share = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    main = counts.argmax(1).astype(ink_map.dtype)
    minor = (share[lab, ink_map] < min_share) & (counts[lab, ink_map] < 2 * min_pixels)
    tidy = np.where(minor, main[lab], ink_map)
    tidy[lab == 0] = 0
    out = np.zeros_like(ink_map)
    for c in np.unique(tidy):
        if c:
            out[components.remove_small_objects(tidy == c, min_pixels)] = c
    return out


def working_mpp(slide_mpp: float, size: tuple[int, int], *, mpp: float, min_side: int = 1024) -> float:
    """Resolution to segment at: ``mpp``, or finer for small slides so that the long side
    has at least ``min_side`` pixels (never finer than the slide itself)."""
    long_um = max(size) * slide_mpp
    return float(max(slide_mpp, min(mpp, long_um / min_side)))


