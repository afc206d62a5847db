"""Annotation text labels that stay legible at every zoom (no Qt, no napari needed).

napari draws Shapes text at a fixed size in screen pixels, so at whole-slide zoom the
labels of nearby shapes (margin segments, lesion foci, the epidermal surface) pile up into
an unreadable block. Two rules keep them legible:

* labels are short: the object's name, else its class, cut to :data:`MAX_CHARS`;
* a layer's labels are shown only at zooms where no two label anchors come closer on
  screen than one label box (:func:`min_zoom`); zoomed out, the layer's colours and the
  Review panel's class table say what is what.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

MAX_CHARS = 28
#: screen pixels one label needs: about MAX_CHARS characters at 10 pt, one line high
LABEL_BOX_PX = (MAX_CHARS * 6.5, 16.0)


def short_label(name: str | None, classification: str | None, *, max_chars: int = MAX_CHARS) -> str:
    """The name when there is one (it already says what the object is), else the class;
    at most ``max_chars`` characters (an ellipsis marks a cut)."""
    text = (name or classification or "").strip()
    return text if len(text) <= max_chars else text[: max_chars - 1].rstrip() + "…"


def min_zoom(anchors_rc: np.ndarray, *, box_px: tuple[float, float] = LABEL_BOX_PX) -> float:
    """Smallest zoom (screen px per data px) at which labels anchored at ``anchors_rc``
    ``(N, 2)`` (row, col) do not overlap: every pair is at least one label box apart on
    screen (in columns) or one line apart (in rows). ``0`` for fewer than two labels."""
    pts = np.asarray(anchors_rc, float).reshape(-1, 2)
    pts = pts[np.isfinite(pts).all(axis=1)]
    if len(pts) < 2:
        return 0.0
    width, height = box_px
    # scale rows so that one label box is a unit square, then the nearest pair decides
    scaled = pts / np.array([height, width])
    dist, _ = cKDTree(scaled).query(scaled, k=2)
    nearest = float(dist[:, 1].min())
    if nearest <= 0:
        return float("inf")  # two labels at one place never separate: keep them hidden
    return 1.0 / nearest * np.sqrt(2.0)  # a box's diagonal, so any direction is safe


def label_anchors(shapes_data: list[np.ndarray]) -> np.ndarray:
    """``(N, 2)`` (row, col) where napari anchors each shape's label (its upper-left corner)."""
    if not shapes_data:
        return np.zeros((0, 2))
    return np.array([np.asarray(d, float).reshape(-1, 2).min(axis=0) for d in shapes_data])
