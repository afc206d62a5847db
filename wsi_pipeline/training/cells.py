"""Train a cell-type classifier from nuclei a pathologist (re)classified (QuPath's object classifier).

Input: nuclei files as ``wsi-pipeline run`` writes them and the napari Review widget saves
them (``nuclei.geojson.gz`` / ``.geojson``, ``nuclei.parquet``, or a results folder holding
one), each nucleus with its measurements and a classification. A nucleus' label is its
classification when that is a cell type (``Lymphocyte, Epithelial, Stromal, Tumor, Other``)
or, for synthetic truth, its mapped ``nucleusType``; nuclei with any other class (e.g.
``Nucleus``) are not samples but still count as neighbours, so every nucleus of a file is
kept for the neighbourhood features.

Nuclei without the measurements cell typing needs (drawn by hand, or a truth file) are
measured from their slide's pixels when ``slides`` gives it (same order as the files); µm per
pixel comes from ``mpp``, else the slide, else the file's ``mpp`` property, else the
``summary.json`` of the results folder the file lies in.

The classifier is :class:`detectors.cells.model.CellModel` (one hidden ReLU layer, plain
numpy at run time) fitted in torch on :data:`MODEL_FEATURES` (the feature table without the
absolute stain ODs, which differ between labs and scanners; their slide-relative versions
stay) with class-balanced cross-entropy. A random fifth of each class's nuclei is held out
for the model card's per-class F1. The card names each training file by its folder and
name (``demo/nuclei.geojson.gz``) with a hash, never by a machine path.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from detectors.cells.features import NAMES, REQUIRED, feature_table
from detectors.cells.model import FORMAT, VERSION, CellModel
from detectors.cells.types import CLASSES, truth_cell_type
from tiling.errors import InputError

#: features the trained model uses: all but the absolute stain ODs
MODEL_FEATURES = tuple(n for n in NAMES if n not in ("h_mean", "h_std", "e_mean"))
FOLDER_FILES = ("nuclei.geojson.gz", "nuclei.geojson", "nuclei.parquet")
MAX_PER_CLASS = 50_000
SINGLE_THREAD_BELOW = 200_000  # training nuclei; fewer are fitted on one thread
MEASURE_TILE = 1024  # level-0 px; nuclei are measured in windows this size


@dataclass
class NucleiFile:
    """The nuclei of one file: ``xy`` (N, 2) level-0 px centroids, ``measurements`` name ->
    (N,) (NaN where absent), ``labels`` (N,) class names or None, ``geometry`` (N,) shapely
    polygons (None for Parquet), ``mpp`` from the file or its folder (None when unknown)."""

    path: Path
    xy: np.ndarray
    measurements: dict[str, np.ndarray]
    labels: np.ndarray
    geometry: np.ndarray | None
    mpp: float | None


def resolve_nuclei_file(path: str | Path) -> Path:
    path = Path(path)
    if path.is_dir():
        for name in FOLDER_FILES:
            if (path / name).is_file():
                return path / name
        raise InputError(path, f"folder holds no nuclei file ({', '.join(FOLDER_FILES)})")
    if not path.is_file():
        raise InputError(path, "file not found")
    return path


def _label(classification, nucleus_type) -> str | None:
    if nucleus_type is not None:
        return truth_cell_type(nucleus_type)
    return classification if classification in CLASSES else None


def _mpp_beside(path: Path, props: dict | None) -> float | None:
    mpp = (props or {}).get("mpp")
    if isinstance(mpp, (list, tuple)) and mpp:
        mpp = mpp[0]
    if isinstance(mpp, (int, float)) and mpp > 0:
        return float(mpp)
    summary = path.parent / "summary.json"
    if summary.is_file():
        try:
            got = json.loads(summary.read_text()).get("slide", {}).get("mpp")
            if isinstance(got, list) and got and float(got[0]) > 0:
                return float(got[0])
        except (OSError, ValueError, TypeError, AttributeError):
            return None
    return None


def read_nuclei_file(path: str | Path) -> NucleiFile:
    """Read a nuclei GeoJSON / Parquet / results folder (see the module docstring)."""
    import shapely

    path = resolve_nuclei_file(path)
    if path.suffix == ".parquet":
        from wsi_pipeline.tables import read_table

        df = read_table(path)
        if "centroid_x" not in df or "class" not in df:
            raise InputError(path, "not a nuclei table (no class / centroid_x columns)")
        xy = df[["centroid_x", "centroid_y"]].to_numpy(np.float64)
        meas = {k: df[k].to_numpy(np.float64) if k in df else np.full(len(df), np.nan) for k in REQUIRED}
        labels = np.asarray([_label(c, None) for c in df["class"].where(df["class"].notna(), None)], object)
        return NucleiFile(path, xy, meas, labels, None, _mpp_beside(path, None))
    from wsi_pipeline.annotations import read_geojson

    try:
        ann = read_geojson(path)
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - any parse failure is one line about this file
        raise InputError(path, f"not a readable GeoJSON ({exc.__class__.__name__}: {exc})") from None
    feats = [f for f in ann.features if f.object_type in ("detection", "cell")
             and f.geometry is not None and not f.geometry.is_empty]
    geoms = np.asarray([f.nucleus_geometry if f.nucleus_geometry is not None else f.geometry for f in feats], object)
    c = shapely.centroid(geoms) if len(geoms) else np.empty(0, object)
    xy = np.column_stack([shapely.get_x(c), shapely.get_y(c)]) if len(geoms) else np.empty((0, 2))
    meas = {k: np.asarray([f.measurements.get(k, np.nan) for f in feats], np.float64) for k in REQUIRED}
    labels = np.asarray([_label(f.classification, (f.extra or {}).get("nucleusType")) for f in feats], object)
    return NucleiFile(path, xy, meas, labels, geoms, _mpp_beside(path, getattr(ann, "properties", None)))


def measure_from_slide(nf: NucleiFile, slide, rows: np.ndarray) -> None:
    """Fill ``nf.measurements`` of ``rows`` from ``slide``'s level-0 pixels (in place)."""
    import shapely

    from detectors.nuclei.measurements import measure

    mpp = float(slide.mpp[0])
    geoms = nf.geometry[rows]
    tiles = np.floor(nf.xy[rows] / MEASURE_TILE).astype(np.int64)
    keys = tiles[:, 0] * 1_000_003 + tiles[:, 1]
    for key in np.unique(keys):
        sel = np.flatnonzero(keys == key)
        g = geoms[sel]
        x0, y0, x1, y1 = shapely.total_bounds(g)
        x0, y0 = int(np.floor(x0)) - 2, int(np.floor(y0)) - 2
        w, h = int(np.ceil(x1)) + 2 - x0, int(np.ceil(y1)) + 2 - y0
        rgb = slide.read_region((x0, y0), (w, h), level=0)[..., :3]
        local = shapely.transform(g, lambda p, x0=x0, y0=y0: p - [x0, y0])
        got = measure(local, np.ascontiguousarray(rgb), mpp)
        for k in REQUIRED:
            nf.measurements[k][rows[sel]] = got[k]


def prepare_file(path, *, slide_path=None, mpp: float | None = None) -> tuple[dict, np.ndarray, dict]:
    """``(feature table of all nuclei, labels, info)`` of one nuclei file (measured from
    ``slide_path`` where measurements are missing)."""
    nf = read_nuclei_file(path)
    if len(nf.xy) == 0:
        raise InputError(nf.path, "holds no nuclei (detections or cells)")
    labelled = np.asarray([lab is not None for lab in nf.labels])
    if not labelled.any():
        raise InputError(nf.path, f"no nucleus is classified as a cell type ({', '.join(CLASSES)})")
    lacking = np.zeros(len(nf.xy), bool)
    for k in REQUIRED:
        lacking |= ~np.isfinite(nf.measurements[k])
    slide_mpp = None
    if slide_path is not None:
        from tiling.open import open_slide

        with open_slide(slide_path, mpp=mpp) as slide:
            slide_mpp = float(slide.mpp[0])
            if lacking.any():
                if nf.geometry is None:
                    raise InputError(nf.path, "nuclei lack measurements and a table has no outlines to measure")
                measure_from_slide(nf, slide, np.flatnonzero(lacking))
    elif lacking[labelled].mean() > 0.5:
        missing = [k for k in REQUIRED if not np.isfinite(nf.measurements[k][labelled]).any()]
        raise InputError(nf.path, f"classified nuclei lack measurements ({', '.join(missing) or 'most values'}); "
                                  "give the slide with --slides to measure them")
    px_mpp = mpp or slide_mpp or nf.mpp
    if not px_mpp:
        raise InputError(nf.path, "µm per pixel unknown (no slide, no mpp property, no summary.json beside it); give --mpp")
    features, _ = feature_table(nf.measurements, nf.xy * px_mpp)
    counts = {c: int(np.sum(nf.labels == c)) for c in CLASSES if np.any(nf.labels == c)}
    info = {"file": f"{nf.path.parent.name}/{nf.path.name}" if nf.path.parent.name else nf.path.name, "sha256": _sha256(nf.path), "nuclei": len(nf.xy), "labelled": counts,
            "measured_from_slide": int(lacking.sum()) if slide_path is not None else 0, "mpp": px_mpp}
    return features, nf.labels, info


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def fit_mlp(x: np.ndarray, y: np.ndarray, *, hidden: int = 32, steps: int = 800, lr: float = 0.01,
            weight_decay: float = 1e-4, seed: int = 0) -> dict[str, np.ndarray]:
    """Full-batch Adam on class-balanced cross-entropy over standardised ``x`` (N, F); ``y`` (N,)
    indices into CLASSES. Returns the CellModel arrays w0, b0, w1, b1."""
    import torch

    g = torch.Generator().manual_seed(seed)
    n_feat, k = x.shape[1], len(CLASSES)
    params = [torch.randn(n_feat, hidden, generator=g) * (2.0 / n_feat) ** 0.5, torch.zeros(hidden),
              torch.randn(hidden, k, generator=g) * (1.0 / hidden) ** 0.5, torch.zeros(k)]
    params = [p.requires_grad_(True) for p in params]
    xt, yt = torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y, dtype=torch.int64)
    counts = torch.bincount(yt, minlength=k).float()
    present = counts > 0
    weight = torch.where(present, counts.sum() / (counts.clamp(min=1) * present.sum()), torch.zeros_like(counts))
    opt = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    w0, b0, w1, b1 = params
    threads = torch.get_num_threads()
    if len(x) < SINGLE_THREAD_BELOW:  # small matrices: thread hand-offs cost more than they give
        torch.set_num_threads(1)
    try:
        for _ in range(steps):
            opt.zero_grad()
            logits = torch.relu(xt @ w0 + b0) @ w1 + b1
            logits = logits.masked_fill(~present, -1e4)  # a class never shown is never predicted
            torch.nn.functional.cross_entropy(logits, yt, weight=weight).backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    out = {name: p.detach().numpy().astype(np.float32) for name, p in zip(("w0", "b0", "w1", "b1"), params)}
    out["b1"][~present.numpy()] = -1e4
    return out


def f1_scores(pred: np.ndarray, y: np.ndarray) -> dict:
    """Per-class F1 / precision / recall over classes in ``y`` plus ``macro_f1`` (indices into CLASSES)."""
    per = {}
    for i, name in enumerate(CLASSES):
        n_true, n_pred = int((y == i).sum()), int((pred == i).sum())
        if n_true:
            tp = int(((y == i) & (pred == i)).sum())
            per[name] = {"f1": 2 * tp / (n_true + n_pred), "precision": tp / n_pred if n_pred else 0.0,
                         "recall": tp / n_true, "n": n_true}
    return {"per_class": per, "macro_f1": float(np.mean([v["f1"] for v in per.values()])) if per else None}


def _split(y: np.ndarray, rng, val_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    train, val = [], []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))[:MAX_PER_CLASS]
        k = int(round(len(idx) * val_fraction)) if len(idx) >= 5 else 0
        val.append(idx[:k])
        train.append(idx[k:])
    return np.concatenate(train), np.concatenate(val)


def train_cell_model(x: np.ndarray, y: np.ndarray, *, hidden: int = 32, steps: int = 800, seed: int = 0,
                     val_fraction: float = 0.2, sources: list | None = None) -> tuple[CellModel, dict]:
    """Fit on (N, F) ``x`` in :data:`MODEL_FEATURES` order and (N,) class indices ``y``."""
    rng = np.random.default_rng(seed)
    tr, va = _split(y, rng, val_fraction)
    mean = x[tr].mean(0)
    std = x[tr].std(0) + 1e-6
    weights = fit_mlp((x[tr] - mean) / std, y[tr], hidden=hidden, steps=steps, seed=seed)
    config = {
        "format": FORMAT, "version": VERSION, "classes": list(CLASSES), "features": list(MODEL_FEATURES),
        "hidden": int(hidden), "mean": mean.tolist(), "std": std.tolist(),
        "trained_classes": [CLASSES[i] for i in np.unique(y)],
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "sources": sources or [],
    }
    model = CellModel(config, weights)
    metrics = {}
    for part, idx in (("train", tr), ("validation", va)):
        if len(idx):
            feats = {k: x[idx, j] for j, k in enumerate(MODEL_FEATURES)}
            metrics[part] = f1_scores(model.predict(feats), y[idx])
    return CellModel({**config, "metrics": metrics}, weights), metrics


def model_card(cfg: dict, metrics: dict, *, seconds: float) -> str:
    lines = [
        "# Cell-type classifier (wsi-pipeline)", "",
        "Types each detected nucleus as Lymphocyte, Epithelial, Stromal, Tumor or Other from its "
        "measurements and its neighbourhood. Use it with `wsi-pipeline run --cell-model DIR`.", "",
        f"- Format {cfg['format']} version {cfg['version']}.",
        f"- Classifier: MLP, one hidden layer of {cfg['hidden']} ReLU units, on {len(cfg['features'])} features "
        f"({', '.join(cfg['features'])}); absolute stain ODs are left out, darkness is relative to each slide's "
        "pale nuclei.",
        f"- Trained on classes: {', '.join(cfg['trained_classes'])} in {seconds:.0f} s. A class without "
        "training nuclei is never predicted.", "",
        "## Training data", "",
        "| file | sha256 (16) | nuclei | classified nuclei | measured from the slide |", "|---|---|---|---|---|",
    ]
    for s in cfg.get("sources", []):
        lab = ", ".join(f"{k} {v}" for k, v in s["labelled"].items())
        lines.append(f"| {s['file']} | {s['sha256']} | {s['nuclei']} | {lab} | {s['measured_from_slide']} |")
    val = metrics.get("validation") or {}
    lines += ["", "## Held-out nuclei (a random fifth of each class, from the same slides: optimistic)", ""]
    if val:
        lines += ["| class | F1 | precision | recall | nuclei |", "|---|---|---|---|---|"]
        for name, v in val["per_class"].items():
            lines.append(f"| {name} | {v['f1']:.3f} | {v['precision']:.3f} | {v['recall']:.3f} | {v['n']} |")
        lines.append(f"\nMacro-F1 {val['macro_f1']:.3f}.")
    else:
        lines.append("Too few nuclei to hold any out.")
    lines += ["", "## Limits", "",
              "- Learned only from the classified slides: other stains, scanners, nucleus detectors or tissue "
              "types need their own classified nuclei; check with `wsi-pipeline evaluate --cells`.",
              "- Research use; the types are an aid for review, not a diagnosis.", ""]
    return "\n".join(lines)


def train_from_paths(nuclei: list, *, slides: list | None = None, out, mpp: float | None = None, hidden: int = 32,
                     steps: int = 800, seed: int = 0) -> tuple[Path, dict]:
    """The whole ``train cells`` command: samples from every file, fit, write the folder."""
    from wsi_pipeline.atomic import write_text_atomic

    if slides and len(slides) != len(nuclei):
        raise InputError(None, f"give one --slides file per nuclei file or none ({len(nuclei)} nuclei files, "
                               f"{len(slides)} slides)")
    t0 = time.perf_counter()
    xs, ys, sources = [], [], []
    for i, path in enumerate(nuclei):
        features, labels, info = prepare_file(path, slide_path=slides[i] if slides else None, mpp=mpp)
        keep = np.flatnonzero([lab is not None for lab in labels])
        xs.append(np.column_stack([features[k][keep] for k in MODEL_FEATURES]).astype(np.float32))
        ys.append(np.asarray([CLASSES.index(lab) for lab in labels[keep]], np.int64))
        sources.append(info)
    x, y = np.concatenate(xs), np.concatenate(ys)
    if len(np.unique(y)) < 2:
        raise InputError(nuclei[0], f"nuclei of only one class ({CLASSES[int(y[0])]}); a classifier needs two or more")
    model, metrics = train_cell_model(x, y, hidden=hidden, steps=steps, seed=seed, sources=sources)
    folder = Path(out)
    model.save(folder)
    write_text_atomic(folder / "model_card.md", model_card(model.config, metrics, seconds=time.perf_counter() - t0))
    return folder, metrics
