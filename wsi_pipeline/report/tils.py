"""Tumour-infiltrating lymphocytes (Clark): absent / non-brisk / brisk, and lymphocytes per mm
of the tumour base.

Inputs in micrometres: the invasive component (the lesion less the epidermis), lymphocyte
centroids (``nuclei.parquet`` rows of class ``Lymphocyte``) and the reference surface.

A point of the invasive component is *infiltrated* when the lymphocytes among the tumour
cells within ``radius_um`` reach ``focus_per_mm2`` (per mm² of tumour in that disc, at least
``min_count`` of them). Grades (Clark): **brisk** when the infiltrate permeates the invasive
component diffusely (``brisk_coverage`` of it infiltrated) or runs along its entire base
(``brisk_base_coverage`` of the base zone); **non-brisk** when there are only foci;
**absent** when nothing is infiltrated. The tumour base is the deeper half of the invasive
component's outline (by distance from the reference surface); its zone is the tumour within
``base_zone_um`` of it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import shapely
from pydantic import BaseModel, ConfigDict, Field
from scipy import ndimage
from scipy.signal import fftconvolve
from shapely.geometry import LineString, MultiLineString

from wsi_pipeline.report.findings import Finding, not_assessed
from wsi_pipeline.report.margins.surface import cyclic_runs

TILS = "Tumour-infiltrating lymphocytes"
GRADES = ("absent", "non-brisk", "brisk")


class TilConfig(BaseModel):
    """Thresholds of the TIL grade (``configs/synoptic.yaml``, key ``tils``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    radius_um: float = Field(40.0, gt=0)
    focus_per_mm2: float = Field(1000.0, ge=0)
    min_count: int = Field(4, ge=1)
    brisk_coverage: float = Field(0.6, ge=0, le=1)
    brisk_base_coverage: float = Field(0.9, ge=0, le=1)
    base_zone_um: float = Field(100.0, gt=0)
    pixel_um: float = Field(5.0, gt=0)


@dataclass(frozen=True)
class TilResult:
    """grade, coverage (fraction of the invasive component infiltrated), base_coverage,
    lymphocytes (in the invasive component), tumour_cells (other nuclei there),
    base_length_um, base_lymphocytes (in the base zone), base (the base line, µm)."""

    grade: str
    coverage: float
    base_coverage: float
    lymphocytes: int
    tumour_cells: int
    base_length_um: float
    base_lymphocytes: int
    base: MultiLineString

    @property
    def per_mm_base(self) -> float | None:
        return None if self.base_length_um <= 0 else self.base_lymphocytes / (self.base_length_um / 1000.0)


def tumour_base(invasive, reference, *, step_um: float = 5.0) -> MultiLineString:
    """The deeper half of the invasive component's outline (µm); all of it without a reference."""
    lines = []
    for poly in getattr(invasive, "geoms", [invasive]):
        if poly.geom_type != "Polygon" or poly.is_empty:
            continue
        ring = LineString(poly.exterior.coords)
        n = max(16, math.ceil(ring.length / step_um))
        pts = shapely.line_interpolate_point(ring, np.arange(n) * (ring.length / n))
        xy = shapely.get_coordinates(pts)
        if reference is None:
            lines.append(ring)
            continue
        d = shapely.distance(pts, reference)
        deep = d >= d.min() + 0.5 * (d.max() - d.min())
        lines += [LineString(xy[r]) for r in cyclic_runs(deep) if len(r) >= 2]
    return MultiLineString(lines)


def grade_tils(invasive, lymphocytes: np.ndarray, others: np.ndarray, *, reference, config: TilConfig) -> TilResult:
    """Grade the TILs. lymphocytes, others : ``(N, 2)`` / ``(M, 2)`` centroids in µm."""
    shapely.prepare(invasive)
    lym = lymphocytes[shapely.contains_xy(invasive, lymphocytes[:, 0], lymphocytes[:, 1])] if len(lymphocytes) else lymphocytes
    oth = others[shapely.contains_xy(invasive, others[:, 0], others[:, 1])] if len(others) else others
    grid = _Grid(invasive.bounds, pad=config.radius_um + config.base_zone_um, pixel=config.pixel_um, area=invasive.area)
    mask = grid.mask(invasive)
    infiltrated = _infiltrated(mask, grid.counts(lym), grid.pixel, config) & mask
    base = tumour_base(invasive, reference)
    zone = mask & (grid.distance_to(base) <= config.base_zone_um) if not base.is_empty else np.zeros_like(mask)
    coverage = float(infiltrated.sum() / max(mask.sum(), 1))
    base_cov = float(infiltrated[zone].mean()) if zone.any() else 0.0
    if coverage >= config.brisk_coverage or (zone.any() and base_cov >= config.brisk_base_coverage):
        grade = "brisk"
    else:
        grade = "non-brisk" if infiltrated.any() else "absent"
    in_zone = grid.lookup(zone, lym)
    return TilResult(grade, coverage, base_cov, len(lym), len(oth), float(base.length), int(in_zone.sum()), base)


def _infiltrated(mask: np.ndarray, counts: np.ndarray, pixel: float, config: TilConfig) -> np.ndarray:
    r = config.radius_um / pixel
    k = int(math.ceil(r))
    yy, xx = np.mgrid[-k:k + 1, -k:k + 1]
    disc = ((xx**2 + yy**2) <= r * r).astype(float)
    lym = fftconvolve(counts, disc, mode="same")
    area_mm2 = fftconvolve(mask.astype(float), disc, mode="same") * (pixel / 1000.0) ** 2
    enough = area_mm2 >= 0.3 * disc.sum() * (pixel / 1000.0) ** 2
    density = np.where(enough, lym / np.maximum(area_mm2, 1e-12), 0.0)
    return (density >= config.focus_per_mm2) & (lym >= config.min_count - 0.5)


class _Grid:
    """A raster over ``bounds`` (µm) padded by ``pad``; pixel ``(r, c)`` centre at
    ``origin + ((c + .5) p, (r + .5) p)``. The pixel grows so the raster stays under ~4 M pixels."""

    def __init__(self, bounds, *, pad: float, pixel: float, area: float) -> None:
        x0, y0, x1, y1 = bounds
        pixel = max(pixel, math.sqrt((x1 - x0 + 2 * pad) * (y1 - y0 + 2 * pad) / 4e6))
        self.pixel = pixel
        self.origin = np.array([x0 - pad, y0 - pad])
        self.shape = (int(math.ceil((y1 - y0 + 2 * pad) / pixel)), int(math.ceil((x1 - x0 + 2 * pad) / pixel)))

    def centres(self) -> tuple[np.ndarray, np.ndarray]:
        ys = self.origin[1] + (np.arange(self.shape[0]) + 0.5) * self.pixel
        xs = self.origin[0] + (np.arange(self.shape[1]) + 0.5) * self.pixel
        return np.meshgrid(xs, ys)

    def mask(self, geom) -> np.ndarray:
        gx, gy = self.centres()
        return shapely.contains_xy(geom, gx, gy)

    def counts(self, xy: np.ndarray) -> np.ndarray:
        out = np.zeros(self.shape)
        if len(xy):
            ij = self.index(xy)
            np.add.at(out, (ij[:, 0], ij[:, 1]), 1.0)
        return out

    def index(self, xy: np.ndarray) -> np.ndarray:
        rc = np.floor((xy - self.origin) / self.pixel).astype(int)[:, ::-1]
        return np.clip(rc, 0, np.array(self.shape) - 1)

    def lookup(self, raster: np.ndarray, xy: np.ndarray) -> np.ndarray:
        if not len(xy):
            return np.zeros(0, bool)
        ij = self.index(xy)
        return raster[ij[:, 0], ij[:, 1]]

    def distance_to(self, geom) -> np.ndarray:
        near = np.ones(self.shape, bool)
        ij = self.index(shapely.get_coordinates(shapely.segmentize(geom, self.pixel / 2)))
        near[ij[:, 0], ij[:, 1]] = False
        return ndimage.distance_transform_edt(near) * self.pixel


def til_finding(result: TilResult | None, *, source: str, reason: str | None = None) -> Finding:
    """The TIL line of the draft."""
    if result is None:
        return not_assessed(TILS, reason or "no invasive tumour", source=source)
    per_mm = result.per_mm_base
    display = result.grade + ("" if per_mm is None else f" ({per_mm:.0f} lymphocytes per mm of tumour base)")
    return Finding(TILS, result.grade, display, source, details={
        "lymphocytes_per_mm_base": None if per_mm is None else round(per_mm, 1),
        "lymphocytes_in_invasive_tumour": result.lymphocytes,
        "tumour_cells": result.tumour_cells,
        "infiltrated_fraction": round(result.coverage, 3),
        "base_infiltrated_fraction": round(result.base_coverage, 3),
        "base_length_mm": round(result.base_length_um / 1000.0, 3),
    })
