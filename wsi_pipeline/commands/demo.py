"""``wsi-pipeline demo --out DIR``: the whole pipeline on a synthetic skin excision.

Makes ``DIR/demo.svs`` (with ground truth in ``DIR/demo_truth/``), runs tissue -> nuclei ->
mitoses -> overview into ``DIR/demo/`` (with ``slide.ome.zarr``), then the margin report,
and prints where everything is.
"""

from __future__ import annotations

from pathlib import Path

NAME = "demo"
HELP = "run the whole pipeline on a built-in synthetic skin excision (no data or network needed)"

SIZES = {"small": (6144, 4096), "medium": (16384, 12288), "large": (61440, 40960)}
TUMOUR_DISTANCE_UM = {"small": 250.0, "medium": 1000.0, "large": 2000.0}  # tumour to the blue-inked edge


def add_arguments(parser) -> None:
    parser.add_argument("--out", default="demo-output", help="output folder (default demo-output)")
    parser.add_argument("--size", choices=sorted(SIZES), default="small", help="slide size (default small)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | mps")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def make_demo_slide(out_dir: Path, *, size: str = "small", progress: bool = False):
    """``out_dir/demo.svs`` + truth: an excision (1.5 x 1 mm when small) with the tumour a known
    distance (:data:`TUMOUR_DISTANCE_UM`) from the blue-inked edge."""
    from wsi_pipeline.synthetic import make_synthetic_slide

    width, height = SIZES[size]
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=-(-width // 256) * -(-height // 256), unit="tile", desc="demo.svs")
    try:
        return make_synthetic_slide(out_dir, width=width, height=height, mpp=0.25, seed=0, name="demo",
                                    tumor_ink_distance_um=TUMOUR_DISTANCE_UM[size], ink_depth_um=30.0, progress=bar.update if bar else None)
    finally:
        if bar is not None:
            bar.close()


def run_demo(out_dir: str | Path, *, size: str = "small", device: str = "auto", progress: bool = False):
    """Make the demo slide, run the pipeline and the margin report; return the run result."""
    from tqdm import tqdm

    from wsi_pipeline.batch.manifest import SlideJob
    from wsi_pipeline.cli import main as cli
    from wsi_pipeline.config import load_config
    from wsi_pipeline.run import run_slide

    out_dir = Path(out_dir)
    slide = make_demo_slide(out_dir, size=size, progress=progress)
    cfg = load_config("default").updated(**{"device": device, "cluster.kind": "inprocess", "output.ome_zarr": True})
    job = SlideJob(path=slide.path, slide_id="demo", metadata={"specimen_id": "DEMO-0001", "body_site": "skin (synthetic)"})
    with tqdm(total=0, unit="tile", leave=False, disable=not progress) as bar:
        result = run_slide(job, out_dir, cfg, progress=bar)
    rc = cli(["margins", str(slide.path), "--results", str(result.out_dir)])
    if rc != 0:
        raise RuntimeError(f"margins step failed with exit code {rc}")
    return slide, result


def mitosis_line(counts: dict) -> str:
    """The mitosis line of the printout: a count and rate only from a validated model."""
    rate = counts.get("mitoses_per_mm2")
    if counts.get("mitoses_validated") is True and rate is not None:
        return f"{counts.get('mitoses', 0)}; hotspot {rate} per mm²"
    return (counts.get("mitotic_rate") or {}).get("reason") or "not assessed"


def run(args) -> int:
    from tiling.errors import InputError

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise InputError(out, "exists and is not a folder")
    slide, result = run_demo(out, size=args.size, device=args.device, progress=not args.no_progress)
    c = result.counts
    d = result.out_dir
    print()
    print(f"Demo slide      {slide.path}  (ground truth in {slide.truth_dir})")
    print(f"Tissue          {c.get('tissue_mm2', 0):.2f} mm² in {c.get('tissue_pieces', 0)} piece(s), "
          f"{c.get('ink_regions', 0)} inked region(s)")
    print(f"Nuclei          {c.get('nuclei', 0)}  ({c.get('nuclei_model', '')})")
    print(f"Mitoses         {mitosis_line(c)}  ({c.get('mitosis_model', '')})")
    print(f"Results         {d}/")
    for name in ("overview.png", "tissue.geojson", "nuclei.geojson.gz", "nuclei.parquet", "mitoses.geojson",
                 "summary.json", "slide.ome.zarr", "margin_report.pdf", "margin_report.html"):
        if (d / name).exists():
            print(f"  {name}")
    print(f"Look at it      wsi-pipeline view {slide.path} --results {d}   (needs the [viewer] extra)")
    return 0
