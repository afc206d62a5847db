"""Train the mitosis crop classifier (:class:`detectors.mitosis.classifier.MitosisNet`).

Recipe:

* samples from :mod:`wsi_pipeline.training.mitosis_data`; splits by *group* (slide for
  MIDOG crops via its CSV, image for fields and annotated images), separately per source
  so each split gets crops and fields;
* batches balanced to ``positive_fraction`` mitotic figures; augmentation
  (:mod:`wsi_pipeline.training.mitosis_augment`): shift, flips, rotation, H&E stain jitter,
  brightness and, with ``scanner_augment``, resolution (0.23-0.27 µm/px), blur, contrast,
  gamma and JPEG quality;
* two passes: the first on a random subset of the training imposters
  (``negatives_per_positive`` x positives); then **hard-negative mining**: every training
  imposter is scored and those the model scores >= ``hard_threshold`` are added (and
  weighted up) for the second pass;
* the epoch with the best validation average precision is kept; the threshold maximises F1
  on the validation split; the test split is scored once at the end: recall on held-out
  slides, precision, and false positives per mm² on held-out negative fields.

The model card names data by dataset (folder name) and slide/image, never by a path on the
training machine (:func:`dataset_name`, checked by :func:`check_portable`). The folder is
written ``validated: false``: a held-out split of the training scanners says nothing about
another scanner, so its detections stay candidates until someone records evidence.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from detectors.mitosis.classifier import MitosisNet, mitosis_probability, to_input
from detectors.mitosis.model_io import MitosisModelConfig, save_model_folder
from tiling.errors import InputError
from wsi_pipeline.training.mitosis_augment import augment
from wsi_pipeline.training.mitosis_data import IMPOSTER, MODEL_MPP, SampleSet, split_groups

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MitosisTrainingOptions:
    crop_size: int = 64
    margin: int = 16  # patches are crop_size + 2 * margin px: room for shift, rotation and scale
    width: int = 12
    epochs: int = 12
    batch_size: int = 64
    steps_per_epoch: int | None = None  # default: enough to see each positive ~3x per epoch
    learning_rate: float = 2e-3
    positive_fraction: float = 0.35
    negatives_per_positive: float = 3.0
    hard_threshold: float = 0.5
    hard_weight: float = 3.0
    val_fraction: float = 0.15
    test_fraction: float = 0.2
    time_limit_min: float | None = None
    seed: int = 0
    scanner_augment: bool = True  # resolution, blur, contrast, JPEG, any rotation (mitosis_augment)


@dataclass
class TrainingResult:
    folder: Path
    threshold: float
    metrics: dict
    seconds: float
    history: list = field(default_factory=list)
    test_scores: np.ndarray | None = None  # (N_test,) probabilities of the test split's samples


#: what ``config.json`` says of a freshly trained model (see detectors.mitosis.model_io)
NOT_VALIDATED = ("The metrics in the model card are on held-out slides of the training data only; check the "
                 "model on your own scanner (e.g. `wsi-pipeline evaluate --points --crops`) and record the "
                 "evidence in config.json's validation before setting validated to true.")
_ABSOLUTE = re.compile(r"(^|[\s'\"(=])(/[^\s/]+/|[A-Za-z]:[\\/]|~/|\\\\)")


def dataset_name(path: str | Path) -> str:
    """How a model card names a data folder: its own name (``ami-br-midog21``), never the
    path on the training machine."""
    return Path(path).expanduser().resolve().name or str(path)


def check_portable(card: dict) -> None:
    """ValueError when any key or string in ``card`` holds an absolute or home path."""
    def walk(x, where):
        if isinstance(x, dict):
            for k, v in x.items():
                walk(k, where)
                walk(v, f"{where}.{k}")
        elif isinstance(x, (list, tuple)):
            for v in x:
                walk(v, where)
        elif isinstance(x, str) and _ABSOLUTE.search(x):
            raise ValueError(f"model card {where} names a machine path: {x!r}")
    walk(card, "card")


def centre_crops(patches: np.ndarray, size: int) -> np.ndarray:
    """(N, P, P, 3) -> (N, size, size, 3) centre crops."""
    o = (patches.shape[1] - size) // 2
    return patches[:, o : o + size, o : o + size]


@torch.no_grad()
def predict(net: MitosisNet, patches: np.ndarray, size: int, device: torch.device, batch: int = 256) -> np.ndarray:
    """(N,) probability of a mitotic figure for centre crops of ``patches``."""
    net.eval()
    out = []
    crops = centre_crops(patches, size)
    for i in range(0, len(crops), batch):
        x = to_input(torch.from_numpy(np.ascontiguousarray(crops[i : i + batch])).to(device))
        out.append(mitosis_probability(net(x)).cpu().numpy())
    return np.concatenate(out) if out else np.empty(0, np.float32)


# -- metrics ----------------------------------------------------------------------
def average_precision(y: np.ndarray, s: np.ndarray) -> float:
    """Area under the precision-recall curve (step interpolation); NaN without positives."""
    if y.sum() == 0:
        return float("nan")
    order = np.argsort(-s, kind="stable")
    tp = np.cumsum(y[order])
    prec = tp / np.arange(1, len(y) + 1)
    return float((prec * y[order]).sum() / y.sum())


def best_f1_threshold(y: np.ndarray, s: np.ndarray) -> float:
    """Threshold on a 0.05 grid with the best F1 (the middle one when several tie)."""
    grid = np.round(np.arange(0.05, 0.96, 0.05), 2)
    f1 = np.array([_prf(y, s, t)[2] for t in grid])
    best = np.flatnonzero(f1 >= f1.max() - 1e-9)
    return float(grid[best[len(best) // 2]])  # the middle of the tied best range


def _prf(y: np.ndarray, s: np.ndarray, t: float) -> tuple[float, float, float]:
    pred = s >= t
    tp, fp, fn = int((pred & (y == 1)).sum()), int((pred & (y == 0)).sum()), int((~pred & (y == 1)).sum())
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def split_metrics(data: SampleSet, scores: np.ndarray, t: float) -> dict:
    """Recall, precision, F1, AP over a split; FP per mm² over its negative field images."""
    y = (data.label != IMPOSTER).astype(int)
    p, r, f1 = _prf(y, scores, t)
    fields = [g for g in set(data.group[data.source == "fields"].tolist()) if g in data.field_area_mm2]
    area = sum(data.field_area_mm2[g] for g in fields)
    fp_fields = int(((scores >= t) & (data.source == "fields")).sum())
    return {
        "positives": int(y.sum()), "negatives": int((y == 0).sum()), "groups": len(set(data.group.tolist())),
        "threshold": t, "recall": r, "precision": p, "f1": f1, "average_precision": average_precision(y, scores),
        "field_images": len(fields), "field_area_mm2": area,
        "fp_per_mm2": (fp_fields / area) if area > 0 else None,
        "recall_by_threshold": {f"{u:.1f}": _prf(y, scores, u)[1] for u in (0.3, 0.5, 0.7, 0.9)},
        "fp_per_mm2_by_threshold": {f"{u:.1f}": int(((scores >= u) & (data.source == "fields")).sum()) / area
                                    for u in (0.3, 0.5, 0.7, 0.9)} if area > 0 else None,
    }


# -- training ---------------------------------------------------------------------
def assign_splits(data: SampleSet, options: MitosisTrainingOptions) -> np.ndarray:
    """(N,) 'train' | 'val' | 'test' by group, splitting each source family on its own."""
    fam = np.where(np.isin(data.source, ["crops", "crop-neighbours"]), "crops", data.source)
    split = np.empty(len(data), object)
    for k, f in enumerate(sorted(set(fam.tolist()))):
        sel = fam == f
        table = split_groups(data.group[sel], val_fraction=options.val_fraction,
                             test_fraction=options.test_fraction, seed=options.seed + k)
        split[sel] = [table[g] for g in data.group[sel]]
    return split


def _class_index(labels: np.ndarray, classes: tuple[str, ...]) -> np.ndarray:
    lookup = {c: i for i, c in enumerate(classes)}
    return np.array([lookup[c] for c in labels], np.int64)


def train_mitosis(data: SampleSet, *, out: str | Path, options: MitosisTrainingOptions = MitosisTrainingOptions(),
                  device: torch.device = torch.device("cpu"), sources: dict | None = None,
                  split: np.ndarray | None = None) -> TrainingResult:
    """Train, pick the threshold on validation, score the test split, write the model folder.
    ``split``: (N,) 'train' | 'val' | 'test' per sample (default :func:`assign_splits`)."""
    t0 = time.monotonic()
    torch.manual_seed(options.seed)
    gen = torch.Generator().manual_seed(options.seed)
    rng = np.random.default_rng(options.seed)
    positives = sorted(set(data.label.tolist()) - {IMPOSTER}, key=lambda c: (c != "normal", c))
    if not positives or not (data.label == IMPOSTER).any():
        raise InputError(None, "training needs mitotic figures (--crops/--images) and imposters (--negatives or crop neighbours)")
    classes = (IMPOSTER, *positives)
    split = assign_splits(data, options) if split is None else np.asarray(split, object)
    if len(split) != len(data):
        raise ValueError(f"split has {len(split)} entries for {len(data)} samples")
    train, val, test = (data.subset(split == s) for s in ("train", "val", "test"))
    if not (train.label != IMPOSTER).any():
        raise InputError(None, "no mitotic figures left for training after the split; add more slides/crops")
    y_train = _class_index(train.label, classes)
    pos_idx, neg_all = np.flatnonzero(y_train > 0), np.flatnonzero(y_train == 0)
    n_neg = min(len(neg_all), max(1, int(options.negatives_per_positive * len(pos_idx))))
    neg_idx = rng.choice(neg_all, n_neg, replace=False)
    neg_w = np.ones(len(neg_idx))
    net = MitosisNet(len(classes), width=options.width).to(device)
    opt = torch.optim.AdamW(net.parameters(), lr=options.learning_rate, weight_decay=1e-4)
    steps = options.steps_per_epoch or max(1, int(np.ceil(3 * len(pos_idx) / (options.batch_size * options.positive_fraction))))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=options.learning_rate, total_steps=options.epochs * steps)
    patches_t = torch.from_numpy(train.patches)
    y_t = torch.from_numpy(y_train)
    best = (-1.0, None, 0)
    history, mined = [], 0
    n_pos_b = max(1, int(round(options.batch_size * options.positive_fraction)))
    for epoch in range(options.epochs):
        if epoch == options.epochs // 2 and options.epochs > 1:
            neg_idx, neg_w, mined = _mine(net, train, neg_all, neg_idx, neg_w, options, device)
        net.train()
        losses = []
        for _ in range(steps):
            bi = np.concatenate([rng.choice(pos_idx, n_pos_b), rng.choice(neg_idx, options.batch_size - n_pos_b,
                                                                           p=neg_w / neg_w.sum())])
            x = augment(patches_t[bi], options.crop_size, gen, scanner=options.scanner_augment).to(device)
            loss = F.cross_entropy(net(x), y_t[bi].to(device), label_smoothing=0.05)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
        ap = _val_ap(net, val, options, device)
        history.append({"epoch": epoch + 1, "loss": float(np.mean(losses)), "val_ap": ap})
        log.info("mitosis epoch %d/%d: loss %.3f, validation AP %.3f", epoch + 1, options.epochs, np.mean(losses), ap)
        if ap > best[0] or best[1] is None:
            best = (ap, {k: v.detach().clone() for k, v in net.state_dict().items()}, epoch + 1)
        if options.time_limit_min and time.monotonic() - t0 > 60 * options.time_limit_min:
            log.warning("mitosis: time limit reached after epoch %d", epoch + 1)
            break
    net.load_state_dict(best[1])
    val_s = predict(net, val.patches, options.crop_size, device)
    y_val = (val.label != IMPOSTER).astype(int)
    threshold = best_f1_threshold(y_val, val_s) if y_val.sum() and (y_val == 0).sum() else 0.5
    test_s = predict(net, test.patches, options.crop_size, device) if len(test) else None
    metrics = {"val": split_metrics(val, val_s, threshold),
               "test": split_metrics(test, test_s, threshold) if len(test) else {}}
    seconds = time.monotonic() - t0
    card = _card(data, split, classes, options, metrics, history, best[2], mined, seconds, sources or {})
    check_portable(card)
    cfg = MitosisModelConfig(classes=classes, crop_size=options.crop_size, mpp=MODEL_MPP, threshold=threshold,
                             width=options.width, validated=False, validation=NOT_VALIDATED)
    folder = save_model_folder(out, net.cpu(), cfg, card, card_markdown(card))
    return TrainingResult(folder, threshold, metrics, seconds, history, test_s)


def _val_ap(net, val: SampleSet, options, device) -> float:
    y = (val.label != IMPOSTER).astype(int)
    if not len(val) or y.sum() == 0 or (y == 0).sum() == 0:
        return float("nan")
    return average_precision(y, predict(net, val.patches, options.crop_size, device))


def _mine(net, train: SampleSet, neg_all, neg_idx, neg_w, options, device):
    """Score every training imposter; add (and weight up) those scored >= hard_threshold."""
    s = predict(net, train.patches[neg_all], options.crop_size, device)
    hard = set(neg_all[s >= options.hard_threshold].tolist())
    current = dict(zip(neg_idx.tolist(), neg_w.tolist()))
    added = len(hard - set(current))
    for i in hard:
        current[i] = options.hard_weight
    log.info("mitosis: hard-negative mining: %d of %d imposters scored >= %.2f (%d added)",
             len(hard), len(neg_all), options.hard_threshold, added)
    idx = np.array(sorted(current), np.int64)
    return idx, np.array([current[i] for i in idx], float), {"hard": len(hard), "added": added, "pool": len(neg_all)}


def _card(data, split, classes, options, metrics, history, best_epoch, mined, seconds, sources) -> dict:
    counts = {}
    for s in ("train", "val", "test"):
        sel = split == s
        counts[s] = {"groups": sorted(set(data.group[sel].tolist())),
                     "by_class": {c: int((data.label[sel] == c).sum()) for c in classes},
                     "by_source": {src: int((data.source[sel] == src).sum()) for src in sorted(set(data.source.tolist()))}}
    return {
        "model": "MitosisNet (small CNN)", "task": "mitotic figure vs imposter", "classes": list(classes),
        "input": {"crop_size": options.crop_size, "mpp": MODEL_MPP}, "data": sources,
        "split": counts, "options": asdict(options), "hard_negative_mining": mined,
        "best_epoch": best_epoch, "history": history, "metrics": metrics, "training_seconds": round(seconds, 1),
        "validated": False, "validation": NOT_VALIDATED,
        "caveats": ("Positives come from the listed crop folders/annotations only (MIDOG21: breast cancer, "
                    "several scanners); skin/melanoma mitoses were not in training. Negative fields may hold "
                    "unmarked mitoses, counted here as false positives. Check on your own slides before use."),
    }


def card_markdown(card: dict) -> str:
    """A short human-readable model card from the card dict."""
    lines = [f"# Mitosis classifier ({card['model']})", "", f"Classes: {', '.join(card['classes'])}; "
             f"crops {card['input']['crop_size']} px at {card['input']['mpp']} µm/px.", "", "## Data", ""]
    lines += [f"- {k}: {v}" for k, v in card["data"].items()]
    lines += ["", "## Split (by slide / image)", ""]
    for s, c in card["split"].items():
        lines.append(f"- {s}: {len(c['groups'])} groups; classes {c['by_class']}; sources {c['by_source']}")
    lines += ["", "## Metrics", ""]
    for s, m in card["metrics"].items():
        if not m:
            continue
        fp = "n/a" if m.get("fp_per_mm2") is None else f"{m['fp_per_mm2']:.1f}"
        lines.append(f"- {s}: recall {m['recall']:.3f}, precision {m['precision']:.3f}, F1 {m['f1']:.3f}, "
                     f"AP {m['average_precision']:.3f} at threshold {m['threshold']:.2f} "
                     f"({m['positives']} figures, {m['negatives']} imposters); false positives per mm² on "
                     f"{m['field_images']} negative field(s) ({m['field_area_mm2']:.3f} mm²): {fp}")
    lines += ["", f"Best epoch {card['best_epoch']}; hard-negative mining {card['hard_negative_mining']}; "
              f"{card['training_seconds']} s.", "", "## Validation", "",
              f"Validated for a mitotic rate: {'yes' if card.get('validated') else 'no'}. {card.get('validation', '')}",
              "", "## Caveats", "", card["caveats"], ""]
    return "\n".join(lines)
