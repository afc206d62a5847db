"""Surgical margins: tumour-to-edge clearance in millimetres, by ink colour.

``assess_margins(results_dir, mpp=...)`` loads tissue (with ink), the tissue map
(``regions.geojson``: where the epidermis lies, and the tumour) and the lesion from a results
folder and computes the clearances; :mod:`.report` writes ``margins.json``,
``margins.geojson``, ``margin_report.html`` and ``margin_report.pdf``. An uninked edge along
the epidermis is the epidermal surface: drawn and named, never a margin (unless the
config's ``surface_is_margin``).
"""

from wsi_pipeline.report.margins.compute import MarginAssessment, compute_margins, format_mm
from wsi_pipeline.report.margins.config import MarginConfig, load_margin_config
from wsi_pipeline.report.margins.edges import EdgeSegment, load_tissue, split_edges
from wsi_pipeline.report.margins.lesion import Lesion, find_lesion, propose_lesion

__all__ = [
    "EdgeSegment",
    "Lesion",
    "MarginAssessment",
    "MarginConfig",
    "assess_margins",
    "compute_margins",
    "find_lesion",
    "format_mm",
    "load_margin_config",
    "load_tissue",
    "propose_lesion",
    "split_edges",
]


def assess_margins(results_dir, *, mpp, config=None, lesion_file=None, frame_px=None,
                   tissue_map=False) -> MarginAssessment:
    """Tissue, ink, tissue map and lesion from ``results_dir`` -> :class:`MarginAssessment` (µm).

    frame_px : ``(x, y, width, height)`` of the scanned area in level-0 pixels (the slide's
    bounds); tissue edges on its border are not margins (the tissue was cut by the scan).
    tissue_map : a loaded :class:`~wsi_pipeline.report.tissue_map.TissueMap`, ``None`` for
    none, or ``False`` (default) to read ``regions.geojson`` from ``results_dir``.
    """
    from pathlib import Path

    from shapely.geometry import box

    from wsi_pipeline.report.tissue_map import load_tissue_map

    config = config or MarginConfig()
    if tissue_map is False:
        tissue_map = load_tissue_map(results_dir, mpp=mpp)
    pieces, inks = load_tissue(Path(results_dir) / "tissue.geojson", mpp=mpp)
    frame = None
    if frame_px is not None:
        x, y, w, h = frame_px
        frame = box(x * mpp[0], y * mpp[1], (x + w) * mpp[0], (y + h) * mpp[1])
    epidermis = None if tissue_map is None else tissue_map.epidermis
    lesion = find_lesion(results_dir, mpp=mpp, lesion_file=lesion_file, proposal=config.proposal,
                         tissue_map=tissue_map)
    import shapely

    tumour = shapely.union_all(list(lesion.foci)) if lesion.found else None
    # ink colour decided every 10 µm at most: where an ink stops is exact to 5 µm
    segments = split_edges(pieces, inks, ink_distance_um=config.ink_distance_um,
                           step_um=min(config.profile_step_um, 10.0),
                           frame=frame, epidermis=epidermis, surface_um=config.surface_distance_um, tumour=tumour,
                           ulcer_depth_um=config.ulcer_depth_um)
    surface = "no tissue map" if tissue_map is None else (
        "no epidermis in the tissue map" if epidermis is None else tissue_map.description)
    return compute_margins(pieces, segments, lesion, config=config, surface_from=surface,
                           surface_known=epidermis is not None)
