"""Train the torch StarDist on the MoNuSeg dev tiles with leave-tiles-out validation; report AJI.

Split (by sorted file name, fixed): the first 4 tiles train, the 5th validates (best epoch,
thresholds by AJI, whether outlines are redrawn on the hematoxylin map and, with ``--tta
auto``, whether the network's output is averaged over 8 mirror images),
the last 2 are held out for testing: they are never seen in training or in those choices.
``--fold K`` splits leave-one-tile-out instead: tile K is the test tile, tile K+1 (mod the
number of tiles) validates, the other 5 train; ``scripts/monuseg_cv.py`` runs every fold and
pools the test tiles. ``--extra-pack`` adds training tiles from another pack (say, tiles
labelled by the weight-free detector: ``scripts/pseudo_label_pack.py``), never used for
validation or testing.
``--threshold-images all`` makes those choices on the 4 training tiles and the validation
tile together. It is not the default: it lets tiles the network was trained on into the
choice, and it did not help (one compact model, ``--tta auto``: held-out AJI 0.610 chosen
on all 5 tiles, 0.611 on the validation tile). Test scores are printed for the choices
validation made and, for information, with the other outline choice. The
weight-free detector is scored on the same 2 test tiles in the same run (which commit of
it is recorded). Prints and writes ``results.json`` (AJI, F1@0.5, PQ
per test tile and pooled; steps, seconds per step, CPU seconds) into the model folder, and the
test tiles' predicted labels (``test_labels.npz``; ``test_labels_other_outlines.npz``).

Training may run at a coarser resolution than the data (``--train-mpp 0.5`` on the 0.25
µm/px tiles: 4x less work per unit of tissue); test predictions are then made on the tile
resampled to the model's mpp and their polygons drawn back at the tile's own resolution,
as the whole-slide pipeline does.

    .venv/bin/python scripts/train_monuseg.py --data ../shared/data/nuclei/monuseg-dev \\
        --out /tmp/monuseg-model --minutes 55
    # --init MODEL --epochs 0: no training, only the validation choices again and the test scores
    # --steps N: exactly N training steps, no time limit (a CPU run's step count, on a GPU)
    # --pack FILE.npz instead of --data: images/labels/names saved by --save-pack (for a
    # machine without the data folder)

MoNuSeg is CC BY-NC-SA evaluation data: keep the model folder out of the repository.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA_MPP = 0.25
# monuseg-train tiles kept for validation with --test-data: lung, breast, kidney (3 of the 5 organs)
TRAIN_VAL_TILES = ("TCGA-21-5786-01Z-00-DX1", "TCGA-AR-A1AS-01Z-00-DX1", "TCGA-B0-5710-01Z-00-DX1")


def load_pack(path: Path) -> list:
    """Samples from a pack: ``names`` and ``image_{i}`` / ``labels_{i}`` arrays (:func:`save_pack`)."""
    from wsi_pipeline.training.nuclei import Sample

    z = np.load(path)
    return [Sample(str(n), z[f"image_{i}"], z[f"labels_{i}"]) for i, n in enumerate(z["names"])]


def save_pack(path: Path, samples: list) -> None:
    """Write ``samples`` as a pack (:func:`load_pack`), under a temporary name first."""
    from wsi_pipeline.atomic import atomic_path

    arrays = {"names": np.array([s.name for s in samples])}
    for i, s in enumerate(samples):
        arrays[f"image_{i}"], arrays[f"labels_{i}"] = s.image, s.labels
    with atomic_path(path) as tmp:
        np.savez_compressed(tmp, **arrays)


def load_samples(args):
    from wsi_pipeline.training.nuclei import load_pairs

    return load_pack(args.pack) if args.pack else load_pairs(args.data, polygons=args.data)


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def summary(sc) -> dict:
    """ImageScores -> {aji, f1@0.5, pq@0.5, n_gt, n_pred}."""
    at = sc.at(0.5)
    return {"aji": sc.aji, "f1@0.5": at["f1"], "pq@0.5": at["pq"], "n_gt": sc.n_gt, "n_pred": sc.n_pred}


def predict_labels(detector, image: np.ndarray, *, scale: float) -> np.ndarray:
    """(H, W, 3) uint8 tile -> (H, W) labels, as the whole-slide pipeline makes them: the
    detector runs on the tile resampled by ``scale`` (model pixels per tile pixel) and its
    polygons are drawn back at the tile's resolution."""
    import shapely

    from detectors.nuclei.polygons import rasterise
    from wsi_pipeline.training.nuclei_data import resample_pair

    small, _ = resample_pair(image, np.zeros(image.shape[:2], np.int32), scale)
    polys = shapely.transform(detector.predict(small).geometry, lambda xy: xy / scale)
    return rasterise(polys, image.shape[:2])


def split(samples: list, fold: int | None, *, test: list | None = None,
          val_names: tuple[str, ...] = ()) -> tuple[list, list, list]:
    """(train, val, test) of the sorted samples: with ``test`` (another folder's tiles), the
    samples named in ``val_names`` validate and the rest train; otherwise the fixed split (first
    4 / 5th / the rest) or, for ``fold`` K, leave-one-tile-out: tile K tests, tile K+1 (mod n)
    validates, the rest train."""
    if test is not None:
        val = [s for s in samples if s.name in val_names]
        missing = set(val_names) - {s.name for s in val}
        if missing or not val:
            raise SystemExit(f"error: --val {','.join(val_names)}: not among the --data tiles ({sorted(missing)})")
        return [s for s in samples if s.name not in val_names], val, test
    if fold is None:
        return samples[:4], samples[4:5], samples[5:]
    n = len(samples)
    if not 0 <= fold < n or n < 3:
        raise SystemExit(f"error: --fold {fold}: the data has {n} tiles (folds 0..{n - 1}, at least 3 tiles)")
    test, val = samples[fold], samples[(fold + 1) % n]
    return [s for s in samples if s is not test and s is not val], [val], [test]


def test_scores(detector, test, *, scale: float) -> tuple[dict, dict, dict]:
    """(per-tile summaries, pooled summary, {name: predicted labels}) of ``detector`` on the test samples."""
    from wsi_pipeline.evaluation import score_labels

    per, total, labels = {}, None, {}
    for s in test:
        labels[s.name] = predict_labels(detector, s.image, scale=scale)
        sc = score_labels(s.labels, labels[s.name])
        per[s.name], total = summary(sc), sc if total is None else total + sc
    return per, summary(total), labels


def weightfree_scores(test) -> dict:
    """The weight-free detector on the test tiles (calibrated per tile, as the benchmark does)."""
    from detectors.nuclei.polygons import rasterise
    from detectors.nuclei.weightfree import WeightFreeNucleiDetector
    from wsi_pipeline.evaluation import score_labels

    rel = "detectors/nuclei/weightfree.py"
    commit = subprocess.run(["git", "log", "-1", "--format=%h %s", "--", rel], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    dirty = bool(subprocess.run(["git", "status", "--porcelain", "--", "detectors/nuclei"], cwd=ROOT,
                                capture_output=True, text=True).stdout.strip())
    per, total, t0 = {}, None, time.perf_counter()
    for s in test:
        res = WeightFreeNucleiDetector(device="cpu").calibrate(s.image).predict(s.image)
        sc = score_labels(s.labels, rasterise(res.geometry, s.labels.shape))
        per[s.name], total = summary(sc), sc if total is None else total + sc
    return {"commit": commit, "uncommitted_changes": dirty, "seconds": time.perf_counter() - t0,
            "test": per, "test_pooled": summary(total)}


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path)
    ap.add_argument("--test-data", type=Path, default=None,
                    help="a second folder whose tiles are the test set (e.g. monuseg-dev); --data's tiles then "
                         "train, except those named by --val, which validate")
    ap.add_argument("--val", default=",".join(TRAIN_VAL_TILES),
                    help="with --test-data: comma-separated --data tile stems kept for validation")
    ap.add_argument("--pack", type=Path)
    ap.add_argument("--save-pack", type=Path)
    ap.add_argument("--out", type=Path, default=Path("/tmp/monuseg-model"))
    ap.add_argument("--minutes", type=float, default=55)
    ap.add_argument("--steps", type=int, default=None,
                    help="train exactly this many steps (a multiple of --steps-per-epoch), with no time limit; the "
                         "learning rate anneals over the steps: a CPU run's step count, run on a GPU")
    ap.add_argument("--fold", type=int, default=None,
                    help="leave-one-tile-out: tile K (sorted) tests, tile K+1 validates, the others train")
    ap.add_argument("--epochs", type=int, default=100_000,
                    help="0 with --init: train nothing, only choose thresholds and outline redrawing on the val tile")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--patch-size", type=int, default=256)
    ap.add_argument("--steps-per-epoch", type=int, default=50)
    ap.add_argument("--learning-rate", type=float, default=1e-3)
    ap.add_argument("--preset", default="compact")
    ap.add_argument("--init", type=Path, default=None, help="model folder to continue from (its architecture wins)")
    ap.add_argument("--train-mpp", type=float, default=0.5, help="train at this resolution (data: 0.25 um/px)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--stain-jitter", type=float, default=None,
                    help="H&E amounts scaled by 1 +- this in training (default: the brightness jitter, 0.05)")
    ap.add_argument("--blur", type=float, default=0.0, help="share of training patches blurred (sigma 0.3-1.2 px)")
    ap.add_argument("--plateau", action="store_true", help="plateau learning-rate decay instead of cosine annealing")
    ap.add_argument("--tta", choices=("auto", "on", "off"), default="off",
                    help="average the network over 8 mirror images (auto: if better on the choice images)")
    ap.add_argument("--threshold-images", choices=("val", "all"), default="val",
                    help="tiles the thresholds, outline redrawing and tta are chosen on (all: training + validation)")
    ap.add_argument("--extra-pack", type=Path, default=None,
                    help="a pack (--save-pack's layout) of more training tiles, e.g. pseudo-labelled ones: always "
                         "trained on, never validated or tested on")
    ap.add_argument("--no-weightfree", action="store_true", help="skip scoring the weight-free detector")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    epochs, minutes = args.epochs, args.minutes
    if args.steps is not None:  # checked before any data is read or scored
        if args.steps <= 0 or args.steps % args.steps_per_epoch:
            raise SystemExit(f"error: --steps {args.steps} is not a positive multiple of --steps-per-epoch "
                             f"{args.steps_per_epoch}")
        epochs, minutes = args.steps // args.steps_per_epoch, None
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stdout)
    samples = sorted(load_samples(args), key=lambda s: s.name)
    if args.save_pack:
        save_pack(args.save_pack, samples)
        print(f"saved {len(samples)} samples to {args.save_pack}")
        return 0

    import torch

    from detectors.device import select_device
    from detectors.nuclei.outlines import OutlineRefinement
    from detectors.stardist import load_stardist_model
    from wsi_pipeline.training.nuclei import NucleiTrainingOptions, train_nuclei

    device = select_device(args.device)
    test_set = None
    if args.test_data:
        from wsi_pipeline.training.nuclei import load_pairs

        test_set = sorted(load_pairs(args.test_data, polygons=args.test_data), key=lambda s: s.name)
    train, val, test = split(samples, args.fold, test=test_set,
                             val_names=tuple(v for v in args.val.split(",") if v))
    if args.extra_pack:
        train = train + load_pack(args.extra_pack)
    print(f"train {[s.name for s in train]}\nval {[s.name for s in val]}\ntest {[s.name for s in test]}", flush=True)
    weightfree = None if args.no_weightfree else weightfree_scores(test)
    options = NucleiTrainingOptions(preset=args.preset, epochs=epochs, steps_per_epoch=args.steps_per_epoch,
                                    batch_size=args.batch_size, patch_size=args.patch_size,
                                    learning_rate=args.learning_rate, val_names=tuple(s.name for s in val),
                                    val_patches_per_image=16, time_limit_min=minutes, workers=args.workers,
                                    train_mpp=args.train_mpp, seed=args.seed, anneal=not args.plateau,
                                    init=str(args.init) if args.init else None, tta=args.tta,
                                    threshold_images=args.threshold_images, stain_jitter=args.stain_jitter,
                                    blur=args.blur)
    t0, c0 = time.perf_counter(), cpu_seconds()
    res = train_nuclei(train + val, out=args.out, mpp=DATA_MPP, options=options, device=device)
    train_s, train_cpu = time.perf_counter() - t0, cpu_seconds() - c0
    detector = load_stardist_model(args.out, device=device)
    scale = DATA_MPP / detector.spec.mpp
    per_image, pooled, labels = test_scores(detector, test, scale=scale)
    np.savez_compressed(args.out / "test_labels.npz", **labels)
    # the other choice of outline redrawing, for information only (validation chose the above)
    other = detector.with_refinement(None if detector.refinement else OutlineRefinement())
    _, other_pooled, other_labels = test_scores(other, test, scale=scale)
    np.savez_compressed(args.out / "test_labels_other_outlines.npz", **other_labels)
    steps = len(res.fit.train_loss) * args.steps_per_epoch
    out = {"device": str(device), "torch_threads": torch.get_num_threads(), "preset": args.preset,
           "learning_rate": args.learning_rate, "anneal": not args.plateau, "init": str(args.init) if args.init else None,
           "extra_pack": str(args.extra_pack) if args.extra_pack else None,
           "model_mpp": detector.spec.mpp, "outlines_redrawn": detector.refinement is not None,
           "tta": detector.tta, "threshold_images": args.threshold_images,
           "fold": args.fold, "train_tiles": [s.name for s in train], "val_tiles": [s.name for s in val],
           "patch_size": args.patch_size, "batch_size": args.batch_size,
           "train_seconds": train_s, "train_cpu_seconds": train_cpu, "fit_seconds": res.fit.seconds,
           "epochs": len(res.fit.train_loss), "steps": steps, "seconds_per_step": res.fit.seconds / max(steps, 1),
           "best_epoch": res.fit.best_epoch + 1, "thresholds": detector.thresholds.to_dict(),
           "validation": res.val_scores, "test": per_image, "test_pooled": pooled,
           "test_pooled_other_outlines": other_pooled, "weightfree": weightfree}
    (args.out / "results.json").write_text(json.dumps(out, indent=2))
    print(json.dumps(out, indent=2))
    print(f"\nheld-out test tiles ({', '.join(s.name for s in test)}), pooled:")
    print(f"  {'':<34}{'AJI':>7}{'F1@0.5':>8}{'PQ':>7}")
    chosen = "outlines redrawn" if detector.refinement else "outlines as predicted"
    chosen += ", tta" if detector.tta else ""
    rows = [(f"StarDist, {chosen}", pooled), ("  (not chosen: the other)", other_pooled)]
    if weightfree:
        rows.append((f"weight-free {weightfree['commit'].split()[0]}", weightfree["test_pooled"]))
    for name, r in rows:
        print(f"  {name:<34}{r['aji']:>7.3f}{r['f1@0.5']:>8.3f}{r['pq@0.5']:>7.3f}")
    print(f"  {steps} steps in {res.fit.seconds:.0f} s ({out['seconds_per_step']:.2f} s/step incl. validation)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
