"""Train (or fine-tune) the torch StarDist nuclei model; write a model folder the loader reads.

Recipe (stardist's, re-done in torch):

* each image is normalised with its own 1 / 99.8 percentiles (as at inference);
* patches are sampled around objects with probability ``foreground_prob``, then flipped,
  rotated by multiples of 90° and colour-jittered in H&E (HED) stain space;
* targets: ``stardist.utils.edt_prob`` on the grid-subsampled labels and
  ``stardist.geometry.star_dist`` (distances in input pixels);
* loss: binary cross-entropy on prob + ``loss_weights[1]`` x (MAE on dist weighted by the
  prob target and normalised by its mean, + ``background_reg`` x |dist| on background);
* the best epoch on validation patches is kept; thresholds (prob, nms) are chosen on the
  validation images by maximising their pooled AJI (or, ``threshold_metric="f1"``, the mean
  F1 at IoU 0.3 / 0.5 / 0.7: stardist's ``optimize_thresholds`` criterion);
* outline redrawing on the hematoxylin map (:mod:`detectors.nuclei.outlines`) is kept when
  it scores better on the validation images (``outline_refinement="auto"``).

``epochs=0`` with ``init`` trains nothing: it re-chooses thresholds and outline redrawing
for an existing model on the given validation images.

Output folder: ``config.json`` (stardist keys + ``"wsi_pipeline": {"mpp", ...}``),
``thresholds.json``, ``weights_best.h5`` (Keras legacy layout: stardist can open it too),
``training.json`` (history and validation scores).
"""

from __future__ import annotations

import collections
import json
import logging
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage as ndi
from torch.nn import functional as F

from detectors.nuclei.outlines import OutlineRefinement, refine_instances
from detectors.nuclei.polygons import rasterise
from detectors.stardist.config import VERSATILE_HE, StarDistConfig, Thresholds, write_model_folder
from detectors.stardist.keras_h5 import save_keras_h5
from detectors.stardist.normalize import Percentiles, compute_percentiles, normalize_numpy
from detectors.stardist.predict import instances_from_prob_dist, predict_prob_dist
from detectors.stardist.unet import StarDistNet
from tiling.errors import InputError
from wsi_pipeline.training.nuclei_data import FullTargets, crop_window, full_targets, resample_pair, transform_patch
from wsi_pipeline.training.trainer import FitResult, fit

log = logging.getLogger(__name__)

PRESETS = {
    "versatile_he": dict(VERSATILE_HE),
    "small": dict(n_rays=32, grid=(2, 2), n_channel_in=3, unet_n_depth=2, unet_n_filter_base=16,
                  net_conv_after_unet=64),
    # versatile_he's depth with half the filters: ~3x cheaper training steps on a CPU
    "compact": dict(n_rays=32, grid=(2, 2), n_channel_in=3, unet_n_depth=3, unet_n_filter_base=16,
                    net_conv_after_unet=64),
    # compact with a fourth level: 4x the weights and twice the receptive field for about the
    # same step time on a CPU (the added level works at 1/16 of the patch's pixels)
    "deep": dict(n_rays=32, grid=(2, 2), n_channel_in=3, unet_n_depth=4, unet_n_filter_base=16,
                 net_conv_after_unet=64),
}
IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg")


@dataclass
class Sample:
    """One training image: (H, W, 3) uint8 RGB, (H, W) int32 labels, its percentiles."""

    name: str
    image: np.ndarray
    labels: np.ndarray
    percentiles: Percentiles = None
    targets: FullTargets | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.percentiles is None:
            self.percentiles = compute_percentiles(self.image)


@dataclass
class NucleiTrainingOptions:
    preset: str = "versatile_he"
    init: str | None = None  # model folder to fine-tune from (its config wins over preset)
    patch_size: int = 256
    batch_size: int = 4
    epochs: int = 100
    steps_per_epoch: int = 50
    learning_rate: float = 3e-4
    val_fraction: float = 0.15
    val_names: tuple[str, ...] = ()
    val_patches_per_image: int = 4
    foreground_prob: float = 0.9
    loss_weights: tuple[float, float] = (1.0, 0.2)
    background_reg: float = 1e-4
    color_jitter: float = 0.05
    stain_jitter: float | None = None  # H&E amounts scaled by 1 +- this (None: color_jitter's value)
    blur: float = 0.0  # share of training patches blurred (Gaussian, sigma 0.3-1.2 px: focus varies by scanner)
    time_limit_min: float | None = None
    anneal: bool = False  # cosine learning-rate decay over the run instead of plateau decay
    seed: int = 0
    train_mpp: float | None = None  # resample the images to this resolution first (None: as given)
    workers: int = 0  # processes preparing batches (0: in the training process)
    nms_threshs: tuple[float, ...] = (0.3, 0.4, 0.5)
    iou_threshs: tuple[float, ...] = (0.3, 0.5, 0.7)
    threshold_metric: str = "aji"  # or "f1" (stardist's criterion); see optimize_thresholds
    outline_refinement: str = "auto"  # "on" / "off", or "auto": whichever is better on validation
    tta: str = "off"  # test-time augmentation (mean of 8 mirror images): "on" / "off" / "auto" as above
    threshold_images: str = "val"  # choose thresholds etc. on "val" images, or on "all" (training + validation)


@dataclass
class TrainResult:
    folder: Path
    thresholds: Thresholds
    val_scores: dict = field(default_factory=dict)  # {"metric", and a score per setting tried}
    fit: FitResult | None = None
    refinement: OutlineRefinement | None = None
    tta: bool = False


# ----------------------------------------------------------------------------- data


def _read_image(path: Path) -> np.ndarray:
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            arr = tifffile.imread(path)
        else:
            from PIL import Image

            with Image.open(path) as im:
                arr = np.asarray(im)
    except Exception as exc:  # noqa: BLE001 - any decoder failure is a bad input file
        raise InputError(path, f"cannot read image: {exc}") from None
    return arr


def _as_rgb(arr: np.ndarray, path: Path) -> np.ndarray:
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=-1)
    if arr.ndim != 3 or arr.shape[-1] not in (3, 4):
        raise InputError(path, f"expected an RGB image, got shape {arr.shape}")
    arr = arr[..., :3]
    if arr.dtype != np.uint8:
        if arr.max() <= 1.0:
            arr = arr * 255.0
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(arr)


def _find_annotation(folder: Path, stem: str, suffixes: tuple[str, ...]) -> Path | None:
    for s in suffixes:
        for candidate in (folder / f"{stem}{s}", folder / f"{stem}_labels{s}", folder / f"{stem}-labels{s}"):
            if candidate.is_file():
                return candidate
    return None


def load_pairs(images: str | Path, *, labels: str | Path | None = None, polygons: str | Path | None = None) -> list[Sample]:
    """Images of a folder with their instance labels, matched by file stem.

    labels : folder of label images (.tif/.png; 0 = background), same stem (or ``stem_labels``).
    polygons : folder of GeoJSON (QuPath) or MoNuSeg/Aperio XML polygons in image pixels.
    """
    from stardist import fill_label_holes

    images = Path(images)
    if not images.is_dir():
        raise InputError(images, "not a folder of training images")
    if (labels is None) == (polygons is None):
        raise InputError(images, "give exactly one of --labels DIR or --geojson DIR")
    ann_dir = Path(labels if labels is not None else polygons)
    if not ann_dir.is_dir():
        raise InputError(ann_dir, "not a folder")
    suffixes = (".tif", ".tiff", ".png") if labels is not None else (".geojson", ".json", ".geojson.gz", ".xml")
    files = sorted(p for p in images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if ann_dir.resolve() == images.resolve() and labels is not None:
        files = [p for p in files if not p.stem.endswith(("_labels", "-labels"))]
    samples = []
    for path in files:
        ann = _find_annotation(ann_dir, path.stem, suffixes)
        if ann is None:
            continue
        image = _as_rgb(_read_image(path), path)
        if labels is not None:
            lbl = _read_image(ann)
            if lbl.ndim != 2:
                raise InputError(ann, f"label image must be 2-D, got shape {lbl.shape}")
        else:
            try:
                from wsi_pipeline.evaluation.io import load_labels
            except ImportError:
                raise InputError(ann, "reading polygons needs wsi_pipeline.evaluation (not installed)") from None
            lbl = load_labels(ann, shape=image.shape[:2])
        if lbl.shape != image.shape[:2]:
            raise InputError(ann, f"labels are {lbl.shape}, the image is {image.shape[:2]}")
        samples.append(Sample(path.stem, image, fill_label_holes(lbl.astype(np.int32))))
    if not samples:
        raise InputError(ann_dir, f"no annotations matching the images in {images} (same file stem)")
    return samples


def split_validation(samples: list[Sample], *, val_names=(), val_fraction: float = 0.15, seed: int = 0):
    """(train, val) by image: named ones, else a seeded ``val_fraction`` (at least one when >= 2)."""
    if val_names:
        unknown = set(val_names) - {s.name for s in samples}
        if unknown:
            raise InputError(None, f"validation images not found: {', '.join(sorted(unknown))}")
        val = [s for s in samples if s.name in val_names]
    else:
        n_val = 0 if len(samples) < 2 else max(1, round(val_fraction * len(samples)))
        order = np.random.default_rng(seed).permutation(len(samples))
        val = [samples[i] for i in order[:n_val]]
    train = [s for s in samples if s not in val]
    return train, (val or train)


# ---------------------------------------------------------------------- augmentation


def hed_jitter(rgb: np.ndarray, rng: np.random.Generator, *, sigma: float) -> np.ndarray:
    """(H, W, 3) float RGB 0..255 -> same, stain amounts scaled by 1 +- sigma and shifted."""
    from skimage.color import hed2rgb, rgb2hed

    hed = rgb2hed(np.clip(rgb, 0, 255) / 255.0)
    hed = hed * rng.uniform(1 - sigma, 1 + sigma, 3) + rng.uniform(-sigma, sigma, 3) * 0.05
    return np.clip(hed2rgb(hed), 0, 1) * 255.0


def color_jitter(img: np.ndarray, rng: np.random.Generator, *, jitter: float,
                 stain: float | None = None) -> np.ndarray:
    """(H, W, 3) float RGB 0..255 -> float32: H&E stain jitter (``stain``, default ``jitter``),
    then brightness/contrast (``jitter``)."""
    img = img.astype(np.float32)
    if jitter > 0:
        img = hed_jitter(img, rng, sigma=jitter if stain is None else stain).astype(np.float32)
        img = img * rng.uniform(1 - jitter, 1 + jitter) + rng.uniform(-10, 10) * jitter / 0.05
    return np.ascontiguousarray(img)


def sample_targets(s: Sample, n_rays: int) -> FullTargets:
    """The whole image's targets, computed on first use and kept on the sample."""
    if s.targets is None or s.targets.dist.shape[-1] != n_rays:
        s.targets = full_targets(s.labels, n_rays=n_rays)
    return s.targets


def _patch(s: Sample, size: int, rng: np.random.Generator, foreground_prob: float, n_rays: int):
    """A (size, size) window of image, labels, prob and dist (padded when the image is smaller)."""
    t = sample_targets(s, n_rays)
    img, lbl, prob, dist = s.image, s.labels, t.prob, t.dist
    h, w = lbl.shape
    if h < size or w < size:
        ph, pw = max(0, size - h), max(0, size - w)
        img = np.pad(img, ((0, ph), (0, pw), (0, 0)), mode="reflect")
        lbl, prob = np.pad(lbl, ((0, ph), (0, pw))), np.pad(prob, ((0, ph), (0, pw)))
        dist = np.pad(dist, ((0, ph), (0, pw), (0, 0)))
    y0, x0 = crop_window(lbl, size, rng, foreground_prob)
    win = (slice(y0, y0 + size), slice(x0, x0 + size))
    return img[win], lbl[win], prob[win], dist[win]


def make_batch(samples: list[Sample], rng: np.random.Generator, *, config: StarDistConfig,
               options: NucleiTrainingOptions, train: bool = True):
    """(x (B, 3, P, P), (prob (B, 1, p, p), dist (B, R, p, p))) torch tensors.

    Targets are cut from the whole image's (``sample_targets``); flips and 90° rotations
    permute the rays (``nuclei_data``) instead of recomputing them.
    """
    xs, probs, dists = [], [], []
    n, (gy, gx) = config.n_rays, config.grid
    for _ in range(options.batch_size):
        s = samples[int(rng.integers(len(samples)))]
        img, lbl, prob, dist = _patch(s, options.patch_size, rng, options.foreground_prob, n)
        img = img.astype(np.float32)
        if train:
            rot = int(rng.integers(4)) if n % 4 == 0 else 0
            flip = bool(rng.random() < 0.5) and n % 2 == 0
            img, lbl, prob, dist = transform_patch(img, lbl, prob, dist, rot=rot, flip=flip)
            img = color_jitter(img, rng, jitter=options.color_jitter, stain=options.stain_jitter)
            if options.blur > 0 and rng.random() < options.blur:
                img = ndi.gaussian_filter(img, (rng.uniform(0.3, 1.2),) * 2 + (0,))
        xs.append(normalize_numpy(np.ascontiguousarray(img), s.percentiles).transpose(2, 0, 1))
        probs.append(np.ascontiguousarray(prob[::gy, ::gx])[None])
        dists.append(np.ascontiguousarray(dist[::gy, ::gx].transpose(2, 0, 1)))
    return torch.from_numpy(np.stack(xs)), (torch.from_numpy(np.stack(probs)), torch.from_numpy(np.stack(dists)))


_POOL_STATE: dict = {}


def _pool_init(samples, config, options) -> None:
    _POOL_STATE.update(samples=samples, config=config, options=options)


def _pool_batch(seed: int):
    st = _POOL_STATE
    return make_batch(st["samples"], np.random.default_rng(seed), config=st["config"], options=st["options"])


class BatchStream:
    """Training batches from ``workers`` processes (targets and augmentation are CPU work)."""

    def __init__(self, samples, *, config, options, seed: int) -> None:
        import multiprocessing as mp

        # spawn, not fork: a fork after BLAS/OpenMP threads started can deadlock the children
        ctx = mp.get_context("spawn")
        self.pool = ctx.Pool(options.workers, initializer=_pool_init, initargs=(samples, config, options))
        self.seeds = np.random.default_rng(seed)
        self.pending = collections.deque(self._submit() for _ in range(2 * options.workers))

    def _submit(self):
        return self.pool.apply_async(_pool_batch, (int(self.seeds.integers(1 << 62)),))

    def __call__(self, rng):
        batch = self.pending.popleft().get()
        self.pending.append(self._submit())
        return batch

    def close(self) -> None:
        self.pool.terminate()


# ----------------------------------------------------------------------------- loss


def stardist_loss(net: torch.nn.Module, x: torch.Tensor, target, *, loss_weights=(1.0, 0.2),
                  background_reg: float = 1e-4) -> torch.Tensor:
    """StarDist's loss: BCE(prob) + w * (masked MAE(dist) / mean(mask) + reg * |dist| off-object)."""
    prob_true, dist_true = target
    prob, dist = net(x)
    bce = F.binary_cross_entropy(prob.clamp(1e-7, 1 - 1e-7), prob_true)
    mask = prob_true
    mae = (mask * (dist - dist_true).abs()).mean(dim=1, keepdim=True)
    reg = ((1 - mask) * dist.abs()).mean(dim=1, keepdim=True)
    dist_loss = (mae / (mask.mean() + 1e-7) + background_reg * reg).mean()
    return loss_weights[0] * bce + loss_weights[1] * dist_loss


# ----------------------------------------------------------------------- thresholds


def f1_scores(gt: np.ndarray, pred: np.ndarray, iou_threshs=(0.3, 0.5, 0.7)) -> tuple[np.ndarray, int, int]:
    """True-positive counts at each IoU threshold (optimal one-to-one matching, as
    ``stardist.matching``), number of gt and predicted objects; numpy/scipy only."""
    from scipy.optimize import linear_sum_assignment

    g, gi = np.unique(gt, return_inverse=True)
    p, pi = np.unique(pred, return_inverse=True)
    inter = np.bincount(gi.ravel() * len(p) + pi.ravel(), minlength=len(g) * len(p)).reshape(len(g), len(p))
    area_g, area_p = inter.sum(1), inter.sum(0)
    iou = inter / np.maximum(area_g[:, None] + area_p[None, :] - inter, 1)
    iou = iou[g > 0][:, p > 0]
    tps = []
    for t in iou_threshs:
        cost = -((iou >= t) * iou)
        r, c = linear_sum_assignment(cost) if iou.size else (np.empty(0, int), np.empty(0, int))
        tps.append(int((iou[r, c] >= t).sum()))
    return np.asarray(tps), int((g > 0).sum()), int((p > 0).sum())


def _val_labels(prob, dist, s: Sample, *, grid, thresholds: Thresholds, refinement: OutlineRefinement | None,
                mpp: float) -> np.ndarray:
    """(H, W) labels predicted on validation image ``s`` from its network maps, outlines
    redrawn when ``refinement`` is given (as :class:`StarDistDetector` does with its default
    80-px largest object)."""
    labels, _ = instances_from_prob_dist(prob, dist, grid=grid, shape=s.labels.shape, thresholds=thresholds)
    if refinement is None or not labels.any():
        return labels
    polys, _ = refine_instances(labels, s.image, mpp=mpp, refinement=refinement, max_radius=40.0)
    return rasterise(polys, s.labels.shape)


def optimize_thresholds(net: StarDistNet, val: list[Sample], *, device: torch.device, nms_threshs=(0.3, 0.4, 0.5),
                        iou_threshs=(0.3, 0.5, 0.7), metric: str = "aji", refinement: OutlineRefinement | None = None,
                        mpp: float = 0.25, max_candidates_per_object: int = 100,
                        tta: bool = False) -> tuple[Thresholds, float]:
    """prob / nms thresholds maximising ``metric`` on the validation images.

    metric : "aji" (pooled aggregated Jaccard index: outlines and splits count, as in
    MoNuSeg) or "f1" (mean F1 over ``iou_threshs``, stardist's ``optimize_thresholds``
    criterion). ``refinement``: score the outlines redrawn as the detector will draw them;
    ``tta``: from the network's mean over 8 mirror images, as the detector will make them.
    A coarse prob grid for every nms threshold, then a fine one around the best. A setting
    that yields more than ``max_candidates_per_object`` candidates per true object scores 0
    without running NMS (it cannot be the best, and NMS on it is slow).
    """
    from detectors.stardist.predict import candidates
    from wsi_pipeline.evaluation import score_labels

    if metric not in ("aji", "f1"):
        raise InputError(None, f"unknown threshold metric {metric!r}; use aji or f1")
    net.eval()
    maps = [predict_prob_dist(net, normalize_numpy(s.image, s.percentiles), device=device, tta=tta) for s in val]
    n_true = sum(int(s.labels.max() > 0) and len(np.unique(s.labels)) - 1 for s in val)
    cache: dict[tuple[float, float], float] = {}

    def score(prob_t: float, nms_t: float) -> float:
        key = (round(float(prob_t), 4), nms_t)
        if key in cache:
            return cache[key]
        n_cand = sum(len(candidates(p, d, grid=net.config.grid, shape=s.labels.shape, prob_thresh=prob_t)[0])
                     for (p, d), s in zip(maps, val))
        if n_cand > max_candidates_per_object * max(n_true, 1):
            cache[key] = 0.0
            return 0.0
        tp, n_gt, n_pred, total = np.zeros(len(iou_threshs)), 0, 0, None
        for (p, d), s in zip(maps, val):
            labels = _val_labels(p, d, s, grid=net.config.grid, thresholds=Thresholds(prob_t, nms_t),
                                 refinement=refinement, mpp=mpp)
            if metric == "aji":
                sc = score_labels(s.labels, labels)
                total = sc if total is None else total + sc
            else:
                t, g, q = f1_scores(s.labels, labels, iou_threshs)
                tp, n_gt, n_pred = tp + t, n_gt + g, n_pred + q
        cache[key] = float(total.aji) if metric == "aji" else float((2 * tp / np.maximum(n_gt + n_pred, 1)).mean())
        return cache[key]

    coarse = np.arange(0.1, 0.91, 0.1)
    best_nms, best_p = max(((n, p) for n in nms_threshs for p in coarse), key=lambda c: score(c[1], c[0]))
    if score(best_p, best_nms) > 0:
        fine = np.arange(max(0.02, best_p - 0.08), min(0.98, best_p + 0.081), 0.02)
        best_p = max(fine, key=lambda p: score(p, best_nms))
    return Thresholds(float(round(best_p, 4)), float(best_nms)), score(best_p, best_nms)


def _choices(option: str, name: str) -> tuple[bool, ...]:
    if option not in ("auto", "on", "off"):
        raise InputError(None, f"{name} must be auto, on or off, got {option!r}")
    return {"auto": (False, True), "off": (False,), "on": (True,)}[option]


def choose_postprocessing(net: StarDistNet, val: list[Sample], *, device: torch.device, mpp: float,
                          options: NucleiTrainingOptions) -> tuple[Thresholds, OutlineRefinement | None, bool, dict]:
    """Thresholds, whether to redraw outlines and whether to average 8 mirror images
    (``options.outline_refinement`` and ``options.tta``: "auto" tries both and keeps whichever
    scores better on the images ``val``; "on" / "off" force it).

    Returns (thresholds, refinement or None, tta, {setting: score} of what was tried, the
    settings named "plain" / "refined", "+tta" added).
    """
    refine_opts = _choices(options.outline_refinement, "outline_refinement")
    tta_opts = _choices(options.tta, "tta")
    results = {}
    for tta in tta_opts:
        for refine in refine_opts:
            name = ("refined" if refine else "plain") + ("+tta" if tta else "")
            refinement = OutlineRefinement() if refine else None
            thresholds, score = optimize_thresholds(net, val, device=device, nms_threshs=options.nms_threshs,
                                                    iou_threshs=options.iou_threshs, metric=options.threshold_metric,
                                                    refinement=refinement, mpp=mpp, tta=tta)
            results[name] = (thresholds, score, refinement, tta)
            log.info("validation %s %s: %.4f (prob %.3f, nms %.2f)", options.threshold_metric, name, score,
                     thresholds.prob, thresholds.nms)
    best = max(results, key=lambda k: results[k][1])
    thresholds, _, refinement, tta = results[best]
    return thresholds, refinement, tta, {k: v[1] for k, v in results.items()}


# ------------------------------------------------------------------------- training


def build_net(options: NucleiTrainingOptions) -> StarDistNet:
    if options.init:
        from detectors.stardist.detector import load_stardist_net

        net, _, _ = load_stardist_net(options.init)
        return net
    if options.preset not in PRESETS:
        raise InputError(None, f"unknown preset {options.preset!r}; use one of {', '.join(PRESETS)}")
    return StarDistNet(StarDistConfig(**PRESETS[options.preset]))


def train_nuclei(samples: list[Sample], *, out: str | Path, mpp: float, options: NucleiTrainingOptions | None = None,
                 device: torch.device | str = "cpu") -> TrainResult:
    """Train on ``samples`` and write the model folder ``out`` (atomically: tmp name, then rename)."""
    options = options or NucleiTrainingOptions()
    device = torch.device(device)
    out = Path(out)
    if options.train_mpp is not None and options.train_mpp != mpp:
        if options.train_mpp <= 0:
            raise InputError(None, f"train_mpp must be positive, got {options.train_mpp}")
        scale = mpp / options.train_mpp
        log.info("resampling %d images from %.3f to %.3f um/px", len(samples), mpp, options.train_mpp)
        samples = [Sample(s.name, *resample_pair(s.image, s.labels, scale)) for s in samples]
        mpp = options.train_mpp
    net = build_net(options)
    config = net.config
    if options.patch_size % config.div_by[0] or options.patch_size % config.div_by[1]:
        raise InputError(None, f"--patch-size must be a multiple of {config.div_by[0]}")
    train, val = split_validation(samples, val_names=options.val_names, val_fraction=options.val_fraction,
                                  seed=options.seed)
    log.info("training on %d images, validating on %d (%s)", len(train), len(val), ", ".join(s.name for s in val))
    val_rng = np.random.default_rng(options.seed + 1)
    n_val_batches = max(1, len(val) * options.val_patches_per_image // options.batch_size)
    val_batches = [make_batch(val, val_rng, config=config, options=options, train=False) for _ in range(n_val_batches)]

    def loss_fn(model, x, target):
        return stardist_loss(model, x, target, loss_weights=options.loss_weights, background_reg=options.background_reg)

    t0 = time.perf_counter()
    stream = BatchStream(train, config=config, options=options, seed=options.seed) if options.workers > 0 else None
    try:
        result = fit(
            net, sample_train=stream or (lambda rng: make_batch(train, rng, config=config, options=options)),
            loss_fn=loss_fn, val_batches=val_batches, epochs=options.epochs, steps_per_epoch=options.steps_per_epoch,
            device=device, lr=options.learning_rate,
            time_limit_s=None if options.time_limit_min is None else 60 * options.time_limit_min,
            anneal=options.anneal, seed=options.seed,
        )
    finally:
        if stream is not None:
            stream.close()
    if options.threshold_images not in ("val", "all"):
        raise InputError(None, f"threshold_images must be val or all, got {options.threshold_images!r}")
    chosen_on = val if options.threshold_images == "val" else train + [s for s in val if s not in train]
    thresholds, refinement, tta, val_scores = choose_postprocessing(net, chosen_on, device=device, mpp=mpp,
                                                                    options=options)
    log.info("thresholds prob %.3f nms %.2f, outlines %s, %s (%s on %d images: %s)", thresholds.prob, thresholds.nms,
             "redrawn" if refinement else "as predicted", "8 mirror images" if tta else "no test-time augmentation",
             options.threshold_metric, len(chosen_on), val_scores)
    meta = {"mpp": float(mpp), "name": out.name, "trained_by": "wsi-pipeline train nuclei",
            "train_images": [s.name for s in train], "val_images": [s.name for s in val]}
    if refinement is not None:
        meta["outline_refinement"] = refinement.to_dict()
    if tta:
        meta["tta"] = True
    config = StarDistConfig.from_dict({**config.to_dict(), "wsi_pipeline": meta})
    tmp = out.with_name(f".{out.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    write_model_folder(tmp, config, thresholds)
    save_keras_h5(net.cpu(), tmp / "weights_best.h5")
    val_scores = {"metric": options.threshold_metric, **val_scores}
    report = {"options": asdict(options), "history": result.to_dict(), "validation": val_scores,
              "chosen_on": [s.name for s in chosen_on],
              "thresholds": thresholds.to_dict(), "seconds": time.perf_counter() - t0}
    (tmp / "training.json").write_text(json.dumps(report, indent=2, default=str))
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return TrainResult(out, thresholds, val_scores, result, refinement, tta)
