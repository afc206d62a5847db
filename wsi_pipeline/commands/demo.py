"""``wsi-pipeline demo --out DIR``: make the synthetic demo slide and tile it into OME-Zarr.

For now the demo writes the slide, its ground truth and ``demo.ome.zarr``; later steps of
the pipeline (tissue, nuclei, mitoses, margins) join it.
"""

from __future__ import annotations

from pathlib import Path

NAME = "demo"
HELP = "Run the demo on a synthetic skin excision: make the slide, tile it to OME-Zarr, print where results are."

SIZES = {"small": (6144, 4096), "medium": (16384, 12288), "large": (61440, 40960)}


def add_arguments(parser) -> None:
    parser.add_argument("--out", default="demo-output", help="output folder (default demo-output)")
    parser.add_argument("--size", choices=sorted(SIZES), default="small", help="slide size (default small)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def run_demo(out_dir: str | Path, *, size: str = "small", progress: bool = False) -> dict[str, Path]:
    """Make ``out_dir/demo.svs`` (+ ``demo_truth/``) and ``out_dir/demo.ome.zarr``.

    Returns the paths written: ``slide``, ``truth``, ``zarr``.
    """
    from tiling import open_slide
    from tiling.omezarr import write_omezarr
    from wsi_pipeline.synthetic import make_synthetic_slide

    out_dir = Path(out_dir)
    width, height = SIZES[size]
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=-(-width // 256) * -(-height // 256), unit="tile", desc="demo.svs")
    try:
        slide = make_synthetic_slide(
            out_dir, width=width, height=height, mpp=0.25, seed=0, name="demo", progress=bar.update if bar else None
        )
    finally:
        if bar is not None:
            bar.close()
    zarr_path = out_dir / "demo.ome.zarr"
    with open_slide(slide.path) as opened:
        write_omezarr(opened, zarr_path, overwrite=True, progress=_bar("demo.ome.zarr") if progress else None)
    return {"slide": slide.path, "truth": slide.truth_dir, "zarr": zarr_path}


def _bar(desc: str):
    from tqdm import tqdm

    state = {}

    def update(done: int, total: int) -> None:
        if "bar" not in state:
            state["bar"] = tqdm(total=total, initial=done, unit="block", desc=desc)
        state["bar"].update(done - state["bar"].n)
        if done >= total:
            state["bar"].close()

    return update


def run(args) -> int:
    from tiling import open_slide
    from tiling.errors import InputError
    from wsi_pipeline.commands.info import format_info

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise InputError(out, "exists and is not a folder")
    paths = run_demo(out, size=args.size, progress=not args.no_progress)
    with open_slide(paths["slide"]) as slide:
        print(format_info(slide.info.to_dict()))
    print()
    print(f"slide         {paths['slide']}")
    print(f"ground truth  {paths['truth']}  (tissue, tumour, ink, nuclei, mitoses GeoJSON; open in QuPath)")
    print(f"OME-Zarr      {paths['zarr']}  (napari: napari --plugin napari-ome-zarr {paths['zarr']})")
    return 0
