"""Weight-free cell typing: thresholds on the feature table, then neighbour smoothing.

All sizes are in µm (areas µm²); "dark" is relative to the slide's median nucleus
(``h_rel`` = hematoxylin OD mean / slide median), so a lighter or darker stain does not
shift the classes. Densities count nuclei within ``SHEET_RADIUS_UM`` = 20 µm.

Rules, in order (the first that applies wins):

``Tumor``       in a cohesive sheet (``>= SHEET_MIN`` = 8 nuclei within 20 µm) and large
                (area ``>= TUMOR_AREA`` = 45 µm²), or large-ish (``>= TUMOR_AREA_LOW`` =
                34 µm²) and hyperchromatic (``h_rel >= TUMOR_H_REL`` = 1.25) with large
                neighbours (their mean area ``>= TUMOR_NB_AREA`` = 40 µm²).
``Epithelial``  in a cohesive sheet, medium-sized (area ``>= EPI_MIN_AREA`` = 10 µm²).
``Lymphocyte``  small (area ``< LYM_AREA`` = 30 µm²), round (elongation ``<= LYM_ELONG`` =
                1.4, circularity ``>= LYM_CIRC`` = 0.8) and not pale (``h_rel >= LYM_H_REL`` = 0.9; the median
                nucleus of a tumour-rich slide is itself dark, so this is a floor).
``Stromal``     outside sheets: elongated / spindle (elongation ``>= STROMA_ELONG`` = 1.5),
                or any other non-sheet nucleus of ordinary size (8–60 µm²) that is not dark.
``Other``       the rest (tiny fragments, very large sparse nuclei, dark non-round blobs).

Smoothing (:func:`smooth`): inside sheets, an Epithelial / Tumor nucleus takes the majority
of Epithelial vs Tumor among itself and its sheet neighbours (within ``SMOOTH_RADIUS_UM`` =
15 µm) when at least ``SMOOTH_MIN`` = 4 of them are typed as either; a tumour nest is a
cohesive cluster, so an isolated "large" epithelial nucleus in normal epidermis stays
Epithelial and a small one in a nest becomes Tumor.
"""

from __future__ import annotations

import numpy as np

from detectors.cells.features import Neighbourhood
from detectors.cells.types import CLASSES, EPITHELIAL, LYMPHOCYTE, OTHER, STROMAL, TUMOR

SHEET_MIN = 8
TUMOR_AREA = 45.0
TUMOR_AREA_LOW = 34.0
TUMOR_H_REL = 1.25
TUMOR_NB_AREA = 40.0
EPI_MIN_AREA = 10.0
LYM_AREA = 30.0
LYM_ELONG = 1.4
LYM_CIRC = 0.8
LYM_H_REL = 0.9
STROMA_ELONG = 1.5
STROMA_AREA = (8.0, 60.0)
STROMA_MAX_H_REL = 1.15
SMOOTH_RADIUS_UM = 15.0
SMOOTH_MIN = 4

I_LYM, I_EPI, I_STR, I_TUM, I_OTH = (CLASSES.index(c) for c in (LYMPHOCYTE, EPITHELIAL, STROMAL, TUMOR, OTHER))


def rule_types(f: dict[str, np.ndarray]) -> np.ndarray:
    """(N,) int64 index into :data:`CLASSES` from the feature table ``f`` (see the docstring)."""
    n = len(f["area"])
    out = np.full(n, I_OTH, np.int64)
    area, elong, hrel = f["area"], f["elongation"], f["h_rel"]
    sheet = f["n_within_20um"] >= SHEET_MIN
    tumour = sheet & ((area >= TUMOR_AREA)
                      | ((area >= TUMOR_AREA_LOW) & (hrel >= TUMOR_H_REL) & (f["nb_area"] >= TUMOR_NB_AREA)))
    epi = sheet & ~tumour & (area >= EPI_MIN_AREA)
    lym = ~sheet & (area < LYM_AREA) & (elong <= LYM_ELONG) & (f["circularity"] >= LYM_CIRC) & (hrel >= LYM_H_REL)
    stroma = ~sheet & ~lym & ((elong >= STROMA_ELONG)
                              | ((area >= STROMA_AREA[0]) & (area < STROMA_AREA[1]) & (hrel < STROMA_MAX_H_REL)))
    # sheet lymphocytes (a dense infiltrate): small, round, dark, with small neighbours
    lym_sheet = sheet & (area < LYM_AREA) & (elong <= LYM_ELONG) & (hrel >= LYM_H_REL) & (f["nb_area"] < LYM_AREA)
    out[stroma] = I_STR
    out[lym | lym_sheet] = I_LYM
    out[epi & ~lym_sheet] = I_EPI
    out[tumour] = I_TUM
    return out


def smooth(types: np.ndarray, nb: Neighbourhood, sheet: np.ndarray) -> np.ndarray:
    """(N,) types with sheet Epithelial/Tumor nuclei set to their neighbourhood's majority.

    types : (N,) int64 class indices; sheet : (N,) bool (in a cohesive sheet).
    """
    types = np.asarray(types, np.int64)
    padded = np.concatenate([types, [-1]])
    got = padded[nb.index]  # (N, k)
    near = nb.within(SMOOTH_RADIUS_UM)
    n_tum = ((got == I_TUM) & near).sum(1) + (types == I_TUM)
    n_epi = ((got == I_EPI) & near).sum(1) + (types == I_EPI)
    change = sheet & np.isin(types, (I_EPI, I_TUM)) & (n_tum + n_epi >= SMOOTH_MIN + 1)
    out = types.copy()
    out[change & (n_tum > n_epi)] = I_TUM
    out[change & (n_epi > n_tum)] = I_EPI
    return out


def classify_rules(f: dict[str, np.ndarray], nb: Neighbourhood) -> np.ndarray:
    """(N,) int64 class indices: :func:`rule_types` then :func:`smooth`."""
    return smooth(rule_types(f), nb, f["n_within_20um"] >= SHEET_MIN)
