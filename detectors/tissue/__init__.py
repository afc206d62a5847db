"""Tissue vs glass, and surgical ink on the tissue edge, at low resolution in torch.

Use :func:`detect_tissue` on a whole slide; :class:`TissueDetector` is the tile detector.
"""

from detectors.tissue.detector import InkRegion, TissueDetector, TissueResult, detect_tissue, read_thumbnail
from detectors.tissue.ink import INK_COLOURS, INK_RGB
from detectors.tissue.segment import TissueParams

__all__ = [
    "INK_COLOURS", "INK_RGB", "InkRegion", "TissueDetector", "TissueParams", "TissueResult",
    "detect_tissue", "read_thumbnail",
]
