"""Cell-type class names (QuPath classification names) and the synthetic truth's mapping.

:data:`CLASSES` is the order used everywhere (model outputs, confusion matrices):
``Lymphocyte, Epithelial, Stromal, Tumor, Other``.

The synthetic generator (:mod:`wsi_pipeline.synthetic`) records each nucleus' kind as
``nucleusType``; :func:`truth_cell_type` maps it to a class (mitotic figures count as
``Tumor``: in the synthetic scenes they sit in the tumour nest or, rarely, the epidermis).
"""

from __future__ import annotations

import numpy as np

LYMPHOCYTE, EPITHELIAL, STROMAL, TUMOR, OTHER = "Lymphocyte", "Epithelial", "Stromal", "Tumor", "Other"
CLASSES: tuple[str, ...] = (LYMPHOCYTE, EPITHELIAL, STROMAL, TUMOR, OTHER)

#: synthetic ``nucleusType`` -> cell type (kinds not listed map to ``Other``).
NUCLEUS_TYPE_TO_CLASS: dict[str, str] = {
    "lymphocyte": LYMPHOCYTE,
    "epidermal": EPITHELIAL,
    "keratinocyte": EPITHELIAL,
    "dermal": STROMAL,
    "fibroblast": STROMAL,
    "endothelial": STROMAL,
    "tumor": TUMOR,
    "melanoma": TUMOR,
    "melanocytic": TUMOR,
    "mitosis": TUMOR,
}


def truth_cell_type(nucleus_type: str | None) -> str:
    """Cell type of a synthetic nucleus kind (``Other`` for unknown or missing kinds)."""
    if nucleus_type is None:
        return OTHER
    return NUCLEUS_TYPE_TO_CLASS.get(str(nucleus_type).strip().lower(), OTHER)


def class_index(names, classes: tuple[str, ...] = CLASSES) -> np.ndarray:
    """(N,) int64 index of each name in ``classes`` (-1 where it is not one of them)."""
    lookup = {c: i for i, c in enumerate(classes)}
    return np.fromiter((lookup.get(n, -1) for n in names), np.int64, count=len(names))
