"""What the whole-slide stage calls: a :class:`MitosisScorer` (trained CNN or heuristic).

A scorer has ``validated`` (True only for a model folder whose ``config.json`` says so, with
its evidence; never for the heuristic), ``description`` (one
line for logs and summaries), ``crop_size`` (px), ``mpp`` (µm/px of the crops),
``threshold`` and ``score((B, S, S, 3) uint8) -> (B,) float32`` probability.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from detectors.device import inference_context, select_device
from detectors.mitosis.classifier import mitosis_probability, to_input
from detectors.mitosis.heuristic import HeuristicScorer
from detectors.mitosis.model_io import load_model_folder

#: the model shipped with the package and used when ``model="default"``
DEFAULT_MODEL = Path(__file__).resolve().parents[2] / "models" / "mitosis-midog21-cnn"


class MitosisScorer(Protocol):
    validated: bool
    description: str
    crop_size: int
    mpp: float
    threshold: float

    def score(self, crops: np.ndarray) -> np.ndarray: ...


class CNNScorer:
    """A trained :class:`~detectors.mitosis.classifier.MitosisNet` from a model folder.

    ``validated`` comes from the folder's ``config.json`` (false unless its evidence is
    written there); an unvalidated model's detections are candidates, not mitoses.
    """

    def __init__(self, folder: str | Path, *, device: str | torch.device = "auto", threshold: float | None = None) -> None:
        self.device = device if isinstance(device, torch.device) else select_device(device)
        self.folder = Path(folder)
        self.net, self.config, self.card = load_model_folder(folder, device=self.device)
        self.crop_size, self.mpp = self.config.crop_size, self.config.mpp
        self.threshold = float(self.config.threshold if threshold is None else threshold)
        self.classes = self.config.classes
        self.validated = bool(self.config.validated)
        metrics = self.card.get("metrics", {}).get("test", {})
        extra = ""
        if "recall" in metrics:
            extra = f"; hold-out recall {metrics['recall']:.2f}"
        if metrics.get("fp_per_mm2") is not None:
            extra += f", {metrics['fp_per_mm2']:.1f} FP/mm²"
        status = "validated" if self.validated else "NOT VALIDATED for a rate"
        self.description = (f"trained mitosis CNN {self.folder.name} ({'/'.join(self.classes[1:])} vs imposter, "
                            f"{self.crop_size} px at {self.mpp} µm/px, threshold {self.threshold:.2f}{extra}; {status})")

    def class_probabilities(self, crops: np.ndarray) -> np.ndarray:
        """(B, S, S, 3) uint8 -> (B, n_classes) float32 softmax."""
        crops = _check(crops, self.crop_size)
        if len(crops) == 0:
            return np.empty((0, len(self.classes)), np.float32)
        with inference_context(self.device):
            logits = self.net(to_input(torch.from_numpy(np.ascontiguousarray(crops)).to(self.device)))
            return torch.softmax(logits.float(), 1).cpu().numpy()

    def score(self, crops: np.ndarray) -> np.ndarray:
        """(B, S, S, 3) uint8 -> (B,) float32 probability of a mitotic figure."""
        crops = _check(crops, self.crop_size)
        if len(crops) == 0:
            return np.empty(0, np.float32)
        with inference_context(self.device):
            logits = self.net(to_input(torch.from_numpy(np.ascontiguousarray(crops)).to(self.device)))
            return mitosis_probability(logits).float().cpu().numpy()


def _check(crops: np.ndarray, size: int) -> np.ndarray:
    crops = np.asarray(crops)
    if crops.ndim != 4 or crops.shape[-1] != 3 or crops.dtype != np.uint8 or crops.shape[1:3] != (size, size):
        raise ValueError(f"expected (B, {size}, {size}, 3) uint8 crops, got {crops.shape} {crops.dtype}")
    return crops


def load_mitosis_scorer(model: str | Path | None, *, device: str | torch.device = "auto",
                        threshold: float | None = None) -> MitosisScorer:
    """A trained scorer from the model folder ``model``; ``"default"`` for the packaged model
    when present; ``None`` (or ``"heuristic"``) for the UNVALIDATED heuristic."""
    if model is None or str(model) == "heuristic":
        dev = device if isinstance(device, torch.device) else select_device(device)
        return HeuristicScorer(device=dev, **({} if threshold is None else {"threshold": threshold}))
    if str(model) == "default":
        model = DEFAULT_MODEL
    return CNNScorer(model, device=device, threshold=threshold)
