"""Whole-slide tissue detection (:func:`detect_tissue`) and the tile :class:`TissueDetector`.

The whole-slide function is the one to use: it reads the slide once at low resolution,
learns the glass colour and threshold from the *whole* slide's histogram, and returns a
:class:`TissueResult` in level-0 coordinates. The tile detector implements the
:class:`~detectors.base.Detector` contract for low-resolution tiles (per-tile threshold
unless one is given, e.g. the whole slide's).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import shapely
import torch
from shapely.geometry import Polygon

from detectors.base import Detector, DetectorSpec, Instances
from detectors.device import inference_context, select_device
from detectors.tissue.features import glass_colour, to_tensor
from detectors.tissue.ink import INK_COLOURS
from detectors.tissue.segment import Masks, TissueParams, segment, working_mpp
from detectors.tissue.stain import StainCheck, check_he
from detectors.tissue.vectorize import mask_to_polygons
from tiling.slide import Slide


@dataclass(frozen=True)
class InkRegion:
    """One inked stretch: ``polygon`` in level-0 ``(x, y)`` pixels, ``colour`` in INK_COLOURS."""

    polygon: Polygon
    colour: str
    area_mm2: float


@dataclass
class TissueResult:
    """Tissue found on one slide.

    mask : (h, w) bool tissue mask at ``mpp`` µm/px; ``downsample`` level-0 px per mask px.
    ink_mask : (h, w) uint8 ink class ids (0 none, i -> INK_COLOURS[i-1]).
    polygons : tissue polygons in level-0 (x, y) pixels, holes kept, simplified.
    areas_mm2 : (len(polygons),) areas.
    inks : ink regions (polygon + colour name).
    threshold, glass : what was learned from the slide's histogram.
    stain : whether the tissue looks H&E-stained (:func:`detectors.tissue.stain.check_he`).
    """

    mask: np.ndarray
    ink_mask: np.ndarray
    mpp: float
    downsample: float
    polygons: list[Polygon]
    areas_mm2: np.ndarray
    inks: list[InkRegion]
    threshold: float
    glass: tuple[float, float, float]
    params: TissueParams = field(default_factory=TissueParams)
    stain: StainCheck | None = None

    @property
    def total_area_mm2(self) -> float:
        return float(np.sum(self.areas_mm2))


def read_thumbnail(slide: Slide, mpp: float, *, strip: int = 1024) -> np.ndarray:
    """The whole slide at ``mpp`` µm/px: ``(h, w, 3)`` uint8, read in strips of ``strip`` rows."""
    w0, h0 = slide.dimensions
    ds = mpp / slide.mpp[0]
    w, h = max(1, math.ceil(w0 / ds)), max(1, math.ceil(h0 / ds))
    out = np.empty((h, w, 3), np.uint8)
    for y in range(0, h, strip):
        rows = min(strip, h - y)
        out[y : y + rows] = slide.read_region((0, int(round(y * ds))), (w, rows), mpp=mpp)
    return out


def detect_tissue(
    slide: Slide,
    *,
    mpp: float = 8.0,
    device: str | torch.device = "auto",
    min_area_mm2: float | None = None,
    simplify_um: float = 8.0,
    params: TissueParams | None = None,
) -> TissueResult:
    """Find tissue and surgical ink on ``slide``.

    mpp : working resolution (µm/px); small slides are read finer so the mask keeps at
        least 1024 px on its long side. device : "auto" | "cpu" | "cuda" | "mps".
    min_area_mm2 : drop tissue pieces smaller than this (default ``params.min_area_mm2``).
    simplify_um : polygon simplification tolerance in µm.
    """
    params = params or TissueParams()
    if min_area_mm2 is not None:
        params = TissueParams(**{**params.to_dict(), "min_area_mm2": float(min_area_mm2)})
    dev = device if isinstance(device, torch.device) else select_device(device)
    slide_mpp = float(slide.mpp[0])
    work = working_mpp(slide_mpp, slide.dimensions, mpp=mpp)
    thumb = read_thumbnail(slide, work)
    with inference_context(dev):
        rgb = to_tensor(thumb, dev)
        glass = glass_colour(rgb)
        masks = segment(rgb.float(), mpp=work, params=params, glass=glass)[0]
    ds = work / slide_mpp
    stain = check_he(thumb, np.asarray(masks.tissue, bool) & (np.asarray(masks.ink) == 0))
    return _result(masks, work, ds, slide_mpp, tuple(float(v) for v in glass[0].cpu()), params, simplify_um, stain)


def _result(masks: Masks, work: float, ds: float, slide_mpp: float, glass, params, simplify_um,
            stain: StainCheck | None = None) -> TissueResult:
    tol = simplify_um / slide_mpp
    to_mm2 = (slide_mpp * slide_mpp) / 1e6
    min_tissue = params.min_area_mm2 / to_mm2
    polys = [p for p in polygons_level0(masks.tissue, ds, tol) if p.area >= min_tissue]
    inks = []
    for cid in np.unique(masks.ink):
        if cid == 0:
            continue
        for p in polygons_level0(masks.ink == cid, ds, tol):
            if p.area < params.min_ink_area_mm2 / to_mm2:
                continue  # slivers where 8-connected pixels meet only at a corner
            inks.append(InkRegion(p, INK_COLOURS[cid - 1], p.area * to_mm2))
    return TissueResult(
        mask=masks.tissue, ink_mask=masks.ink, mpp=work, downsample=ds, polygons=polys,
        areas_mm2=np.array([p.area * to_mm2 for p in polys]), inks=inks,
        threshold=masks.threshold, glass=glass, params=params, stain=stain,
    )


def polygons_level0(mask: np.ndarray, downsample: float, tolerance: float) -> list[Polygon]:
    """Polygons of ``mask`` scaled by ``downsample`` and simplified to ``tolerance`` (level-0 px)."""
    out = []
    for p in mask_to_polygons(mask):
        q = shapely.simplify(shapely.transform(p, lambda c: c * downsample), tolerance, preserve_topology=True)
        if isinstance(q, Polygon) and not q.is_empty and q.is_valid:
            out.append(q)
        elif not q.is_empty:
            out.extend(g for g in getattr(shapely.make_valid(q), "geoms", [q]) if isinstance(g, Polygon))
    return out


class TissueDetector(Detector):
    """Tissue and ink on low-resolution tiles (8 µm/px): instances labelled ``Tissue`` and
    ``Ink: <colour>``, clipped to the tile.

    threshold / glass : the whole slide's (from :func:`detect_tissue`) for consistent tiles;
    learned per tile when ``None``.
    """

    def __init__(self, *, device="auto", mpp: float = 8.0, tile_size: int = 512, halo: int = 32,
                 threshold: float | None = None, glass: tuple[float, float, float] | None = None,
                 params: TissueParams | None = None) -> None:
        super().__init__(device=device)
        self.spec = DetectorSpec(
            "tissue", mpp, tile_size, halo, max_object_size=tile_size,
            classes=("Tissue",) + tuple(f"Ink: {c}" for c in INK_COLOURS),
        )
        self.threshold = threshold
        self.glass = glass
        self.params = params or TissueParams()

    def _predict_batch(self, tiles: np.ndarray) -> list[Instances]:
        with inference_context(self.device):
            rgb = to_tensor(tiles, self.device).float()
            glass = None if self.glass is None else torch.tensor(self.glass, device=self.device)
            masks = segment(rgb, mpp=self.spec.mpp, params=self.params, threshold=self.threshold, glass=glass)
        return [self._instances(m) for m in masks]

    def _instances(self, m: Masks) -> Instances:
        to_mm2 = self.spec.mpp ** 2 / 1e6
        geoms, labels, scores = [], [], []
        for p in mask_to_polygons(m.tissue):
            geoms.append(p); labels.append("Tissue"); scores.append(m.support)
        for cid in np.unique(m.ink):
            if cid:
                for p in mask_to_polygons(m.ink == cid):
                    geoms.append(p); labels.append(f"Ink: {INK_COLOURS[cid - 1]}"); scores.append(1.0)
        area = np.array([g.area * to_mm2 for g in geoms])
        return Instances(np.array(geoms, dtype=object), np.array(scores), np.array(labels, dtype=object),
                         {"Area mm^2": area})
