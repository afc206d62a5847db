"""``wsi-pipeline info SLIDE``: levels, resolution, vendor and associated image names.

Prints no patient data: associated images (label, macro) are listed by name only and
vendor properties are not dumped.
"""

from __future__ import annotations

import json

NAME = "info"
HELP = "Show a slide's levels, microns per pixel, vendor and associated image names (no patient data)."


def add_arguments(parser) -> None:
    parser.add_argument("slide", help="slide file (SVS, NDPI, MRXS, OME-TIFF, DICOM folder, PNG/JPEG with --mpp, ...)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.add_argument("--mpp", type=float, default=None, help="microns per pixel at level 0, overriding the file")


def format_info(info: dict) -> str:
    """Human-readable lines for :meth:`tiling.SlideInfo.to_dict` output."""
    mpp = info["mpp"]
    mpp_text = f"{mpp[0]:.4g} x {mpp[1]:.4g} µm/px" if mpp else "unknown (give it with --mpp)"
    obj = info["objective_power"]
    bx, by, bw, bh = info["bounds"]
    lines = [
        info["name"],
        f"  vendor             {info['vendor']}",
        f"  mpp (x, y)         {mpp_text}",
        f"  objective          {f'{obj:g}x' if obj else 'unknown'}",
        f"  bounds             x={bx} y={by} {bw} x {bh}",
        f"  tile size          {info['tile_size'][0]} x {info['tile_size'][1]}",
        f"  levels             {info['level_count']}",
    ]
    for i, ((w, h), ds) in enumerate(zip(info["level_dimensions"], info["level_downsamples"], strict=True)):
        lines.append(f"    {i:<3d} {w:>7d} x {h:<7d} downsample {ds:g}")
    names = ", ".join(info["associated_images"]) or "none"
    lines.append(f"  associated images  {names} (names only; they may hold patient data)")
    return "\n".join(lines)


def run(args) -> int:
    from tiling import open_slide

    with open_slide(args.slide, mpp=args.mpp) as slide:
        info = slide.info.to_dict()
    print(json.dumps(info, indent=2) if args.json else format_info(info))
    return 0
