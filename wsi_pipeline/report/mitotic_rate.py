"""Mitotic rate per mm² for the draft: mitoses of the invasive (dermal) tumour only.

AJCC 8th / CAP count the mitotic rate of a melanoma in its dermal (invasive) component,
starting in the field with most mitoses (the hotspot) and extending over 1 mm²; when the
invasive component is smaller than 1 mm², the mitoses of the whole of it are given as the
number per mm². Mitoses elsewhere on the slide (basal keratinocytes of the epidermis, an
inflamed area, another piece) are not the tumour's.

So the run's slide-wide hotspot (``summary.json``) is not what the draft gives: the draft
counts the validated mitoses of ``mitoses.geojson`` that lie in the lesion minus the mapped
epidermis, over ``hotspot_area_mm2`` (the run's setting, 1 mm²) *of that component*, as the
pathologist extends the count from the hotspot to the adjacent fields of tumour: the field is
the part of the component within a circle around a mitosis, the circle grown until that part
is 1 mm² (:func:`densest_tumour_field`). A square of 1 mm² laid on a thin, wide tumour would be
partly dermis and epidermis and understate the rate.
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
    """Mitoses counted in the invasive component (µm): ``count`` in the ``field`` (shapely,
    ``field_mm2`` of the component), or in the whole component (``field`` None) when it is
    smaller."""

    count: int
    field_mm2: float
    invasive_mm2: float
    field: object | None

    @property
    def rate(self) -> float:
        return self.count / self.field_mm2


#: the component is measured on a grid of at most about this many cells (cells >= 2 µm)
FIELD_GRID_CELLS = 250_000


def densest_tumour_field(points: np.ndarray, component, area_um2: float) -> tuple[int, object | None]:
    """Most of ``points`` (n, 2), all inside ``component`` (shapely, µm), in ``area_um2`` of the
    component around one of them, and that field (``None`` without points).

    For each mitosis: the circle around it whose part inside the component has ``area_um2``
    (the component on a grid of :data:`FIELD_GRID_CELLS` cells: the radius is the distance to
    the k-th nearest cell centre, k cells making the area), and the mitoses within it. The
    best has the most mitoses, then the smallest circle. The component must be at least
    ``area_um2``."""
    pts = np.asarray(points, float).reshape(-1, 2)
    if not len(pts):
        return 0, None
    x0, y0, x1, y1 = component.bounds
    cell = max(2.0, math.sqrt(component.area / FIELD_GRID_CELLS))
    gx, gy = np.meshgrid(np.arange(x0 + cell / 2, x1, cell), np.arange(y0 + cell / 2, y1, cell))
    inside = shapely.contains_xy(component, gx.ravel(), gy.ravel())
    cx, cy = gx.ravel()[inside], gy.ravel()[inside]
    k = min(len(cx), max(1, int(round(area_um2 / cell**2))))
    best = (-1, math.inf, 0)
    for i, (x, y) in enumerate(pts):
        r2 = float(np.partition((cx - x) ** 2 + (cy - y) ** 2, k - 1)[k - 1])
        n = int((((pts[:, 0] - x) ** 2 + (pts[:, 1] - y) ** 2) <= r2).sum())
        if n > best[0] or (n == best[0] and r2 < best[1]):
            best = (n, r2, i)
    n, r2, i = best
    disc = shapely.Point(*pts[i]).buffer(math.sqrt(r2), quad_segs=32)
    return n, component.intersection(disc)


def count_invasive(points_um: np.ndarray, invasive, field_mm2: float) -> InvasiveCount:
    """The mitoses (``points_um`` (n, 2)) of the ``invasive`` component (shapely, µm) in its
    densest field of ``field_mm2`` of tumour (:func:`densest_tumour_field`); all of them when
    the component is smaller."""
    pts = np.asarray(points_um, float).reshape(-1, 2)
    inside = pts[shapely.contains_xy(invasive, pts[:, 0], pts[:, 1])] if len(pts) else pts
    area_mm2 = invasive.area / 1e6
    if area_mm2 < field_mm2:
        return InvasiveCount(len(inside), field_mm2, area_mm2, None)
    count, field = densest_tumour_field(inside, invasive, field_mm2 * 1e6)
    return InvasiveCount(count, field_mm2, area_mm2, field)  # no mitosis: any field holds 0 (None)


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
    if counted.field is None and counted.invasive_mm2 < counted.field_mm2:
        text = (f"{counted.rate:.0f} per mm² (all {counted.count} mitoses of the invasive component, "
                f"{counted.invasive_mm2:.2f} mm² < {counted.field_mm2:g} mm²{where})")
    elif counted.count == 0:
        text = f"0 per mm² (no mitosis in the invasive component, {counted.invasive_mm2:.2f} mm²{where})"
    else:
        text = (f"{counted.rate:.0f} per mm² (densest {counted.field_mm2:g} mm² of the invasive component, "
                f"around a hotspot{where})")
    return Finding(MITOTIC_RATE, round(counted.rate, 1), text, "model",
                   details={"model": model, "field_mm2": counted.field_mm2, "mitoses_in_field": counted.count,
                            "invasive_mm2": round(counted.invasive_mm2, 4), "epidermis_excluded": epidermis_excluded,
                            "field_um": None if counted.field is None else _rounded(counted.field),
                            "slide_hotspot_per_mm2": value})


def _rounded(geom) -> dict:
    """A shapely geometry as a GeoJSON-style dict, coordinates rounded to 0.1 µm."""
    return shapely.geometry.mapping(shapely.set_precision(geom, 0.1))
