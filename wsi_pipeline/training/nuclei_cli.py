"""Arguments and entry point of ``wsi-pipeline train nuclei`` (torch imported in ``run``)."""

from __future__ import annotations

HELP = "Train or fine-tune the torch StarDist nuclei model; writes a model folder for --nuclei-model."


def add_arguments(parser) -> None:
    parser.add_argument("--images", required=True, help="folder of RGB training images (.tif/.png/.jpg)")
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--labels", help="folder of instance label images with the same file stems")
    src.add_argument("--geojson", help="folder of polygons with the same file stems: GeoJSON (QuPath) or MoNuSeg XML")
    parser.add_argument("--mpp", type=float, required=True, help="microns per pixel of the training images")
    parser.add_argument("--out", required=True, help="model folder to write (config.json, thresholds.json, weights_best.h5)")
    parser.add_argument("--epochs", type=int, default=100,
                        help="0 with --init: train nothing, only choose thresholds, outline redrawing and --tta again")
    parser.add_argument("--steps-per-epoch", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--patch-size", type=int, default=256)
    parser.add_argument("--learning-rate", type=float, default=3e-4)
    parser.add_argument("--preset", default="versatile_he",
                        help="architecture: versatile_he (default), compact (depth 3, 16 filters: for CPU), deep "
                             "(compact with a 4th level: 4x the weights, about the same CPU time) or small")
    parser.add_argument("--init", default=None, help="model folder to fine-tune from (e.g. a fetched stardist-he)")
    parser.add_argument("--val", default=None, help="comma-separated image stems kept for validation")
    parser.add_argument("--val-fraction", type=float, default=0.15)
    parser.add_argument("--time-limit", type=float, default=None, help="stop after this many minutes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-mpp", type=float, default=None,
                        help="resample the images to this um/px before training (e.g. 0.5 for 0.25 um/px data: 4x cheaper);"
                             " the model folder records it and the pipeline resamples slides to it")
    parser.add_argument("--anneal", action="store_true",
                        help="cosine learning-rate decay over the run (over --time-limit when given) instead of plateau decay")
    parser.add_argument("--threshold-metric", choices=("aji", "f1"), default="aji",
                        help="validation score the prob/nms thresholds maximise: aji (default) or f1 (stardist's mean F1)")
    parser.add_argument("--outline-refinement", choices=("auto", "on", "off"), default="auto",
                        help="redraw outlines on the hematoxylin map: auto (default: if better on validation), on, off")
    parser.add_argument("--tta", choices=("auto", "on", "off"), default="off",
                        help="average the network over 8 mirror images of each tile (8x its work): off (default), on, "
                             "or auto (if better on validation)")
    parser.add_argument("--threshold-images", choices=("val", "all"), default="val",
                        help="images the thresholds, outline redrawing and --tta auto are chosen on: val (default) or "
                             "all (training and validation images: steadier when there are very few)")
    parser.add_argument("--stain-jitter", type=float, default=None,
                        help="scale the H&E amounts of training patches by 1 +- this (default 0.05; 0.3-0.4 raised "
                             "MoNuSeg validation AJI, not its test AJI: see models/stardist-monuseg)")
    parser.add_argument("--blur", type=float, default=0.0,
                        help="share of training patches blurred (Gaussian, sigma 0.3-1.2 px; default 0)")
    parser.add_argument("--workers", type=int, default=0, help="processes preparing training batches (0: none)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")


def run(args) -> int:
    from pathlib import Path

    from detectors.device import select_device
    from tiling.errors import InputError
    from wsi_pipeline.training.nuclei import NucleiTrainingOptions, load_pairs, train_nuclei

    if args.mpp <= 0:
        raise InputError(None, f"--mpp must be positive, got {args.mpp}")
    if args.train_mpp is not None and args.train_mpp <= 0:
        raise InputError(None, f"--train-mpp must be positive, got {args.train_mpp}")
    out = Path(args.out)
    if out.exists() and any(out.iterdir()) and not (out / "config.json").exists():
        raise InputError(out, "exists and is not a model folder; refusing to overwrite it")
    device = select_device(args.device)
    samples = load_pairs(args.images, labels=args.labels, polygons=args.geojson)
    options = NucleiTrainingOptions(
        preset=args.preset, init=args.init, patch_size=args.patch_size, batch_size=args.batch_size,
        epochs=args.epochs, steps_per_epoch=args.steps_per_epoch, learning_rate=args.learning_rate,
        val_fraction=args.val_fraction, val_names=tuple(v for v in (args.val or "").split(",") if v),
        time_limit_min=args.time_limit, seed=args.seed, workers=args.workers, train_mpp=args.train_mpp,
        anneal=args.anneal, threshold_metric=args.threshold_metric, outline_refinement=args.outline_refinement,
        tta=args.tta, threshold_images=args.threshold_images, stain_jitter=args.stain_jitter, blur=args.blur,
    )
    res = train_nuclei(samples, out=out, mpp=args.mpp, options=options, device=device)
    best = max(v for k, v in res.val_scores.items() if k != "metric")
    print(f"wrote {res.folder} (thresholds prob {res.thresholds.prob:.3f}, nms {res.thresholds.nms:.2f}; outlines "
          f"{'redrawn' if res.refinement else 'as predicted'}{'; 8 mirror images' if res.tta else ''}; "
          f"validation {res.val_scores['metric']} {best:.3f}; "
          f"best epoch {res.fit.best_epoch + 1}, {res.fit.seconds:.0f} s)")
    return 0
