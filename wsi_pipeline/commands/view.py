"""``wsi-pipeline view SLIDE [--results DIR]``: review a slide and its results in napari."""

from __future__ import annotations

import argparse
from pathlib import Path

from tiling.errors import InputError

NAME = "view"
HELP = "open a slide (and its results folder) in napari to review, edit and save"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("slide", type=Path, help="slide file (anything wsi-pipeline can open)")
    parser.add_argument("--results", type=Path, default=None,
                        help="results folder of `wsi-pipeline run` (DIR or DIR/<slide-id>)")
    parser.add_argument("--mpp", type=float, default=None, help="microns per pixel, when the file lacks it")
    parser.add_argument("--reviewer", default=None, help="your name for review status and the audit log")
    parser.add_argument("--cap", type=int, default=3000, help="most nuclei loaded into the editable layer")


def run(args: argparse.Namespace) -> int:
    from tiling import open_slide

    slide = open_slide(args.slide, mpp=args.mpp)
    results = None
    if args.results is not None:
        if not args.results.is_dir():
            raise InputError(args.results, "results folder not found")
        from viewers.results import find_results_dir

        results = find_results_dir(args.results, args.slide)
    try:
        import napari
    except ImportError:
        raise InputError(args.slide, "napari is not installed (pip install 'wsi-pipeline[viewer]')") from None
    from viewers.results import open_results
    from viewers.widget import ReviewWidget

    viewer = napari.Viewer(title=f"wsi-pipeline: {args.slide.name}")
    desk = open_results(viewer, slide, results, reviewer=args.reviewer, cap=args.cap)
    viewer.window.add_dock_widget(ReviewWidget(viewer, desk=desk), name="Review", area="right")
    napari.run()
    return 0
