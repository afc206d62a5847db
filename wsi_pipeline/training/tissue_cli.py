"""Arguments and entry point of ``wsi-pipeline train tissue`` (torch imported in ``run``)."""

from __future__ import annotations

HELP = ("Train the tissue-region classifier (Epidermis/Dermis/Tumor/Inflammation/Other) from areas drawn on "
        "slides (GeoJSON, level-0 px); writes a model folder for --tissue-model.")


def add_arguments(parser) -> None:
    parser.add_argument("--slides", nargs="+", required=True, metavar="SLIDE", help="slide files")
    parser.add_argument("--annotations", nargs="+", required=True, metavar="GEOJSON",
                        help="one GeoJSON per slide (same order): polygons classified Epidermis, Dermis, Tumor, "
                             "Inflammation or Other")
    parser.add_argument("--results", nargs="+", default=None, metavar="DIR",
                        help="optional: each slide's results folder from 'wsi-pipeline run' (same order); adds "
                             "nucleus-density features (the run then needs nuclei too)")
    parser.add_argument("--out", required=True, help="model folder to write (config.json, weights.npz, model_card.md)")
    parser.add_argument("--grid-um", type=float, default=8.0, help="label pixel size in µm (default 8)")
    parser.add_argument("--hidden", type=int, default=32, help="hidden units of the MLP (default 32)")
    parser.add_argument("--steps", type=int, default=600, help="full-batch optimiser steps (default 600)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")


def run(args) -> int:
    from pathlib import Path

    from detectors.device import select_device
    from tiling.errors import InputError
    from wsi_pipeline.training.tissue import train_from_paths

    if not 2.0 <= args.grid_um <= 64.0:
        raise InputError(None, f"--grid-um must be between 2 and 64 µm, got {args.grid_um}")
    if args.hidden < 1 or args.steps < 1:
        raise InputError(None, "--hidden and --steps must be positive")
    for p in [*args.slides, *args.annotations]:
        if not Path(p).exists():
            raise InputError(p, "file not found")
    out = Path(args.out)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / "config.json").exists())):
        raise InputError(out, "exists and is not a model folder; refusing to overwrite it")
    folder, metrics = train_from_paths(
        args.slides, args.annotations, results=args.results, out=out, grid_um=args.grid_um,
        hidden=args.hidden, steps=args.steps, seed=args.seed, device=select_device(args.device),
    )
    val = metrics.get("validation") or metrics.get("train") or {}
    scores = ", ".join(f"{k} IoU {v['iou']:.2f}" for k, v in val.items())
    print(f"wrote {folder} (held-out pixels: {scores})")
    return 0
