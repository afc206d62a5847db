"""Pixels to objects: the Detector contract, tissue, nuclei, mitosis; device selection."""

from detectors.base import Detector, DetectorSpec, Instances
from detectors.device import inference_context, select_device

__all__ = ["Detector", "DetectorSpec", "Instances", "inference_context", "select_device"]
