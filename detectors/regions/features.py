"""Per-grid-pixel features for the region map, computed in torch.

The slide is read at ``grid_um / SUB`` µm/px (``SUB`` = 4 fine pixels per label pixel on
each side), unmixed into hematoxylin and eosin optical density (Ruifrok), and pooled into
the label grid. Nuclei (level-0 centroids, measurements, optional cell-type labels) are
binned on the same grid. Everything is then smoothed at a few scales (multi-scale context).

Stain features (per label pixel, over its SUB x SUB fine pixels):

``od``        mean optical density (sum of RGB OD)
``h`` / ``e`` mean hematoxylin / eosin OD
``h_cyto``    mean hematoxylin OD of non-nuclear tissue pixels (cytoplasm / matrix tint)
``e_cyto``    mean eosin OD of the same pixels
``nuclear``   fraction of fine pixels that are nuclear (hematoxylin OD > ``NUCLEAR_H``)
``h_std``     standard deviation of hematoxylin OD (texture)
``grad``      mean absolute difference between neighbouring fine pixels' OD (texture)

Nucleus features (densities in nuclei per mm², smoothed):

``n_all``                   all nuclei
``n_lym`` ``n_epi`` ``n_str`` ``n_tum``   per cell type: morphology-based weights
                            (:func:`cell_type_weights`), or with ``cell_labels`` hard
                            labels where ``nuclei.label`` holds Lymphocyte/Epithelial/
                            Stromal/Tumor (a trained cell model's classes)
``area``                    mean nuclear area (µm²)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from detectors.nuclei.stain import rgb_to_od, unmix

SUB = 4
NUCLEAR_H = 0.45
TISSUE_OD = 0.12
CELL_TYPES = ("Lymphocyte", "Epithelial", "Stromal", "Tumor")
STAIN_NAMES = ("od", "h", "e", "h_cyto", "e_cyto", "nuclear", "h_std", "grad")
NUCLEUS_NAMES = ("n_all", "n_lym", "n_epi", "n_str", "n_tum", "area")


@dataclass(frozen=True)
class Grid:
    """The label grid: ``shape`` (H, W), ``downsample`` level-0 px per label px, ``um_per_px``."""

    shape: tuple[int, int]
    downsample: float
    um_per_px: float

    @classmethod
    def for_slide(cls, dimensions: tuple[int, int], slide_mpp: float, grid_um: float) -> "Grid":
        if grid_um <= 0:
            raise ValueError(f"grid_um must be positive, got {grid_um}")
        ds = grid_um / slide_mpp
        w0, h0 = dimensions
        return cls((max(1, math.ceil(h0 / ds)), max(1, math.ceil(w0 / ds))), ds, float(grid_um))


def read_fine(slide, grid: Grid) -> np.ndarray:
    """(H*SUB, W*SUB, 3) uint8: the slide at ``grid.um_per_px / SUB`` µm/px, padded with white."""
    from detectors.tissue.detector import read_thumbnail

    img = read_thumbnail(slide, grid.um_per_px / SUB)
    h, w = grid.shape[0] * SUB, grid.shape[1] * SUB
    out = np.full((h, w, 3), 255, np.uint8)
    hh, ww = min(h, img.shape[0]), min(w, img.shape[1])
    out[:hh, :ww] = img[:hh, :ww]
    return out


def fine_tint(rgb: torch.Tensor, *, sigma: float = 1.5) -> torch.Tensor:
    """(Hs, Ws, 3) uint8 -> (Hs, Ws) float16: hematoxylin OD of the non-nuclear tissue
    around each fine pixel (Gaussian-weighted, ``sigma`` fine px; nuclei take their
    surroundings' value, glass 0). Epithelial cytoplasm is bluer than collagen or keratin."""
    od = rgb_to_od(rgb[None])
    h = unmix(od)[:, 0:1].clamp(min=0)
    cyto = ((h <= NUCLEAR_H) & (od.sum(1, keepdim=True) > TISSUE_OD)).float()
    both = gaussian(torch.cat([h * cyto, cyto], 1)[0], sigma)
    return (both[0] / both[1].clamp(min=1e-2)).half()


def stain_features(rgb: torch.Tensor) -> torch.Tensor:
    """(Hs, Ws, 3) uint8 on the device -> (len(STAIN_NAMES), Hs/SUB, Ws/SUB) float32."""
    od = rgb_to_od(rgb[None])  # (1, 3, Hs, Ws)
    hed = unmix(od)
    h, e = hed[:, 0:1].clamp(min=0), hed[:, 1:2].clamp(min=0)
    odsum = od.sum(1, keepdim=True)
    nuc = (h > NUCLEAR_H).float()
    cyto = ((h <= NUCLEAR_H) & (odsum > TISSUE_OD)).float()

    def pool(x):
        return F.avg_pool2d(x, SUB)

    cw = pool(cyto).clamp(min=1e-3)
    h_mean = pool(h)
    h_std = (pool(h * h) - h_mean**2).clamp(min=0).sqrt()
    gx = (odsum[..., :, 1:] - odsum[..., :, :-1]).abs()
    gy = (odsum[..., 1:, :] - odsum[..., :-1, :]).abs()
    grad = pool(F.pad(gx, (0, 1)) + F.pad(gy, (0, 0, 0, 1))) * 0.5
    feats = [pool(odsum), h_mean, pool(e), pool(h * cyto) / cw, pool(e * cyto) / cw, pool(nuc), h_std, grad]
    return torch.cat(feats, 1)[0]


#: fine rows of context above and below a strip of :func:`fine_features` (a multiple of SUB,
#: more than the tint's Gaussian radius and the gradient's one row)
STRIP_HALO = 8


def fine_features(fine: np.ndarray, device: torch.device | str = "cpu", *,
                  strip_px: int = 1 << 20) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`stain_features` and :func:`fine_tint` of the whole fine image ``fine``
    (H*SUB, W*SUB, 3) uint8, computed in horizontal strips of about ``strip_px`` fine pixels
    with :data:`STRIP_HALO` rows of context: the float intermediates of a 1 cm² excision's
    whole image took ~10 GB at once; a strip's take ~0.2 GB. Returns ((C, H, W) float32,
    (H*SUB, W*SUB) float16), the same as the whole image at once (the halo covers every
    filter's reach; the edges of the image are padded as before)."""
    hs, ws = fine.shape[:2]
    h = hs // SUB
    rows = max(1, strip_px // max(1, ws * SUB))  # grid rows per strip
    stain = torch.empty((len(STAIN_NAMES), h, ws // SUB), dtype=torch.float32, device=device)
    tint = torch.empty((hs, ws), dtype=torch.float16, device=device)
    for g0 in range(0, h, rows):
        g1 = min(h, g0 + rows)
        a, b = max(0, g0 * SUB - STRIP_HALO), min(hs, g1 * SUB + STRIP_HALO)
        rgb = torch.from_numpy(np.ascontiguousarray(fine[a:b])).to(device)
        off = (g0 * SUB - a) // SUB
        stain[:, g0:g1] = stain_features(rgb)[:, off:off + g1 - g0]
        tint[g0 * SUB:g1 * SUB] = fine_tint(rgb)[g0 * SUB - a:g1 * SUB - a]
    return stain, tint


def cell_type_weights(nuclei, *, mpp: float, cell_labels: bool = False) -> np.ndarray:
    """(N, 4) weights over :data:`CELL_TYPES` per nucleus.

    With ``cell_labels`` a nucleus whose ``label`` is one of the cell types counts fully for
    it and nuclei labelled ``Other`` weigh nothing. The rest (all nuclei without
    ``cell_labels``: the region rules' thresholds were set on these) get morphology rules (weight-free, documented thresholds):
    lymphocyte-like: area 10-40 µm², circularity >= 0.80, hematoxylin OD mean above the
    slide's median nucleus; tumour-like: area >= 48 µm²; stromal-like: eccentricity >= 0.85
    (spindle); epithelial-like: the rest.
    """
    n = len(nuclei)
    out = np.zeros((n, len(CELL_TYPES)), np.float32)
    if n == 0:
        return out
    if not cell_labels:
        return _morphology_types(nuclei, mpp=mpp)
    labels = np.asarray(nuclei.label, dtype=object)
    known = np.array([lab in CELL_TYPES for lab in labels])
    for j, name in enumerate(CELL_TYPES):
        out[labels == name, j] = 1.0
    rest = ~known & np.array([lab not in ("Other",) for lab in labels])
    if rest.any():
        out[rest] = _morphology_types(nuclei, mpp=mpp)[rest]
    return out


def _morphology_types(nuclei, *, mpp: float) -> np.ndarray:
    m = nuclei.measurements
    n = len(nuclei)
    area = m.get("Area µm^2")
    if area is None:
        area = np.array([g.area for g in nuclei.geometry]) * mpp * mpp
    circ = m.get("Circularity", np.full(n, 0.85))
    ecc = m.get("Eccentricity", np.full(n, 0.5))
    hod = m.get("Hematoxylin OD mean", np.full(n, np.nan))
    hod = np.where(np.isfinite(hod), hod, np.nanmedian(hod) if np.isfinite(hod).any() else 0.0)
    dark = hod >= np.median(hod)
    out = np.zeros((n, len(CELL_TYPES)), np.float32)
    lym = (area >= 10) & (area <= 40) & (circ >= 0.80) & dark
    tum = ~lym & (area >= 48)
    stro = ~lym & ~tum & (ecc >= 0.85)
    epi = ~lym & ~tum & ~stro
    for j, sel in enumerate((lym, epi, stro, tum)):
        out[sel, j] = 1.0
    return out


def nucleus_maps(nuclei, grid: Grid, *, mpp: float, device: torch.device, cell_labels: bool = False) -> torch.Tensor:
    """(6, H, W) float32 raw per-pixel sums: counts (all, 4 types, see
    :func:`cell_type_weights`) and summed area (µm²)."""
    h, w = grid.shape
    out = torch.zeros((6, h * w), dtype=torch.float32, device=device)
    if len(nuclei) == 0:
        return out.reshape(6, h, w)
    xy = nuclei.centroids()
    col = np.clip((xy[:, 0] / grid.downsample).astype(np.int64), 0, w - 1)
    row = np.clip((xy[:, 1] / grid.downsample).astype(np.int64), 0, h - 1)
    idx = torch.as_tensor(row * w + col, device=device)
    area = nuclei.measurements.get("Area µm^2")
    if area is None:
        area = np.array([g.area for g in nuclei.geometry]) * mpp * mpp
    vals = np.concatenate([np.ones((len(nuclei), 1), np.float32), cell_type_weights(nuclei, mpp=mpp, cell_labels=cell_labels),
                           np.asarray(area, np.float32)[:, None]], 1)
    out.index_add_(1, idx, torch.as_tensor(vals.T.copy(), device=device))
    return out.reshape(6, h, w)


def gaussian(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (C, H, W) with ``sigma`` px (reflect padding)."""
    if sigma <= 0:
        return x
    r = max(1, int(math.ceil(3 * sigma)))
    t = torch.arange(-r, r + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    c = x.shape[0]
    y = x[None]
    pad_h, pad_w = min(r, x.shape[1] - 1), min(r, x.shape[2] - 1)
    y = F.pad(y, (pad_w, pad_w, 0, 0), mode="reflect" if pad_w else "replicate")
    y = F.conv2d(y, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c, padding=(0, r - pad_w))
    y = F.pad(y, (0, 0, pad_h, pad_h), mode="reflect" if pad_h else "replicate")
    y = F.conv2d(y, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c, padding=(r - pad_h, 0))
    return y[0]


def masked_mean(x: torch.Tensor, mask: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian-weighted mean of (C, H, W) ``x`` over pixels where ``mask`` (H, W) is true."""
    m = mask.float()[None]
    return gaussian(x * m, sigma) / gaussian(m, sigma).clamp(min=1e-3)
