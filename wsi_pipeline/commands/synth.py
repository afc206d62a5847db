"""``wsi-pipeline synth --out DIR``: write a synthetic H&E skin-excision slide and its ground truth."""

from __future__ import annotations

NAME = "synth"
HELP = "Write a synthetic Aperio-like H&E skin-excision slide (.svs) with ground-truth GeoJSON (fake PHI on the label)."


def add_arguments(parser) -> None:
    parser.add_argument("--out", required=True, help="output folder (gets NAME.svs and NAME_truth/)")
    parser.add_argument("--width", type=int, default=8192, help="level-0 width in pixels (default 8192)")
    parser.add_argument("--height", type=int, default=6144, help="level-0 height in pixels (default 6144)")
    parser.add_argument("--mpp", type=float, default=0.25, help="microns per pixel (default 0.25, i.e. 40x)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; the same seed writes the same bytes")
    parser.add_argument("--name", default="synthetic", help="file stem (default synthetic)")
    parser.add_argument("--pieces", type=int, choices=(1, 2), default=1, help="tissue pieces (default 1)")
    parser.add_argument(
        "--tumor-ink-distance-um",
        type=float,
        default=None,
        help="place the tumour exactly this far from the blue ink (0 = touching)",
    )
    parser.add_argument("--lesion", choices=("nest", "melanoma"), default="nest",
                        help="nest: a basaloid dermal nest (default); melanoma: a junctional melanoma-like tumour")
    parser.add_argument("--breslow-um", type=float, default=500.0,
                        help="melanoma: Breslow thickness in um (granular layer or ulcer base to the deepest point)")
    parser.add_argument("--ulceration-um", type=float, default=0.0,
                        help="melanoma: length of the ulcer over the tumour in um (0 = not ulcerated)")
    parser.add_argument("--til", choices=("absent", "non-brisk", "brisk"), default="non-brisk",
                        help="melanoma: tumour-infiltrating lymphocytes (Clark grade; default non-brisk)")
    parser.add_argument("--no-inflammation", action="store_true", help="no lymphoid aggregate in the dermis")
    parser.add_argument("--no-marker", action="store_true", help="no marker-pen stroke on the glass")
    parser.add_argument("--quality", type=int, default=85, help="JPEG quality of the tiles (default 85)")
    parser.add_argument("--workers", type=int, default=1, help="processes painting tiles (same bytes; default 1)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run(args) -> int:
    import math
    from pathlib import Path

    from tqdm import tqdm

    from tiling.errors import InputError
    from wsi_pipeline.synthetic import make_synthetic_slide

    if args.width < 64 or args.height < 64:
        raise InputError(None, f"--width and --height must be >= 64, got {args.width} x {args.height}")
    if not args.mpp > 0:
        raise InputError(None, f"--mpp must be positive, got {args.mpp}")
    if args.workers < 1:
        raise InputError(None, f"--workers must be >= 1, got {args.workers}")
    if not 1 <= args.quality <= 100:
        raise InputError(None, f"--quality must be 1..100, got {args.quality}")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise InputError(out, "exists and is not a folder")
    options = {"pieces": args.pieces, "marker": not args.no_marker, "inflammation": not args.no_inflammation}
    if args.lesion == "melanoma":
        if args.tumor_ink_distance_um is not None:
            raise InputError(None, "--tumor-ink-distance-um does not apply to --lesion melanoma (its thickness places it)")
        if not args.breslow_um > 0 or args.ulceration_um < 0:
            raise InputError(None, f"--breslow-um must be > 0 and --ulceration-um >= 0, got {args.breslow_um}, {args.ulceration_um}")
        options.update(lesion="melanoma", breslow_um=args.breslow_um, ulceration_um=args.ulceration_um, til=args.til)
    if args.tumor_ink_distance_um is not None:
        options["tumor_ink_distance_um"] = args.tumor_ink_distance_um
    total = math.ceil(args.width / 256) * math.ceil(args.height / 256)
    with tqdm(total=total, unit="tile", desc=f"{args.name}.svs", disable=args.no_progress) as bar:
        try:
            slide = make_synthetic_slide(
                out,
                width=args.width,
                height=args.height,
                mpp=args.mpp,
                seed=args.seed,
                name=args.name,
                quality=args.quality,
                progress=bar.update,
                workers=args.workers,
                **options,
            )
        except ValueError as exc:
            raise InputError(None, str(exc)) from None
    print(f"slide        {slide.path}")
    print(f"ground truth {slide.truth_dir}")
    if args.lesion == "melanoma":
        import json

        m = json.loads((slide.truth_dir / "scene.json").read_text())["melanoma"]
        ulcer = f"ulcerated {m['ulcer_length_mm']:.2f} mm" if m["ulceration"] else "not ulcerated"
        print(f"melanoma     Breslow {m['breslow_mm']:.2f} mm, {ulcer}, TILs {m['til_grade']}, {m['pT']}")
    return 0
