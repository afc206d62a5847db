"""Mitotic rate per mm² for the draft: mitoses of the invasive (dermal) tumour only.

AJCC 8th / CAP count the mitotic rate of a melanoma in its dermal (invasive) component,
starting in the field with most mitoses (the hotspot) and extending over 1 mm²; when the
invasive component is smaller than 1 mm², the mitoses of the whole of it are given as the
number per mm². Mitoses elsewhere on the slide (basal keratinocytes of the epidermis, an
inflamed area, another piece) are not the tumour's.

So the run's slide-wide hotspot (``summary.json``) is not what the draft gives: the draft
counts the validated mitoses of ``mitoses.geojson`` that lie in the lesion minus the mapped
epidermis, in the densest square field of ``hotspot_area_mm2`` (the run's setting, 1 mm²).
The run gives mitoses only from a validated mitosis model (``counts.mitotic_rate`` with
``assessed: true``); otherwise the draft says "not assessed" with the run's reason.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import shapely

from wsi_pipeline.report.findings import Finding, not_assessed

MITOTIC_RATE = "Mitotic rate"


@dataclass(frozen=True)
class InvasiveCount:
    """Mitoses counted in the invasive component (µm): ``count`` in the field ``box`` (x0, y0,
    x1, y1) of ``field_mm2``, or in the whole component (``box`` None) when it is smaller."""

    count: int
    field_mm2: float
    invasive_mm2: float
    box: tuple[float, float, float, float] | None

    @property
    def rate(self) -> float:
        return self.count / self.field_mm2


def densest_square(points: np.ndarray, side: float) -> tuple[int, tuple[float, float, float, float] | None]:
    """Most of ``points`` (n, 2) in one axis-aligned square ``[x, x + side) x [y, y + side)``,
    and that square (``None`` without points). Exact: some best square has a point on its
    left edge and one on its top edge."""
    pts = np.asarray(points, float).reshape(-1, 2)
    if not len(pts):
        return 0, None
    best = (0, None)
    for x in np.unique(pts[:, 0]):
        ys = np.sort(pts[(pts[:, 0] >= x) & (pts[:, 0] < x + side), 1])
        counts = np.searchsorted(ys, ys + side, side="left") - np.arange(len(ys))
        i = int(counts.argmax())
        if counts[i] > best[0]:
            best = (int(counts[i]), (float(x), float(ys[i]), float(x + side), float(ys[i] + side)))
    return best


def count_invasive(points_um: np.ndarray, invasive, field_mm2: float) -> InvasiveCount:
    """The mitoses (``points_um`` (n, 2)) of the ``invasive`` component (shapely, µm) in its
    densest square field of ``field_mm2``; all of them when the component is smaller."""
    pts = np.asarray(points_um, float).reshape(-1, 2)
    inside = pts[shapely.contains_xy(invasive, pts[:, 0], pts[:, 1])] if len(pts) else pts
    area_mm2 = invasive.area / 1e6
    if area_mm2 < field_mm2:
        return InvasiveCount(len(inside), field_mm2, area_mm2, None)
    count, box = densest_square(inside, math.sqrt(field_mm2) * 1000.0)
    if box is None:  # no mitosis: any field holds 0
        return InvasiveCount(0, field_mm2, area_mm2, None)
    return InvasiveCount(count, field_mm2, area_mm2, box)


def run_rate(summary: dict | None) -> tuple[float | None, Finding | None]:
    """The run's slide-wide rate from a ``summary.json`` dict (``None``: the file is missing)
    and, when the run gives none from a validated model, the "not assessed" line saying why."""
    if summary is None:
        return None, not_assessed(MITOTIC_RATE, "summary.json missing (mitoses not run)")
    counts = summary.get("counts") or {}
    rate = counts.get("mitotic_rate") if isinstance(counts.get("mitotic_rate"), dict) else {}
    value = counts.get("mitoses_per_mm2", rate.get("value"))
    if value is None or counts.get("mitoses_validated") is not True or rate.get("assessed", True) is False:
        reason = rate.get("reason") or ("no validated mitosis model" if counts.get("mitoses_validated") is False
                                        else "no mitotic rate in summary.json")
        if reason.startswith("not assessed: "):
            reason = reason[len("not assessed: "):]
        return None, not_assessed(MITOTIC_RATE, reason, source="summary.json")
    return float(value), None


def field_mm2(summary: dict) -> float:
    """The run's hotspot field area (mm², 1 by default)."""
    counts = summary.get("counts") or {}
    rate = counts.get("mitotic_rate") if isinstance(counts.get("mitotic_rate"), dict) else {}
    return float(rate.get("area_mm2") or counts.get("hotspot_area_mm2") or 1.0)


def mitotic_rate_finding(summary: dict | None, *, counted: InvasiveCount | None = None,
                         missing: str | None = None, epidermis_excluded: bool = True) -> Finding:
    """The mitotic-rate line: "not assessed" unless the run's mitoses come from a validated
    model (:func:`run_rate`); then the mitoses ``counted`` in the invasive component, or
    ``missing``: why they could not be counted (no tumour outline, no mitoses.geojson)."""
    value, not_given = run_rate(summary)
    if not_given is not None:
        return not_given
    model = (summary.get("counts") or {}).get("mitosis_model") or "mitosis model"
    if counted is None:
        return not_assessed(MITOTIC_RATE, f"{missing or 'no invasive tumour'}: the rate is counted in the "
                            f"invasive tumour (the slide's densest field: {value:g} per mm²)", source="model")
    where = "" if epidermis_excluded else "; the epidermis is not mapped, so the whole lesion was counted"
    if counted.box is None and counted.invasive_mm2 < counted.field_mm2:
        text = (f"{counted.rate:.0f} per mm² (all {counted.count} mitoses of the invasive component, "
                f"{counted.invasive_mm2:.2f} mm² < {counted.field_mm2:g} mm²{where})")
    else:
        text = f"{counted.rate:.0f} per mm² (densest {counted.field_mm2:g} mm² field of the invasive component{where})"
    return Finding(MITOTIC_RATE, round(counted.rate, 1), text, "model",
                   details={"model": model, "field_mm2": counted.field_mm2, "mitoses_in_field": counted.count,
                            "invasive_mm2": round(counted.invasive_mm2, 4), "epidermis_excluded": epidermis_excluded,
                            "field_um": None if counted.box is None else [round(v, 1) for v in counted.box],
                            "slide_hotspot_per_mm2": value})
