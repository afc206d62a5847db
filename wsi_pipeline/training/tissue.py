"""Train a region classifier from areas a pathologist drew (QuPath's pixel-classifier workflow).

Per slide: tissue is found, the slide is read on the label grid, the features of
:mod:`detectors.regions.model` are computed (stain and texture at three scales, distance to
the tissue surface, plus nucleus densities when the run's results folder is given), and the
annotated areas (GeoJSON polygons classified Epidermis / Dermis / Tumor / Inflammation /
Other, level-0 px) are rasterised on the same grid: each tissue pixel inside one class's
areas is a sample. A one-hidden-layer MLP (torch) is fitted with class-balanced
cross-entropy; a random fifth of each class's pixels is held out for the card's scores.
"""

from __future__ import annotations

import datetime
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from detectors.regions.model import FORMAT, VERSION, RegionModel, design_matrix, feature_names, mlp_forward
from detectors.regions.regionmap import CLASSES, rasterize_regions
from tiling.errors import InputError

MAX_PER_CLASS = 40_000


@dataclass
class Samples:
    """x (N, F) float32 features, y (N,) int64 class index into CLASSES, slide (N,) int."""

    x: np.ndarray
    y: np.ndarray
    slide: np.ndarray


def load_results_nuclei(folder: str | Path):
    """The nuclei of a results folder (``nuclei.geojson.gz`` or ``nuclei.geojson``) as
    Instances with their measurements; label = classification (cell type when typed)."""
    from wsi_pipeline.annotations import features_to_instances, read_geojson

    folder = Path(folder)
    for name in ("nuclei.geojson.gz", "nuclei.geojson"):
        if (folder / name).is_file():
            return features_to_instances(read_geojson(folder / name).features)
    raise InputError(folder, "no nuclei.geojson.gz in this results folder")


def slide_samples(slide_path, annotations, *, results=None, grid_um: float, device,
                  features: list[str]) -> tuple[np.ndarray, np.ndarray, dict]:
    """``(x (N, F), y (N,), counts per class)`` from one slide and its annotation file."""
    from detectors.base import Instances
    from detectors.regions.mapper import compute_features
    from detectors.tissue import detect_tissue
    from tiling.open import open_slide
    from wsi_pipeline.evaluation.regions import read_region_geometries

    geoms, _ = read_region_geometries(annotations)
    if not geoms:
        raise InputError(annotations, f"no areas classified {', '.join(CLASSES)}")
    nuclei = load_results_nuclei(results) if results else Instances.empty()
    with open_slide(slide_path) as slide:
        tissue = detect_tissue(slide, device=device)
        fs = compute_features(slide, tissue, nuclei, grid_um=grid_um, device=device)
    labels = rasterize_regions(geoms, fs.grid.shape, fs.grid.downsample)
    labels[~fs.tissue.cpu().numpy()] = 0
    if not labels.any():
        raise InputError(annotations, "no annotated area lies on tissue of its slide (same slide? level-0 pixels?)")
    with torch.inference_mode():
        x = design_matrix(fs, features)
    sel = labels.ravel() > 0
    xs = x.reshape(x.shape[0], -1).T.cpu().numpy()[sel]
    ys = labels.ravel()[sel].astype(np.int64) - 1
    counts = {CLASSES[i]: int((ys == i).sum()) for i in range(len(CLASSES)) if (ys == i).any()}
    return xs, ys, counts


def _split(y: np.ndarray, rng: np.random.Generator, *, val_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    train, val = [], []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))[: int(MAX_PER_CLASS / (1 - val_fraction))]
        k = int(round(len(idx) * val_fraction)) if len(idx) >= 5 else 0
        val.append(idx[:k])
        train.append(idx[k:])
    return np.concatenate(train), np.concatenate(val)


def fit_mlp(x: np.ndarray, y: np.ndarray, *, hidden: int = 32, steps: int = 600, lr: float = 0.01,
            weight_decay: float = 1e-4, seed: int = 0, device="cpu") -> dict[str, np.ndarray]:
    """Full-batch Adam on class-balanced cross-entropy; x (N, F) standardised features."""
    g = torch.Generator().manual_seed(seed)
    f, k = x.shape[1], len(CLASSES)
    w = {
        "w0": torch.randn(f, hidden, generator=g) * (2.0 / f) ** 0.5,
        "b0": torch.zeros(hidden),
        "w1": torch.randn(hidden, k, generator=g) * (1.0 / hidden) ** 0.5,
        "b1": torch.zeros(k),
    }
    w = {n: t.to(device).requires_grad_(True) for n, t in w.items()}
    xt = torch.as_tensor(x, dtype=torch.float32, device=device)
    yt = torch.as_tensor(y, dtype=torch.int64, device=device)
    counts = torch.bincount(yt, minlength=k).float()
    cw = torch.where(counts > 0, counts.sum() / (counts.clamp(min=1) * (counts > 0).sum()), torch.zeros_like(counts))
    opt = torch.optim.Adam(w.values(), lr=lr, weight_decay=weight_decay)
    for _ in range(steps):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(mlp_forward(xt, w), yt, weight=cw)
        loss.backward()
        opt.step()
    return {n: t.detach().cpu().numpy().astype(np.float32) for n, t in w.items()}


def per_class_scores(pred: np.ndarray, y: np.ndarray) -> dict:
    """Pixel IoU and recall per class present in ``y`` (class names as keys)."""
    out = {}
    for i, name in enumerate(CLASSES):
        t, p = y == i, pred == i
        if t.any():
            inter = int((t & p).sum())
            out[name] = {"iou": inter / int((t | p).sum()), "recall": inter / int(t.sum()), "pixels": int(t.sum())}
    return out


def train_region_model(samples: Samples, *, features: list[str], grid_um: float, hidden: int = 32,
                       steps: int = 600, seed: int = 0, val_fraction: float = 0.2, device="cpu",
                       sources: dict | None = None) -> tuple[RegionModel, dict]:
    """Fit the MLP on ``samples``; return the model and its held-out scores."""
    rng = np.random.default_rng(seed)
    tr, va = _split(samples.y, rng, val_fraction=val_fraction)
    mean = samples.x[tr].mean(0)
    std = samples.x[tr].std(0) + 1e-6
    weights = fit_mlp((samples.x[tr] - mean) / std, samples.y[tr], hidden=hidden, steps=steps, seed=seed, device=device)
    config = {
        "format": FORMAT, "version": VERSION, "classes": list(CLASSES), "grid_um": float(grid_um),
        "features": list(features), "hidden": int(hidden), "mean": mean.tolist(), "std": std.tolist(),
        "trained_classes": [CLASSES[i] for i in np.unique(samples.y)],
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "sources": sources or {},
    }
    model = RegionModel(config, weights)
    metrics = {}
    for part, idx in (("train", tr), ("validation", va)):
        if len(idx):
            with torch.no_grad():
                pred = model.logits(torch.as_tensor(samples.x[idx])).argmax(1).numpy()
            metrics[part] = per_class_scores(pred, samples.y[idx])
    return RegionModel({**config, "metrics": metrics}, weights), metrics


def write_model_folder(folder: str | Path, model: RegionModel, metrics: dict, *, seconds: float) -> Path:
    """config.json + weights.npz + model_card.md in ``folder``."""
    folder = Path(folder)
    model.save(folder)
    from wsi_pipeline.atomic import write_text_atomic

    write_text_atomic(folder / "model_card.md", model_card(model.config, metrics, seconds=seconds))
    return folder


def model_card(cfg: dict, metrics: dict, *, seconds: float) -> str:
    lines = [
        "# Tissue-region classifier (wsi-pipeline)", "",
        "Labels each label-grid pixel of tissue as Epidermis, Dermis, Tumor, Inflammation or Other "
        "(keratin and the rest). Use it with `wsi-pipeline run --tissue-model DIR`.", "",
        f"- Format {cfg['format']} version {cfg['version']}; label grid {cfg['grid_um']:g} µm/px.",
        f"- Classifier: MLP, one hidden layer of {cfg['hidden']} ReLU units, on {len(cfg['features'])} "
        "features (stain/texture at 3 scales, distance to the tissue surface"
        + (", nucleus densities per cell type" if any(f.startswith("n_") for f in cfg["features"]) else "") + ").",
        f"- Trained on classes: {', '.join(cfg['trained_classes'])} in {seconds:.0f} s.", "",
        "## Training data", "",
    ]
    lines += [f"- {k}: {v}" for k, v in cfg.get("sources", {}).items()]
    lines += ["", "## Held-out pixels (random fifth of each class; neighbours of training pixels, so optimistic)", "",
              "| class | IoU | recall | pixels |", "|---|---|---|---|"]
    for name, v in metrics.get("validation", {}).items():
        lines.append(f"| {name} | {v['iou']:.3f} | {v['recall']:.3f} | {v['pixels']} |")
    lines += ["", "## Limits", "",
              "- Learned only from the annotated slides: other stains, scanners or tissue types need their own "
              "annotations. A class that was never annotated is never predicted.",
              "- Research use; the map is an aid for review, not a diagnosis.", ""]
    return "\n".join(lines)


def train_from_paths(slides: list, annotations: list, *, results: list | None, out, grid_um: float = 8.0,
                     hidden: int = 32, steps: int = 600, seed: int = 0, device="cpu") -> tuple[Path, dict]:
    """The whole ``train tissue`` command: samples from every slide, fit, write the folder."""
    if len(slides) != len(annotations):
        raise InputError(None, f"give one --annotations file per slide ({len(slides)} slides, {len(annotations)} annotation files)")
    if results and len(results) != len(slides):
        raise InputError(None, f"give one --results folder per slide or none ({len(slides)} slides, {len(results)} folders)")
    t0 = time.perf_counter()
    features = feature_names(nuclei=bool(results))
    xs, ys, ids, sources = [], [], [], {}
    for i, (s, a) in enumerate(zip(slides, annotations)):
        x, y, counts = slide_samples(s, a, results=results[i] if results else None, grid_um=grid_um,
                                     device=device, features=features)
        xs.append(x); ys.append(y); ids.append(np.full(len(y), i))
        sources[f"{Path(s).name} + {Path(a).name}"] = ", ".join(f"{k} {v} px" for k, v in counts.items())
    samples = Samples(np.concatenate(xs), np.concatenate(ys), np.concatenate(ids))
    model, metrics = train_region_model(samples, features=features, grid_um=grid_um, hidden=hidden, steps=steps,
                                        seed=seed, device=device, sources=sources)
    folder = write_model_folder(out, model, metrics, seconds=time.perf_counter() - t0)
    return folder, metrics


def metrics_json(metrics: dict) -> str:
    return json.dumps(metrics, indent=2)
