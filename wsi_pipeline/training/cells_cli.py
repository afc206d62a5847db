"""Arguments and entry point of ``wsi-pipeline train cells`` (torch imported in ``run``)."""

from __future__ import annotations

HELP = ("Train the cell-type classifier (Lymphocyte/Epithelial/Stromal/Tumor/Other) from nuclei a pathologist "
        "classified (the run's nuclei.geojson.gz as reviewed in napari or QuPath); writes a model folder for "
        "--cell-model.")


def add_arguments(parser) -> None:
    parser.add_argument("--nuclei", nargs="+", required=True, metavar="FILE",
                        help="nuclei GeoJSON(.gz) / nuclei.parquet / results folders; nuclei classified Lymphocyte, "
                             "Epithelial, Stromal, Tumor or Other are the samples, the rest only neighbours")
    parser.add_argument("--slides", nargs="+", default=None, metavar="SLIDE",
                        help="optional: each file's slide (same order), to measure nuclei that lack measurements "
                             "(drawn by hand) and for µm per pixel")
    parser.add_argument("--out", required=True, help="model folder to write (config.json, weights.npz, model_card.md)")
    parser.add_argument("--mpp", type=float, default=None,
                        help="level-0 µm per pixel (default: the slide, the file's mpp, or summary.json beside it)")
    parser.add_argument("--hidden", type=int, default=32, help="hidden units of the MLP (default 32)")
    parser.add_argument("--steps", type=int, default=800, help="full-batch optimiser steps (default 800)")
    parser.add_argument("--seed", type=int, default=0)


def run(args) -> int:
    from pathlib import Path

    from tiling.errors import InputError
    from wsi_pipeline.training.cells import train_from_paths

    if args.hidden < 1 or args.steps < 1:
        raise InputError(None, "--hidden and --steps must be positive")
    if args.mpp is not None and args.mpp <= 0:
        raise InputError(None, f"--mpp must be positive, got {args.mpp}")
    for p in [*args.nuclei, *(args.slides or [])]:
        if not Path(p).exists():
            raise InputError(p, "file not found")
    out = Path(args.out)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / "config.json").exists())):
        raise InputError(out, "exists and is not a model folder; refusing to overwrite it")
    folder, metrics = train_from_paths(args.nuclei, slides=args.slides, out=out, mpp=args.mpp, hidden=args.hidden,
                                       steps=args.steps, seed=args.seed)
    val = metrics.get("validation") or metrics.get("train") or {}
    scores = ", ".join(f"{k} F1 {v['f1']:.2f}" for k, v in val.get("per_class", {}).items())
    macro = f"; macro-F1 {val['macro_f1']:.2f}" if val.get("macro_f1") is not None else ""
    print(f"wrote {folder} (held-out nuclei: {scores}{macro})")
    return 0
