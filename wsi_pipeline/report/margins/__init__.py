"""Surgical margins: tumour-to-edge clearance in millimetres, by ink colour.

``assess_margins(results_dir, mpp=...)`` loads tissue (with ink) and the lesion from a
results folder and computes the clearances; :mod:`.report` writes ``margins.json``,
``margins.geojson``, ``margin_report.html`` and ``margin_report.pdf``.
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


def assess_margins(results_dir, *, mpp, config=None, lesion_file=None, frame_px=None) -> MarginAssessment:
    """Tissue, ink and lesion from ``results_dir`` -> :class:`MarginAssessment` (µm).

    frame_px : ``(x, y, width, height)`` of the scanned area in level-0 pixels (the slide's
    bounds); tissue edges on its border are not margins (the tissue was cut by the scan).
    """
    from pathlib import Path

    from shapely.geometry import box

    config = config or MarginConfig()
    pieces, inks = load_tissue(Path(results_dir) / "tissue.geojson", mpp=mpp)
    frame = None
    if frame_px is not None:
        x, y, w, h = frame_px
        frame = box(x * mpp[0], y * mpp[1], (x + w) * mpp[0], (y + h) * mpp[1])
    segments = split_edges(pieces, inks, ink_distance_um=config.ink_distance_um, step_um=config.profile_step_um,
                           frame=frame)
    lesion = find_lesion(results_dir, mpp=mpp, lesion_file=lesion_file, proposal=config.proposal)
    return compute_margins(pieces, segments, lesion, config=config)
