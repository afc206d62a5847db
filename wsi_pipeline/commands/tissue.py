"""``wsi-pipeline tissue SLIDE --out DIR``: tissue polygons and ink regions -> DIR/tissue.geojson,
and an overview DIR/tissue.png with the outline and ink drawn."""

from __future__ import annotations

NAME = "tissue"
HELP = "Find tissue and surgical ink on a slide: DIR/tissue.geojson (QuPath) and DIR/tissue.png."


def add_arguments(parser) -> None:
    parser.add_argument("slide", help="slide file (SVS, NDPI, MRXS, OME-TIFF, ...)")
    parser.add_argument("--out", required=True, help="output folder (created if needed)")
    parser.add_argument("--mpp", type=float, default=None, help="microns per pixel at level 0, overriding the file")
    parser.add_argument("--tissue-mpp", type=float, default=8.0,
                        help="working resolution in µm/px (default 8; small slides are read finer)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps")


def run(args) -> int:
    from tiling import open_slide
    from tiling.errors import InputError
    from wsi_pipeline.tissue_run import run_tissue

    if not args.tissue_mpp > 0:
        raise InputError(None, f"--tissue-mpp must be positive, got {args.tissue_mpp}")
    with open_slide(args.slide, mpp=args.mpp) as slide:
        out = run_tissue(slide, args.out, mpp=args.tissue_mpp, device=args.device)
    r = out.result
    inks = ", ".join(sorted({i.colour for i in r.inks})) or "none"
    print(f"{len(r.polygons)} tissue piece(s), {r.total_area_mm2:.3f} mm^2; ink: {inks}")
    print(f"wrote {out.geojson} and {out.png}")
    return 0
