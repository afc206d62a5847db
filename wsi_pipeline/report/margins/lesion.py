"""The lesion: drawn ``Tumor`` annotations, a tissue map's ``Tumor``, or (opt-in) a proposal.

Priority (the first that has a tumour wins; the report names it):

1. ``--lesion FILE``: features classified Tumor (when it holds none, all its polygons,
   since the user named the file as the lesion); a file without polygons is an error.
2. ``annotations.geojson`` in the results folder: features classified Tumor (drawn).
3. ``regions.geojson``: the tissue map's ``Tumor``: from a trained tissue model
   (``kind`` "model") or the weight-free map (``kind`` "proposed", review required). A map
   that finds no tumour is the answer: "no tumour found".
4. Only without a tissue map and only when ``proposal.enabled`` (off by default): a
   proposal from nuclear density and size (it takes dense epidermis for tumour).

Epidermis is never lesion unless the map calls it tumour. Geometry is returned in µm.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import shapely
from scipy import ndimage
from shapely.geometry import Polygon

from tiling.errors import InputError
from wsi_pipeline.report.margins._io import read_features
from wsi_pipeline.report.margins._units import to_um
from wsi_pipeline.report.margins.config import ProposalConfig
from wsi_pipeline.report.margins.edges import polygons_of

if TYPE_CHECKING:
    from wsi_pipeline.report.tissue_map import TissueMap

TUMOR = "Tumor"
PROPOSED = "Tumor (proposed, review required)"
_TUMOUR_NAMES = {"tumor", "tumour"}
LESION_FILE, DRAWN_FILE, TISSUE_MODEL, TISSUE_MAP, TRUTH_MAP, PROPOSAL, NONE = (
    "lesion file", "annotations.geojson", "tissue model", "tissue map", "truth map", "proposal", "none")
KINDS = {LESION_FILE: "drawn", DRAWN_FILE: "drawn", TISSUE_MODEL: "model", TISSUE_MAP: "proposed",
         TRUTH_MAP: "drawn", PROPOSAL: "proposed", NONE: "none"}
DESCRIPTIONS = {
    LESION_FILE: "the tumour outline supplied (--lesion)",
    DRAWN_FILE: "the Tumor annotation drawn on the slide (annotations.geojson)",
    TISSUE_MODEL: "the Tumor region of a trained tissue model (regions.geojson)",
    TRUTH_MAP: "the Tumor region of a ground-truth map (regions.geojson)",
    NONE: "no tumour outline",
}
#: the proposed outlines' sources: (where from, caveat); the description adds "proposed, review required"
PROPOSED_FROM = {
    TISSUE_MAP: ("the Tumor region of the weight-free tissue map", ""),
    PROPOSAL: ("a proposal from nuclear density and size", "may include epidermis"),
}


@dataclass(frozen=True)
class Lesion:
    """Lesion foci in µm. ``source``: one of "lesion file", "annotations.geojson", "tissue
    model", "tissue map", "proposal", "none"; ``searched``: what was looked at when none was
    found (for the report)."""

    foci: tuple[Polygon, ...]
    source: str
    label: str
    searched: tuple[str, ...] = ()

    @property
    def found(self) -> bool:
        return bool(self.foci)

    @property
    def kind(self) -> str:
        """"drawn" | "model" | "proposed" | "none"."""
        return KINDS.get(self.source, "proposed")

    @property
    def proposed(self) -> bool:
        return self.kind == "proposed"

    @property
    def description(self) -> str:
        if self.source in PROPOSED_FROM:
            where, caveat = PROPOSED_FROM[self.source]
            return f"{where} (proposed, review required{'; ' + caveat if caveat else ''})"
        return DESCRIPTIONS.get(self.source, self.source)

    @property
    def note(self) -> str:
        """The line under a report's headline: where the outline comes from, and for a
        proposed one that it must be reviewed ("" when there is no lesion)."""
        if not self.found:
            return ""
        if self.proposed:
            where = "; ".join(x for x in PROPOSED_FROM.get(self.source, (self.description,)) if x)
            return f"Lesion outline PROPOSED by the software ({where}): review it before signing."
        return f"Lesion outline: {self.description}."


def is_tumour(classification: str | None) -> bool:
    """``Tumor`` / ``Tumour`` (any case); a proposal label counts too."""
    name = (classification or "").strip().lower()
    return name in _TUMOUR_NAMES or name.startswith("tumor (proposed") or name.startswith("tumour (proposed")


def find_lesion(
    results_dir: str | Path,
    *,
    mpp: tuple[float, float],
    lesion_file: str | Path | None = None,
    proposal: ProposalConfig | None = None,
    tissue_map: TissueMap | None = None,
) -> Lesion:
    """Find the lesion for a results folder (see module docstring for the order).

    tissue_map : the results folder's map (:func:`~wsi_pipeline.report.tissue_map.load_tissue_map`).
    Raises :class:`InputError` for a ``lesion_file`` without polygons.
    """
    results_dir = Path(results_dir)
    if lesion_file is not None:
        feats = [f for f in read_features(lesion_file) if polygons_of(f.geometry)]
        if not feats:
            raise InputError(lesion_file, "holds no polygons (a lesion file needs the tumour outlined as polygons)")
        tumour = [f for f in feats if is_tumour(f.classification)] or feats
        return _lesion([f.geometry for f in tumour], mpp, source=LESION_FILE, label=TUMOR)
    searched = []
    drawn = results_dir / "annotations.geojson"
    if drawn.is_file():
        tumour = [f.geometry for f in read_features(drawn) if is_tumour(f.classification)]
        lesion = _lesion(tumour, mpp, source=DRAWN_FILE, label=TUMOR)
        if lesion.found:
            return lesion
        searched.append("annotations.geojson (no Tumor)")
    if tissue_map is not None:
        foci = tuple(polygons_of(tissue_map.tumour))
        if foci:
            source = {"model": TISSUE_MODEL, "drawn": TRUTH_MAP}.get(tissue_map.source, TISSUE_MAP)
            return Lesion(foci, source, PROPOSED if source == TISSUE_MAP else TUMOR)
        return Lesion((), NONE, TUMOR, tuple(searched + [f"regions.geojson ({tissue_map.description}: no Tumor)"]))
    proposal = proposal or ProposalConfig()
    nuclei = results_dir / "nuclei.geojson.gz"
    if proposal.enabled and nuclei.is_file():
        foci = propose_lesion(nuclei, mpp=mpp, config=proposal, exclude=_ink(results_dir))
        if foci:
            return Lesion(tuple(foci), PROPOSAL, PROPOSED)
        searched.append("nuclear density proposal (none)")
    else:
        searched.append("no tissue map (regions.geojson)")
    return Lesion((), NONE, TUMOR, tuple(searched))


def _lesion(geometries: list, mpp, *, source: str, label: str) -> Lesion:
    polys = [p for g in geometries for p in polygons_of(g)]
    if not polys:
        return Lesion((), NONE, label)
    merged = to_um(shapely.union_all(polys), mpp)
    return Lesion(tuple(polygons_of(merged)), source, label)


def _ink(results_dir: Path):
    """Union of the ink regions in ``tissue.geojson`` (level-0 px), or ``None``."""
    path = results_dir / "tissue.geojson"
    if not path.is_file():
        return None
    inks = [f.geometry for f in read_features(path) if (f.classification or "").startswith("Ink") and f.geometry is not None]
    return shapely.union_all(inks) if inks else None


def propose_lesion(nuclei_path: str | Path, *, mpp: tuple[float, float], config: ProposalConfig,
                   exclude=None) -> list[Polygon]:
    """Regions of high nuclear density and large mean nuclear area, in µm, largest first.

    exclude : level-0 geometry (the ink regions) whose nuclei are ignored: ink on the
        tissue edge is dark and blob-like and would otherwise look like a dense lesion.

    Nucleus centroids and areas are binned on a ``grid_um`` grid, smoothed, thresholded
    (density >= ``min_density_per_mm2`` and mean area >= ``min_mean_area_um2``, grown by
    hysteresis down to half that density), opened, closed and hole-filled; regions under
    ``min_region_mm2`` are dropped.
    """
    geoms = [f.geometry for f in read_features(nuclei_path) if f.geometry is not None and not f.geometry.is_empty]
    if geoms and exclude is not None and not exclude.is_empty:
        arr = np.asarray(geoms, dtype=object)
        geoms = list(arr[~shapely.contains_xy(exclude, shapely.get_coordinates(shapely.centroid(arr)))])
    if not geoms:
        return []
    geoms_um = to_um(np.asarray(geoms, dtype=object), mpp)
    centroids = shapely.get_coordinates(shapely.centroid(geoms_um))
    areas = shapely.area(geoms_um)
    mask, origin = nuclear_mask(centroids, areas, config=config)
    return mask_to_polygons(mask, origin=origin, cell_um=config.grid_um, min_area_um2=config.min_region_mm2 * 1e6)


def nuclear_mask(centroids: np.ndarray, areas: np.ndarray, *, config: ProposalConfig) -> tuple[np.ndarray, np.ndarray]:
    """Boolean ``(rows, cols)`` grid of cells dense with large nuclei, and its µm origin.

    centroids : ``(N, 2)`` µm; areas : ``(N,)`` µm².
    """
    g = config.grid_um
    origin = np.floor(centroids.min(axis=0) / g) * g - 2 * g
    ij = np.floor((centroids - origin) / g).astype(int)
    shape = (ij[:, 1].max() + 3, ij[:, 0].max() + 3)
    counts = np.zeros(shape)
    area_sum = np.zeros(shape)
    np.add.at(counts, (ij[:, 1], ij[:, 0]), 1.0)
    np.add.at(area_sum, (ij[:, 1], ij[:, 0]), areas)
    if config.smooth_cells > 0:
        counts = ndimage.gaussian_filter(counts, config.smooth_cells)
        area_sum = ndimage.gaussian_filter(area_sum, config.smooth_cells)
    density = counts / (g * g / 1e6)
    mean_area = area_sum / np.maximum(counts, 1e-9)
    large = mean_area >= config.min_mean_area_um2
    seeds = (density >= config.min_density_per_mm2) & large
    # hysteresis: grow the seeds to half the density, so smoothing does not shrink the border
    # (a shrunken lesion would overstate the clearance, the unsafe direction)
    grown, _ = ndimage.label((density >= config.min_density_per_mm2 / 2) & large)
    mask = np.isin(grown, np.unique(grown[seeds & (grown > 0)]))
    mask = ndimage.binary_opening(mask)
    mask = ndimage.binary_closing(mask, iterations=2)
    return ndimage.binary_fill_holes(mask), origin


def mask_to_polygons(mask: np.ndarray, *, origin: np.ndarray, cell_um: float, min_area_um2: float) -> list[Polygon]:
    """Outlines of the mask's connected regions (holes filled) as polygons in µm, largest first.

    mask : ``(rows, cols)`` bool, cell ``(r, c)`` covering ``origin + (c, r) * cell_um`` to
    ``+ cell_um``. Outlines follow the cell borders (marching squares at level 0.5).
    """
    from skimage.measure import find_contours

    labels, _ = ndimage.label(mask)
    out = []
    for k, window in enumerate(ndimage.find_objects(labels), start=1):
        if window is None:
            continue
        region = np.pad(ndimage.binary_fill_holes(labels[window] == k), 1)
        ring = max(find_contours(region.astype(np.float32), 0.5), key=len)  # (row, col)
        offset = np.array([window[1].start, window[0].start]) - 1 + 0.5
        poly = shapely.make_valid(Polygon((ring[:, ::-1] + offset) * cell_um + origin))
        out += [p.simplify(cell_um / 10) for p in polygons_of(poly) if p.area >= min_area_um2]
    return sorted(out, key=lambda p: -p.area)
