"""Weight-free cell typing: thresholds on each nucleus' own measurements, then its neighbours.

All sizes are in µm (areas µm², distances µm). "Dark" is relative: ``h_rel`` is a nucleus'
hematoxylin OD mean over the slide's pale reference (the ``H_REF_PERCENTILE`` = 5th
percentile of all nuclei, :mod:`detectors.cells.features`): the paler nuclei of a skin slide
are keratinocytes and fibroblasts whatever the mix, so the reference does not move when a
slide is mostly tumour (down to about a tenth pale nuclei) or mostly epidermis, and a lighter
or darker stain does not shift the classes.

Own measurements, in order (a later rule overrides an earlier one):

``Stromal``     spindle: elongation (max / min caliper) ``>= SPINDLE_ELONG`` = 1.6; or pale
                (``h_rel < DARK_H_REL``) and isolated: the 3rd nearest nucleus farther than
                ``ISOLATED_D3_UM`` = 20 µm (fibroblasts and vessel walls lie apart).
``Epithelial``  pale, not spindle, area ``EPI_AREA`` = 12–46 µm², with close neighbours (3rd
                nearest nucleus within 20 µm): keratinocytes in a cohesive layer.
``Lymphocyte``  dark (``h_rel >= DARK_H_REL`` = 1.35), small (area ``< LYM_AREA`` = 38 µm², about
                7 µm across) and round (elongation ``<= LYM_ELONG`` = 1.3).
``Tumor``       large (area ``>= TUMOR_AREA`` = 46 µm², about 7.7 µm across), or dark and
                medium-large (area ``>= TUMOR_DARK_AREA`` = 38 µm²) and not spindle-thin: the
                large, hyperchromatic nuclei of a carcinoma or melanoma.
``Other``       tiny fragments (area ``< MIN_AREA`` = 8 µm²) and dark non-round nuclei that are
                neither small nor large (e.g. a pyknotic or tangentially cut nucleus).

Neighbours (:func:`smooth`; "neighbours" are the nuclei within ``SMOOTH_RADIUS_UM`` = 20 µm):

- a cohesive group decides Epithelial vs Tumor: an Epithelial or Tumor nucleus with at least
  ``SMOOTH_MIN`` = 3 neighbours typed either takes the majority of itself and them, so a
  nucleus of a tumour nest that happens to be small or pale becomes Tumor and an occasional
  large keratinocyte in normal epidermis stays Epithelial;
- Lymphocytes are not smoothed: a small, round, dark nucleus among tumour cells is a
  tumour-infiltrating lymphocyte, which the TIL grade counts;
- a dark Stromal (spindle) nucleus with at least ``SMOOTH_MIN`` Tumor neighbours, more than
  its Stromal ones, is an elongated tumour nucleus (spindle-cell melanoma, a nest's edge);
- a lone Tumor nucleus (no Tumor neighbour) outside any epithelial group is a large stromal
  or endothelial nucleus: Stromal when pale, else left as is (a single atypical cell).
"""

from __future__ import annotations

import numpy as np

from detectors.cells.features import Neighbourhood
from detectors.cells.types import CLASSES, EPITHELIAL, LYMPHOCYTE, OTHER, STROMAL, TUMOR

MIN_AREA = 8.0
DARK_H_REL = 1.35
SPINDLE_ELONG = 1.6
ISOLATED_D3_UM = 30.0
NB_SPINDLE_ELONG = 1.5
SPINDLE_TUMOR_AREA = 35.0
EPI_AREA = (12.0, 46.0)
LYM_AREA = 38.0
LYM_ELONG = 1.3
TUMOR_AREA = 46.0
TUMOR_DARK_AREA = 38.0
SMOOTH_RADIUS_UM = 20.0
SMOOTH_MIN = 3

I_LYM, I_EPI, I_STR, I_TUM, I_OTH = (CLASSES.index(c) for c in (LYMPHOCYTE, EPITHELIAL, STROMAL, TUMOR, OTHER))


def rule_types(f: dict[str, np.ndarray]) -> np.ndarray:
    """(N,) int64 index into :data:`CLASSES` from the feature table ``f`` (see the docstring)."""
    n = len(f["area"])
    out = np.full(n, I_OTH, np.int64)
    area, elong, hrel = f["area"], f["elongation"], f["h_rel"]
    dark = hrel >= DARK_H_REL
    spindle = elong >= SPINDLE_ELONG
    among_spindles = (f["nb_elongation"] >= NB_SPINDLE_ELONG) | (f["d3"] > ISOLATED_D3_UM)
    out[spindle | (~dark & among_spindles)] = I_STR
    out[~dark & ~spindle & ~among_spindles & (area >= EPI_AREA[0]) & (area < EPI_AREA[1])] = I_EPI
    out[dark & (area < LYM_AREA) & (elong <= LYM_ELONG)] = I_LYM
    out[(area >= TUMOR_AREA) | (dark & ~spindle & (area >= TUMOR_DARK_AREA))] = I_TUM
    out[area < MIN_AREA] = I_OTH
    return out


def smooth(types: np.ndarray, nb: Neighbourhood, f: dict[str, np.ndarray]) -> np.ndarray:
    """(N,) types after the neighbour rules of the module docstring.

    types : (N,) int64 class indices; f : the feature table (``h_rel``).
    """
    types = np.asarray(types, np.int64)
    padded = np.concatenate([types, [-1]])
    got = padded[nb.index]  # (N, k)
    near = nb.within(SMOOTH_RADIUS_UM)
    n_tum_nb = ((got == I_TUM) & near).sum(1)
    n_epi_nb = ((got == I_EPI) & near).sum(1)
    n_tum = n_tum_nb + (types == I_TUM)
    n_epi = n_epi_nb + (types == I_EPI)
    out = types.copy()
    change = np.isin(types, (I_EPI, I_TUM)) & (n_tum_nb + n_epi_nb >= SMOOTH_MIN)
    out[change & (n_tum > n_epi)] = I_TUM
    out[change & (n_epi > n_tum)] = I_EPI
    n_str_nb = ((got == I_STR) & near).sum(1)
    dark = f["h_rel"] >= DARK_H_REL
    out[(types == I_STR) & dark & (f["area"] >= SPINDLE_TUMOR_AREA) & (n_tum_nb >= SMOOTH_MIN) & (n_tum_nb > n_str_nb)] = I_TUM
    lone = (types == I_TUM) & (n_tum_nb == 0) & (n_epi_nb < SMOOTH_MIN) & (f["h_rel"] < DARK_H_REL)
    out[lone] = I_STR
    return out


def classify_rules(f: dict[str, np.ndarray], nb: Neighbourhood) -> np.ndarray:
    """(N,) int64 class indices: :func:`rule_types` then :func:`smooth`."""
    return smooth(rule_types(f), nb, f)
