"""``wsi-pipeline tile SLIDE --out X.ome.zarr``: slide -> multiscale OME-Zarr (NGFF 0.4).

Resumable: run the same command again after an interruption and it continues.
"""

from __future__ import annotations

import sys

NAME = "tile"
HELP = "Convert a slide to a multiscale OME-Zarr (NGFF 0.4) that napari and QuPath open; resumable."


def add_arguments(parser) -> None:
    parser.add_argument("slide", help="slide file or DICOM-WSI folder")
    parser.add_argument("--out", required=True, help="output folder, e.g. slide.ome.zarr")
    parser.add_argument("--mpp", type=float, default=None, help="microns per pixel at level 0, overriding the file")
    parser.add_argument("--chunk", type=int, default=None, help="chunk edge in pixels (default 512, or the native tile)")
    parser.add_argument("--codec", default="lz4", help="lz4 (default), zstd, zlib or none; optionally NAME:LEVEL")
    parser.add_argument("--workers", type=int, default=2, help="decoding threads (default 2)")
    parser.add_argument("--min-size", type=int, default=2048, help="stop adding levels at this long side (default 2048)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run(args) -> int:
    from pathlib import Path

    from tqdm import tqdm

    from tiling import open_slide
    from tiling.errors import InputError
    from tiling.omezarr import write_omezarr

    if args.workers < 1:
        raise InputError(None, f"--workers must be >= 1, got {args.workers}")
    out = Path(args.out)
    with open_slide(args.slide, mpp=args.mpp) as slide:
        slide.mpp  # noqa: B018 - fail before any output when mpp is missing
        bar = None

        def progress(done: int, total: int) -> None:
            nonlocal bar
            if bar is None:
                bar = tqdm(total=total, initial=done, unit="block", desc=out.name, disable=args.no_progress)
            bar.update(done - bar.n)

        try:
            write_omezarr(
                slide,
                out,
                chunk=args.chunk,
                codec=args.codec,
                workers=args.workers,
                min_size=args.min_size,
                overwrite=args.overwrite,
                progress=progress,
            )
        finally:
            if bar is not None:
                bar.close()
    print(out, file=sys.stdout)
    return 0
