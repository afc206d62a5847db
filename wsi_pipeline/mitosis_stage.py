"""Mitoses on one slide: candidates from the nuclei, crops scored, the hotspot, a density map.

A mitotic rate is a number people sign, so it is given only when the scorer is
**validated** (a model folder whose ``config.json`` says so, with its evidence). Otherwise
the rate is "not assessed": ``counts["mitoses_per_mm2"]`` is ``None`` and
``counts["mitotic_rate"]`` says why, no hotspot and no density map are made, and the
detections are written as ``Mitosis candidate (unvalidated)`` for review only.

Candidates are the nuclei :func:`~detectors.mitosis.candidates.select_candidates` keeps
(darkness judged against the slide's nuclei) plus the compact dark hematoxylin blobs of
:func:`blob_centres` (condensed chromatin the nuclei detector split or missed), found on
tiles over tissue at :data:`BLOB_MPP` and kept once each by the tile grid's responsibility
rule; a blob within ``BlobRule.merge_radius_um`` of a candidate nucleus adds nothing.

Writes ``mitoses.geojson`` (points, ``objectType`` detection, class ``Mitosis`` from a
validated model, ``Mitosis candidate (unvalidated)`` otherwise; the hotspot window as an
annotation when validated) and, when validated, ``mitosis_density.npy`` (mitoses per mm²
on a coarse grid, its pixel size in ``summary.json``).
"""

from __future__ import annotations

import logging
import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import shapely

from detectors.base import Instances
from wsi_pipeline.annotations import Feature, write_geojson
from wsi_pipeline.atomic import atomic_path
from wsi_pipeline.ids import stable_ids
from wsi_pipeline.mitosis_classes import HOTSPOT_CLASS, UNVALIDATED_CLASS, VALIDATED_CLASS
from wsi_pipeline.reasons import NOT_ASSESSED

log = logging.getLogger(__name__)

DENSITY_PIXEL_UM = 250.0


@dataclass
class MitosisStageResult:
    """``points``: every detection (validated mitoses or unvalidated candidates, see
    ``validated``); ``hotspot``: level-0 window, only when validated."""

    counts: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    models: dict = field(default_factory=dict)
    points: Instances | None = None
    hotspot: shapely.Polygon | None = None
    validated: bool = False


@dataclass(frozen=True)
class Hotspot:
    """Square window (level-0 pixels) with the most mitoses; ``rate`` per mm² of window."""

    box: tuple[float, float, float, float]
    count: int
    area_mm2: float

    @property
    def rate(self) -> float:
        return self.count / self.area_mm2

    @property
    def polygon(self) -> shapely.Polygon:
        return shapely.box(*self.box)


def find_hotspot(points_xy: np.ndarray, tissue_mask: np.ndarray, mask_downsample: float, *,
                 slide_mpp: float, area_mm2: float, min_tissue_fraction: float = 0.5, steps: int = 8) -> Hotspot | None:
    """The square field of ``area_mm2`` over tissue holding the most points.

    points_xy : (N, 2) level-0 (x, y). tissue_mask : (h, w) bool, ``mask_downsample``
    level-0 px per mask px. Windows are tried on a grid with a step of 1/``steps`` of
    their side; a window counts only if >= ``min_tissue_fraction`` of it is tissue.
    Ties go to the window with more tissue. ``None`` when no window qualifies.
    """
    side = math.sqrt(area_mm2) * 1000.0 / slide_mpp  # level-0 px
    h, w = tissue_mask.shape
    W, H = w * mask_downsample, h * mask_downsample
    step = side / steps
    xs = np.arange(0.0, max(W - side, 0.0) + step, step)
    ys = np.arange(0.0, max(H - side, 0.0) + step, step)
    integral = np.zeros((h + 1, w + 1), np.int64)
    integral[1:, 1:] = tissue_mask.astype(np.int64).cumsum(0).cumsum(1)
    best: tuple[int, float, float, float] | None = None
    pts = np.asarray(points_xy, float).reshape(-1, 2)
    for y in ys:
        in_row = pts[(pts[:, 1] >= y) & (pts[:, 1] < y + side)]
        for x in xs:
            frac = _fraction(integral, x, y, side, mask_downsample)
            if frac < min_tissue_fraction:
                continue
            n = int(((in_row[:, 0] >= x) & (in_row[:, 0] < x + side)).sum())
            key = (n, frac)
            if best is None or key > best[:2]:
                best = (n, frac, x, y)
    if best is None:
        return None
    n, _, x, y = best
    return Hotspot((x, y, x + side, y + side), n, area_mm2)


def _fraction(integral: np.ndarray, x: float, y: float, side: float, ds: float) -> float:
    h, w = integral.shape[0] - 1, integral.shape[1] - 1
    x0, y0 = int(np.clip(x / ds, 0, w)), int(np.clip(y / ds, 0, h))
    x1, y1 = int(np.clip(math.ceil((x + side) / ds), 0, w)), int(np.clip(math.ceil((y + side) / ds), 0, h))
    full = max(1.0, (side / ds) ** 2)
    inside = integral[y1, x1] - integral[y0, x1] - integral[y1, x0] + integral[y0, x0]
    return float(inside) / full


def density_map(points_xy: np.ndarray, size: tuple[int, int], *, slide_mpp: float,
                pixel_um: float = DENSITY_PIXEL_UM) -> np.ndarray:
    """(rows, cols) float32 mitoses per mm² on a grid of ``pixel_um`` squares."""
    px = pixel_um / slide_mpp
    cols, rows = max(1, math.ceil(size[0] / px)), max(1, math.ceil(size[1] / px))
    pts = np.asarray(points_xy, float).reshape(-1, 2)
    hist, _, _ = np.histogram2d(pts[:, 1], pts[:, 0], bins=(rows, cols), range=((0, rows * px), (0, cols * px)))
    return (hist / (pixel_um / 1000.0) ** 2).astype(np.float32)


#: resolution (µm/px) and tile size (px) of the blob search; blobs hold the same recall at
#: 0.5 µm/px as at 0.25 (bench/bench_mitosis_candidates.py) for a quarter of the pixels
BLOB_MPP = 0.5
BLOB_TILE = 1024
#: the largest blob (µm, along x or y) the tiles must see whole: the halo
BLOB_MAX_UM = 32.0


def blob_centres(slide, tissue=None, *, reference: float | None, mpp: float = BLOB_MPP, tile_size: int = BLOB_TILE,
                 rule=None, threads: int | None = None) -> np.ndarray:
    """(K, 2) level-0 (x, y) centres of the dark hematoxylin blobs of the slide
    (:func:`~detectors.mitosis.candidates.blob_candidates` on tiles read at ``mpp``; only
    tiles over ``tissue``'s mask when given). Each tile has a halo of :data:`BLOB_MAX_UM` and
    keeps the blobs whose centre lies in its core, so a blob on a tile border is found once,
    as on the untiled image. ``reference``: the slide's median nucleus hematoxylin OD.
    ``threads``: tiles read and searched at once (default: the CPU cores, at most 4)."""
    from detectors.mitosis.candidates import BlobRule, blob_candidates
    from tiling.grid import tile_grid

    rule = rule or BlobRule()
    slide_mpp = float(slide.mpp[0])
    mpp = max(mpp, slide_mpp)  # never upsample the slide
    halo = math.ceil(BLOB_MAX_UM / mpp)
    kw = {} if tissue is None else {"tissue_mask": tissue.mask, "mask_downsample": tissue.downsample}
    tiles = tile_grid(tuple(slide.dimensions), slide_mpp=slide_mpp, working_mpp=mpp, tile_size=tile_size, halo=halo,
                      max_object=halo, **kw)
    def one(t) -> np.ndarray:
        rgb = slide.read_region((int(round(t.level0_box[0])), int(round(t.level0_box[1]))), t.size, mpp=mpp)
        xy = blob_candidates(rgb, mpp=mpp, reference=reference, rule=rule)
        return (xy[t.owns(xy)] + np.asarray(t.origin, float)) * t.scale

    # decoding and the filters release the GIL: threads overlap them (results in tile order)
    threads = max(1, min(len(tiles), threads or min(4, os.cpu_count() or 1)))
    if threads == 1:
        found = [one(t) for t in tiles]
    else:
        with ThreadPoolExecutor(threads) as pool:
            found = list(pool.map(one, tiles))
    return np.concatenate([np.empty((0, 2)), *found])


def read_crops(slide, centres_xy: np.ndarray, *, size: int, mpp: float) -> np.ndarray:
    """(N, size, size, 3) uint8 crops centred on level-0 points, resampled to ``mpp``."""
    half = size / 2 * mpp / slide.mpp[0]
    out = np.empty((len(centres_xy), size, size, 3), np.uint8)
    for i, (x, y) in enumerate(centres_xy):
        out[i] = slide.read_region((int(round(x - half)), int(round(y - half))), (size, size), mpp=mpp)
    return out


def run_mitosis_stage(slide, *, job, cfg, nuclei: Instances, tissue, out_dir: Path, properties: dict,
                      scorer=None) -> MitosisStageResult:
    """Score nucleus candidates, write ``mitoses.geojson`` (and the density map when the
    scorer is validated). ``scorer``: a :class:`~detectors.mitosis.MitosisScorer`; by
    default the one ``cfg.mitosis.model`` names.

    Counts: ``mitosis_nuclei_screened`` (candidates scored: nuclei and blobs),
    ``mitosis_blobs_screened`` (of those, dark blobs away from any candidate nucleus), ``mitosis_candidates``
    (detections above the scorer's threshold, validated or not), ``mitoses`` (the same
    when validated, else ``None``), ``mitoses_validated``, ``mitoses_in_hotspot`` and
    ``mitoses_per_mm2`` (``None`` when not assessed), ``mitotic_rate`` (see
    :func:`mitotic_rate`)."""
    from detectors.mitosis import load_mitosis_scorer, select_candidates
    from detectors.mitosis.candidates import BlobRule, merge_candidates, reference_od

    if scorer is None:
        scorer = load_mitosis_scorer(cfg.mitosis.model, device=cfg.device)
    validated = bool(scorer.validated)
    res = MitosisStageResult(validated=validated)
    res.notes.append(f"mitosis: {scorer.description}")
    if not validated:
        log.warning("mitosis: the scorer is not validated; its detections are candidates for review and "
                    "the mitotic rate is not assessed")
    cand = nuclei.subset(select_candidates(nuclei)) if len(nuclei) else Instances.empty()
    centres = np.asarray(cand.centroids(), float).reshape(-1, 2)
    blobs = blob_centres(slide, tissue if tissue is not None and getattr(tissue, "mask", None) is not None else None,
                         reference=reference_od(nuclei))
    centres = merge_candidates(centres, blobs, radius=BlobRule().merge_radius_um / float(slide.mpp[0]))
    n_blobs = len(centres) - len(cand)
    probs = np.empty(0, np.float32)
    for i in range(0, len(centres), cfg.mitosis.batch_size):
        batch = read_crops(slide, centres[i : i + cfg.mitosis.batch_size], size=scorer.crop_size, mpp=scorer.mpp)
        probs = np.concatenate([probs, scorer.score(batch)])
    keep = probs >= scorer.threshold
    xy = centres[keep]
    cls = VALIDATED_CLASS if validated else UNVALIDATED_CLASS
    points = Instances(shapely.points(xy) if len(xy) else np.empty(0, object), probs[keep], [cls] * int(keep.sum()))
    hotspot = None
    if validated and tissue.polygons:
        hotspot = find_hotspot(xy, tissue.mask, tissue.downsample, slide_mpp=slide.mpp[0],
                               area_mm2=cfg.mitosis.hotspot_area_mm2)
    _write(out_dir, job.slide_id, points, hotspot, cls, properties)
    if validated:
        dens = density_map(xy, slide.dimensions, slide_mpp=slide.mpp[0])
        with atomic_path(out_dir / "mitosis_density.npy") as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, dens)
    res.points, res.hotspot = points, None if hotspot is None else hotspot.polygon
    weights = getattr(getattr(scorer, "config", None), "weights_sha256", None) or None
    res.models = {"mitosis": {"name": scorer.description, "validated": validated, "weights_sha256": weights}}
    rate = mitotic_rate(hotspot, validated=validated, candidates=len(points), area_mm2=cfg.mitosis.hotspot_area_mm2)
    if rate["value"] is None:
        res.notes.append(f"mitotic rate: {rate['reason']}")
    res.counts.update({
        "mitosis_nuclei_screened": len(centres),
        "mitosis_blobs_screened": n_blobs,
        "mitosis_candidates": len(points),
        "mitoses": len(points) if validated else None,
        "mitoses_validated": validated,
        "mitosis_model": scorer.description,
        "hotspot_area_mm2": cfg.mitosis.hotspot_area_mm2,
        "mitoses_in_hotspot": None if hotspot is None else hotspot.count,
        "mitoses_per_mm2": rate["value"],
        "mitotic_rate": rate,
        **({"mitosis_density_pixel_um": DENSITY_PIXEL_UM} if validated else {}),
    })
    return res


def mitotic_rate(hotspot: Hotspot | None, *, validated: bool, candidates: int, area_mm2: float) -> dict:
    """``{"value": mitoses per mm² | None, "area_mm2", "assessed": bool, "reason": str | None}``:
    a value only from a validated scorer's hotspot; otherwise the reason it is not assessed."""
    if not validated:
        # no parentheses: the reports put the reason in some ("not assessed (...)")
        many = f"{candidates} unvalidated candidates in mitoses.geojson are" if candidates != 1 else \
            "1 unvalidated candidate in mitoses.geojson is"
        reason = f"no validated mitosis model; {many} for review only; --mitosis-model takes a validated model folder"
    elif hotspot is None:
        reason = f"no field of {area_mm2:g} mm² lies over enough tissue for a hotspot count"
    else:
        return {"value": round(hotspot.rate, 3), "area_mm2": area_mm2, "assessed": True, "reason": None}
    return {"value": None, "area_mm2": area_mm2, "assessed": False, "reason": f"{NOT_ASSESSED}: {reason}"}


def _write(out_dir: Path, slide_id: str, points: Instances, hotspot: Hotspot | None, cls: str, props: dict) -> None:

    feats = []
    for geom, p, fid in zip(points.geometry, points.score, stable_ids(slide_id, "mitosis", points.geometry)):
        feats.append(Feature(geom, "detection", cls, None, {"Probability": round(float(p), 4)}, fid))
    if hotspot is not None:
        name = f"Hotspot: {hotspot.count} mitoses in {hotspot.area_mm2:g} mm² ({hotspot.rate:.1f}/mm²)"
        feats.append(Feature(hotspot.polygon, "annotation", HOTSPOT_CLASS, (255, 140, 0),
                             {"Mitoses": hotspot.count, "Area mm^2": hotspot.area_mm2, "Mitoses per mm^2": hotspot.rate},
                             next(stable_ids(slide_id, "hotspot", np.array([hotspot.polygon], dtype=object))), name=name))
    write_geojson(out_dir / "mitoses.geojson", feats, properties=props)
