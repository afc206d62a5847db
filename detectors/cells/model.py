"""A trained cell-type classifier: the feature table -> a small MLP (one hidden ReLU layer).

Model folder (written by ``wsi-pipeline train cells``):

``config.json``   {"format": "wsi-pipeline-cell-model", "version": 1, "classes": [...],
                   "features": [...], "hidden": 32, "mean": [...], "std": [...],
                   "trained_classes": [...], ...}
``weights.npz``   the MLP's arrays ``w0 (F, H), b0 (H,), w1 (H, C), b1 (C,)`` (plain numpy)
``model_card.md`` what it was trained on, how well it did, what it is not for

Inference is plain numpy (no torch needed at run time; a million nuclei take about a second).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from detectors.cells.features import NAMES
from detectors.cells.types import CLASSES
from tiling.errors import InputError

FORMAT = "wsi-pipeline-cell-model"
VERSION = 1
WEIGHT_KEYS = ("w0", "b0", "w1", "b1")


@dataclass(frozen=True)
class CellModel:
    """A loaded model: ``config`` (see the module docstring) and the MLP arrays."""

    config: dict
    weights: dict[str, np.ndarray]
    folder: str | None = None

    @property
    def features(self) -> list[str]:
        return list(self.config["features"])

    def logits(self, x: np.ndarray) -> np.ndarray:
        """(N, F) features in :attr:`features` order -> (N, len(CLASSES)) logits."""
        mean = np.asarray(self.config["mean"], np.float32)
        std = np.asarray(self.config["std"], np.float32)
        z = (np.asarray(x, np.float32) - mean) / std
        w = self.weights
        h = np.maximum(z @ w["w0"] + w["b0"], 0)
        return h @ w["w1"] + w["b1"]

    def predict(self, features: dict[str, np.ndarray]) -> np.ndarray:
        """(N,) int64 class indices for a feature table (name -> (N,) array)."""
        x = np.column_stack([features[k] for k in self.features]).astype(np.float32)
        if len(x) == 0:
            return np.empty(0, np.int64)
        out = np.empty(len(x), np.int64)
        for s in range(0, len(x), 262144):
            out[s:s + 262144] = self.logits(x[s:s + 262144]).argmax(1)
        return out

    def save(self, folder: str | Path) -> None:
        """Write ``config.json`` and ``weights.npz`` into ``folder`` (atomically, each)."""
        from wsi_pipeline.atomic import write_bytes_atomic, write_text_atomic

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        np.savez(buf, **{k: np.asarray(self.weights[k], np.float32) for k in WEIGHT_KEYS})
        write_bytes_atomic(folder / "weights.npz", buf.getvalue())
        write_text_atomic(folder / "config.json", json.dumps(self.config, indent=2))


def _read_config(folder: Path) -> dict:
    cfg_path = folder / "config.json"
    if not folder.is_dir():
        raise InputError(folder, "cell model folder not found")
    if not cfg_path.is_file():
        raise InputError(folder, "not a cell model folder (no config.json); train one with 'wsi-pipeline train cells'")
    try:
        cfg = json.loads(cfg_path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(folder, f"config.json is not valid JSON ({exc.__class__.__name__})") from None
    if not isinstance(cfg, dict) or cfg.get("format") != FORMAT:
        got = cfg.get("format") if isinstance(cfg, dict) else None
        raise InputError(folder, f"config.json is not a cell model (format {got!r}, expected {FORMAT!r})")
    if cfg.get("version") != VERSION:
        raise InputError(folder, f"cell model version {cfg.get('version')!r}; this wsi-pipeline reads version {VERSION}; retrain it")
    if list(cfg.get("classes", [])) != list(CLASSES):
        raise InputError(folder, f"cell model classes {cfg.get('classes')} differ from {list(CLASSES)}")
    unknown = [k for k in cfg.get("features", []) if k not in NAMES]
    if not cfg.get("features") or unknown:
        raise InputError(folder, f"cell model features {unknown or '[]'} are not this version's cell features")
    return cfg


def load_cell_model(folder: str | Path) -> CellModel:
    """Load a model folder; one-line :class:`InputError` naming ``folder`` when it is missing,
    not a cell model, from another version, or for other classes."""
    folder = Path(folder)
    cfg = _read_config(folder)
    weights_path = folder / "weights.npz"
    if not weights_path.is_file():
        raise InputError(folder, "cell model has no weights.npz")
    try:
        with np.load(weights_path, allow_pickle=False) as z:
            weights = {k: np.asarray(z[k], np.float32) for k in WEIGHT_KEYS}
    except (OSError, ValueError, KeyError) as exc:
        raise InputError(folder, f"weights.npz is unreadable ({exc.__class__.__name__})") from None
    n_feat = len(cfg["features"])
    if (weights["w0"].shape[0] != n_feat or weights["w1"].shape[1] != len(CLASSES)
            or len(cfg.get("mean", [])) != n_feat or len(cfg.get("std", [])) != n_feat):
        raise InputError(folder, f"weights.npz shapes {weights['w0'].shape}/{weights['w1'].shape} do not match config.json")
    return CellModel(cfg, weights, str(folder))
