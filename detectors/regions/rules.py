"""Weight-free region rules on a :class:`~detectors.regions.mapper.FeatureSet`.

All thresholds are in physical units (µm, nuclei per mm², optical density) and collected
in :class:`RuleParams`. In order:

1. **Epithelium**: tissue pixels with a dense nuclear population (``n_all@8`` >=
   ``epi_density`` nuclei/mm²) or a hematoxylin-tinted cytoplasm (``h_cyto`` at least
   ``epi_h_cyto`` above the slide's dermis reference, the median over tissue pixels with
   sparse nuclei), smoothed (majority over ~16 µm), holes under ``hole_um2`` filled.
2. **Tumour** inside the epithelium: pixels where tumour-like nuclei (cell type Tumor, or
   >= 48 µm² when untyped) make at least ``tumor_fraction`` of the nuclei and reach
   ``tumor_density``; parts smaller than ``min_tumor_mm2`` are dropped.
3. **Epidermis**: the rest of the epithelium (parts under ``min_epi_mm2`` dropped).
4. **Other (keratin)**: non-epithelial tissue between the epidermis and the tissue surface:
   within ``keratin_um`` of the surface and ``keratin_um`` of the epidermis, and closer to
   the surface than the epidermis there.
5. **Inflammation**: outside epithelium, lymphocytes >= ``lym_density`` per mm² (24 µm
   smoothing) and >= ``lym_fraction`` of the nuclei; parts under ``min_inflammation_mm2``
   dropped.
6. **Dermis**: all remaining tissue.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from scipy import ndimage

from detectors.regions.features import gaussian
from detectors.regions.regionmap import LABELS


@dataclass(frozen=True)
class RuleParams:
    epi_density: float = 7000.0
    epi_h_cyto: float = 0.08
    sparse_density: float = 3000.0
    hole_um2: float = 2500.0
    tumor_fraction: float = 0.4
    tumor_density: float = 4000.0
    min_tumor_mm2: float = 0.01
    min_epi_mm2: float = 0.002
    keratin_um: float = 60.0
    lym_density: float = 1500.0
    lym_fraction: float = 0.5
    min_inflammation_mm2: float = 0.003

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "RuleParams":
        return cls(**d)


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().float().cpu().numpy()


def _drop_small(mask: np.ndarray, min_px: float) -> np.ndarray:
    lab, n = ndimage.label(mask)
    if n == 0:
        return mask
    sizes = np.bincount(lab.ravel(), minlength=n + 1)
    keep = sizes >= min_px
    keep[0] = False
    return keep[lab]


def _smooth_mask(mask: torch.Tensor, sigma_px: float) -> torch.Tensor:
    return gaussian(mask.float()[None], sigma_px)[0] > 0.5


def epithelium(fs, p: RuleParams) -> torch.Tensor:
    """(H, W) bool epithelial pixels (step 1)."""
    m, tissue = fs.maps, fs.tissue
    dens = m["n_all@8"]
    sparse = tissue & (m["n_all@24"] < p.sparse_density)
    ref = torch.median(m["h_cyto"][sparse]) if bool(sparse.any()) else torch.median(m["h_cyto"][tissue])
    h_cyto = gaussian(m["h_cyto"][None], 1.0)[0]
    epi = tissue & ((dens >= p.epi_density) | (h_cyto >= ref + p.epi_h_cyto))
    return _smooth_mask(epi, 1.0) & tissue


def rule_labels(fs, params: RuleParams | None = None) -> np.ndarray:
    """(H, W) uint8 region labels from the features (see the module docstring)."""
    p = params or RuleParams()
    px_um2 = fs.grid.um_per_px ** 2
    tissue = _np(fs.tissue).astype(bool)
    if not tissue.any():
        return np.zeros(fs.grid.shape, np.uint8)
    m = fs.maps
    epi = _np(epithelium(fs, p)).astype(bool)
    epi = ndimage.binary_fill_holes(epi) & tissue if p.hole_um2 <= 0 else _fill_small_holes(epi, p.hole_um2 / px_um2) & tissue

    n_all = _np(m["n_all@24"])
    n_tum = _np(m["n_tum@24"])
    tum = epi & (n_tum >= p.tumor_density) & (n_tum >= p.tumor_fraction * np.maximum(n_all, 1.0))
    tum = _drop_small(ndimage.binary_opening(tum, iterations=1), p.min_tumor_mm2 * 1e6 / px_um2)
    epid = _drop_small(epi & ~tum, p.min_epi_mm2 * 1e6 / px_um2)

    edge = _np(fs.edge_um)
    other = _keratin(tissue & ~epid & ~tum, epid, edge, fs.grid.um_per_px, p.keratin_um)

    n_lym = _np(m["n_lym@24"])
    infl = tissue & ~epid & ~tum & ~other & (n_lym >= p.lym_density) & (n_lym >= p.lym_fraction * np.maximum(n_all, 1.0))
    infl = _drop_small(infl, p.min_inflammation_mm2 * 1e6 / px_um2)

    out = np.zeros(fs.grid.shape, np.uint8)
    out[tissue] = LABELS["Dermis"]
    out[infl] = LABELS["Inflammation"]
    out[other] = LABELS["Other"]
    out[epid] = LABELS["Epidermis"]
    out[tum] = LABELS["Tumor"]
    return out


def _fill_small_holes(mask: np.ndarray, max_px: float) -> np.ndarray:
    holes = ndimage.binary_fill_holes(mask) & ~mask
    lab, n = ndimage.label(holes)
    if n == 0:
        return mask
    sizes = np.bincount(lab.ravel(), minlength=n + 1)
    small = sizes <= max_px
    small[0] = False
    return mask | small[lab]


def _keratin(candidates: np.ndarray, epid: np.ndarray, edge_um: np.ndarray, um_per_px: float,
             reach_um: float) -> np.ndarray:
    """Non-epithelial tissue lying on the surface side of the epidermis (step 4)."""
    if not epid.any():
        return np.zeros_like(candidates)
    d_epi, (iy, ix) = ndimage.distance_transform_edt(~epid, return_indices=True)
    d_epi = d_epi * um_per_px
    edge_at_epi = edge_um[iy, ix]  # surface distance of the nearest epidermis pixel
    return candidates & (d_epi <= reach_um) & (edge_um <= reach_um) & (edge_um < edge_at_epi)
