"""A trained region classifier: per-label-pixel features -> a small torch MLP.

Model folder (written by ``wsi-pipeline train tissue``):

``config.json``   {"format": "wsi-pipeline-region-model", "version": 1, "classes": [...],
                   "grid_um": 8.0, "features": [...], "hidden": 32, "mean": [...], "std": [...],
                   "trained_classes": [...], ...}
``weights.npz``   the MLP's arrays (``w0, b0, w1, b1``; plain numpy, no pickle)
``model_card.md`` what it was trained on, how well it did, what it is not for
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from detectors.regions.features import gaussian
from detectors.regions.regionmap import CLASSES
from tiling.errors import InputError

FORMAT = "wsi-pipeline-region-model"
VERSION = 1
#: stain maps smoothed at these extra scales (label px) for context
CONTEXT_SIGMAS = (2.0, 6.0)
STAIN_CONTEXT = ("od", "h", "e", "h_cyto", "e_cyto", "nuclear", "h_std", "grad")


def feature_names(*, nuclei: bool) -> list[str]:
    """Design-matrix columns: stain maps, stain maps at each context scale, edge distance
    (two transforms), and nucleus densities when ``nuclei``."""
    names = list(STAIN_CONTEXT)
    names += [f"{n}~{s:g}" for s in CONTEXT_SIGMAS for n in STAIN_CONTEXT]
    names += ["edge_near", "edge_log"]
    if nuclei:
        names += [f"{n}@{s:g}" for s in (8, 24) for n in ("n_all", "n_lym", "n_epi", "n_str", "n_tum", "area")]
    return names


def design_matrix(fs, names: list[str]) -> torch.Tensor:
    """(C, H, W) float32 feature stack in the order of ``names`` (see :func:`feature_names`);
    densities are in thousands per mm²."""
    cols = []
    cache: dict[float, torch.Tensor] = {}
    for name in names:
        if "~" in name:
            base, s = name.split("~")
            sig = float(s)
            if sig not in cache:
                stack = torch.stack([fs.maps[n] for n in STAIN_CONTEXT])
                cache[sig] = gaussian(stack * fs.tissue, sig) / gaussian(fs.tissue.float()[None], sig).clamp(min=1e-3)
            cols.append(cache[sig][STAIN_CONTEXT.index(base)])
        elif name == "edge_near":
            cols.append(torch.clamp(fs.edge_um, max=200.0) / 100.0)
        elif name == "edge_log":
            cols.append(torch.log1p(fs.edge_um / 10.0))
        elif name.startswith("n_"):
            cols.append(fs.maps[name] / 1000.0)
        elif name.startswith("area@"):
            cols.append(fs.maps[name] / 50.0)
        else:
            cols.append(fs.maps[name])
    return torch.stack(cols).float()


@dataclass(frozen=True)
class RegionModel:
    """A loaded model: ``config`` (see module docstring) and the MLP arrays."""

    config: dict
    weights: dict[str, np.ndarray]
    folder: str | None = None

    @property
    def grid_um(self) -> float:
        return float(self.config["grid_um"])

    @property
    def features(self) -> list[str]:
        return list(self.config["features"])

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """(N, F) features -> (N, len(CLASSES)) logits."""
        dev, dt = x.device, torch.float32
        mean = torch.as_tensor(np.asarray(self.config["mean"]), dtype=dt, device=dev)
        std = torch.as_tensor(np.asarray(self.config["std"]), dtype=dt, device=dev)
        w = {k: torch.as_tensor(v, dtype=dt, device=dev) for k, v in self.weights.items()}
        z = (x.float() - mean) / std
        return mlp_forward(z, w)

    def predict(self, fs) -> np.ndarray:
        """(H, W) uint8 labels for a FeatureSet (probabilities smoothed over ~1 label px)."""
        with torch.inference_mode():
            x = design_matrix(fs, self.features)
            c, h, w = x.shape
            p = torch.softmax(self.logits(x.reshape(c, -1).T), dim=1).T.reshape(-1, h, w)
            p = gaussian(p * fs.tissue, 1.0)
            lab = (p.argmax(0) + 1).to(torch.uint8) * fs.tissue
        return lab.cpu().numpy().astype(np.uint8)

    def save(self, folder: str | Path) -> None:
        """Write ``config.json`` and ``weights.npz`` into ``folder`` (atomically, each)."""
        import io

        from wsi_pipeline.atomic import write_bytes_atomic, write_text_atomic

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        np.savez(buf, **self.weights)
        write_bytes_atomic(folder / "weights.npz", buf.getvalue())
        write_text_atomic(folder / "config.json", json.dumps(self.config, indent=2))


def mlp_forward(z: torch.Tensor, w: dict[str, torch.Tensor]) -> torch.Tensor:
    """One hidden ReLU layer: ``relu(z @ w0 + b0) @ w1 + b1``."""
    return torch.relu(z @ w["w0"] + w["b0"]) @ w["w1"] + w["b1"]


def load_region_model(folder: str | Path) -> RegionModel:
    """Load a model folder; one-line :class:`InputError` naming ``folder`` when it is missing,
    not a region model, from another version, or for other classes."""
    folder = Path(folder)
    cfg_path = folder / "config.json"
    if not folder.is_dir():
        raise InputError(folder, "region model folder not found")
    if not cfg_path.is_file():
        raise InputError(folder, "not a region model folder (no config.json); train one with 'wsi-pipeline train tissue'")
    try:
        cfg = json.loads(cfg_path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(folder, f"config.json is not valid JSON ({exc.__class__.__name__})") from None
    if not isinstance(cfg, dict) or cfg.get("format") != FORMAT:
        raise InputError(folder, f"config.json is not a region model (format {cfg.get('format') if isinstance(cfg, dict) else None!r}, expected {FORMAT!r})")
    if cfg.get("version") != VERSION:
        raise InputError(folder, f"region model version {cfg.get('version')!r}; this wsi-pipeline reads version {VERSION}; retrain it")
    if list(cfg.get("classes", [])) != list(CLASSES):
        raise InputError(folder, f"region model classes {cfg.get('classes')} differ from {list(CLASSES)}")
    weights_path = folder / "weights.npz"
    if not weights_path.is_file():
        raise InputError(folder, "region model has no weights.npz")
    try:
        with np.load(weights_path, allow_pickle=False) as z:
            weights = {k: z[k] for k in ("w0", "b0", "w1", "b1")}
    except (OSError, ValueError, KeyError) as exc:
        raise InputError(folder, f"weights.npz is unreadable ({exc.__class__.__name__})") from None
    n_feat = len(cfg.get("features", []))
    if weights["w0"].shape[0] != n_feat or weights["w1"].shape[1] != len(CLASSES):
        raise InputError(folder, f"weights.npz shapes {weights['w0'].shape}/{weights['w1'].shape} do not match config.json")
    return RegionModel(cfg, weights, str(folder))
