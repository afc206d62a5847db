"""StarDist2D in torch: official weights layout, stardist's own post-processing.

``load_stardist_model(path, device=...)`` opens a stardist model folder (config.json,
thresholds.json, weights_best.h5) as a :class:`~detectors.base.Detector`.
"""

from detectors.stardist.config import StarDistConfig, Thresholds, read_model_folder, write_model_folder
from detectors.stardist.detector import StarDistDetector, load_stardist_model, load_stardist_net
from detectors.stardist.normalize import Percentiles, compute_percentiles, slide_percentiles
from detectors.stardist.unet import StarDistNet

__all__ = [
    "Percentiles",
    "StarDistConfig",
    "StarDistDetector",
    "StarDistNet",
    "Thresholds",
    "compute_percentiles",
    "load_stardist_model",
    "load_stardist_net",
    "read_model_folder",
    "slide_percentiles",
    "write_model_folder",
]
