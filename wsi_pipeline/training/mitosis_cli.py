"""Arguments and entry point of ``wsi-pipeline train mitosis`` (torch imported in ``run``)."""

from __future__ import annotations

HELP = ("Train the mitosis crop classifier from mitosis crops (class sub-folders) and/or images with "
        "GeoJSON 'Mitosis' marks, plus negative images; writes a model folder for --mitosis-model.")


def add_arguments(parser) -> None:
    parser.add_argument("--crops", action="append", default=[], metavar="DIR",
                        help="folder with one sub-folder of crops per class (e.g. normal/, atypical/), crops centred "
                             "on mitotic figures; a CSV with uid,slide columns splits by slide (repeatable)")
    parser.add_argument("--negatives", action="append", default=[], metavar="DIR",
                        help="folder of images with no mitoses: their candidate nuclei become imposters (repeatable)")
    parser.add_argument("--images", default=None, help="folder of images with mitoses marked in --geojson")
    parser.add_argument("--geojson", default=None, help="GeoJSON per image (same stem): points/polygons classified 'Mitosis'")
    parser.add_argument("--mpp", type=float, required=True, help="microns per pixel of all the training images")
    parser.add_argument("--out", required=True, help="model folder to write (weights.pt, config.json, model_card.*)")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--steps-per-epoch", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--crop-size", type=int, default=64, help="crop side in px at 0.25 µm/px (64-128)")
    parser.add_argument("--width", type=int, default=12, help="channels of the first conv block")
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--val-fraction", type=float, default=0.15)
    parser.add_argument("--test-fraction", type=float, default=0.2)
    parser.add_argument("--no-crop-neighbours", action="store_true",
                        help="do not take the other nuclei inside positive crops as imposters")
    parser.add_argument("--time-limit", type=float, default=None, help="stop after this many minutes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")


def run(args) -> int:
    from pathlib import Path

    from detectors.device import select_device
    from detectors.nuclei.weightfree import WeightFreeNucleiDetector
    from tiling.errors import InputError
    from wsi_pipeline.training.mitosis import MitosisTrainingOptions, dataset_name, train_mitosis
    from wsi_pipeline.training.mitosis_data import (
        SampleSet, load_annotated_images, load_crop_folders, load_negative_fields,
    )

    if args.mpp <= 0:
        raise InputError(None, f"--mpp must be positive, got {args.mpp}")
    if not 64 <= args.crop_size <= 128 or args.crop_size % 16:
        raise InputError(None, f"--crop-size must be a multiple of 16 in 64..128, got {args.crop_size}")
    if not args.crops and not args.images:
        raise InputError(None, "give mitotic figures: --crops DIR and/or --images DIR --geojson DIR")
    if (args.images is None) != (args.geojson is None):
        raise InputError(None, "--images and --geojson go together")
    out = Path(args.out)
    if out.exists() and any(out.iterdir()) and not (out / "config.json").exists():
        raise InputError(out, "exists and is not a model folder; refusing to overwrite it")
    device = select_device(args.device)
    nuclei = WeightFreeNucleiDetector(device=device)
    patch = args.crop_size + 2 * MitosisTrainingOptions.margin
    parts, sources = [], {}
    for d in args.crops:
        parts.append(load_crop_folders(d, mpp=args.mpp, patch=patch, nuclei=None if args.no_crop_neighbours else nuclei))
        sources[f"crops {dataset_name(d)}"] = f"{len(parts[-1])} samples"
    for d in args.negatives:
        parts.append(load_negative_fields(d, mpp=args.mpp, patch=patch, nuclei=nuclei))
        sources[f"negatives {dataset_name(d)}"] = f"{len(parts[-1])} candidate nuclei"
    if args.images:
        parts.append(load_annotated_images(args.images, args.geojson, mpp=args.mpp, patch=patch, nuclei=nuclei))
        sources[f"annotated {dataset_name(args.images)} + {dataset_name(args.geojson)}"] = f"{len(parts[-1])} samples"
    data = SampleSet.concatenate(parts, patch)
    options = MitosisTrainingOptions(
        crop_size=args.crop_size, width=args.width, epochs=args.epochs, batch_size=args.batch_size,
        steps_per_epoch=args.steps_per_epoch, learning_rate=args.learning_rate, val_fraction=args.val_fraction,
        test_fraction=args.test_fraction, time_limit_min=args.time_limit, seed=args.seed,
    )
    res = train_mitosis(data, out=out, options=options, device=device, sources=sources)
    test = res.metrics.get("test") or {}
    msg = f"wrote {res.folder} (threshold {res.threshold:.2f}; {res.seconds:.0f} s"
    if test:
        fp = "n/a" if test.get("fp_per_mm2") is None else f"{test['fp_per_mm2']:.1f}"
        msg += (f"; hold-out recall {test['recall']:.3f}, precision {test['precision']:.3f}, "
                f"false positives per mm² on held-out fields {fp}")
    print(msg + ")")
    return 0
