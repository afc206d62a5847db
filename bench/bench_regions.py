"""Benchmark: what the tissue-region map adds to ``run`` on the demo slide (wall seconds, ratio).

    nice -n 15 .venv/bin/python bench/bench_regions.py [--size small] [--device cpu] [--repeats 3]

Makes (once, cached in --cache) the demo slide of ``wsi-pipeline demo`` and runs the whole
pipeline on it with the demo's settings (in-process, OME-Zarr written). From the run's own
timings (summary.json ``timings``): the ``regions`` stage against ``total``, as
``regions / (total - regions)`` (the time the map adds) and ``regions / total``. Then, on
the run's nuclei, ``map_regions`` alone ``--repeats`` times at each ``--grids`` value (median
wall and CPU seconds; the first call also loads torch kernels) and the NGFF label image
written into the run's ``slide.ome.zarr``. Target (issue 16): the map adds at most 10%.
Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import time
from pathlib import Path


def _timed(fn, *args, **kwargs):
    """(result, wall s, CPU s of this process)."""
    c0, t0 = time.process_time(), time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0, time.process_time() - c0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="small", choices=("small", "medium", "large"), help="demo slide size")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--grids", default="8,12", help="grid sizes (µm) to time map_regions at, comma-separated")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    ap.add_argument("--cache", default="/tmp/wsi_bench_regions", help="folder for the slide and run (not the repo)")
    args = ap.parse_args()

    import torch

    from detectors.regions import map_regions, write_regions_labels
    from detectors.tissue import detect_tissue
    from tiling.open import open_slide
    from wsi_pipeline.batch.manifest import SlideJob
    from wsi_pipeline.commands.demo import make_demo_slide
    from wsi_pipeline.config import load_config
    from wsi_pipeline.run import run_slide
    from wsi_pipeline.training.tissue import load_results_nuclei

    if args.threads:
        torch.set_num_threads(args.threads)
    cache = Path(args.cache) / args.size
    slide_path = cache / "demo.svs"
    make_s = None
    if not slide_path.exists():
        _, make_s, _ = _timed(make_demo_slide, cache, size=args.size)
    runs = cache / "runs"
    shutil.rmtree(runs, ignore_errors=True)
    load0 = os.getloadavg()[0]
    cfg = load_config("default").updated(**{"device": args.device, "cluster.kind": "inprocess", "output.ome_zarr": True})
    run = run_slide(SlideJob(path=slide_path, slide_id="demo"), runs, cfg)
    t = run.timings
    regions, total = float(t.get("regions", 0.0)), float(t["total"])

    nuclei = load_results_nuclei(runs / "demo")
    alone = {}
    with open_slide(slide_path) as slide:
        tissue = detect_tissue(slide, device=args.device)
        for g in (float(x) for x in args.grids.split(",")):
            walls, cpus = [], []
            for _ in range(max(1, args.repeats)):
                rm, wall, cpu = _timed(map_regions, slide, tissue, nuclei, grid_um=g, device=args.device)
                walls.append(wall)
                cpus.append(cpu)
            alone[f"{g:g}"] = {"wall_s": round(statistics.median(walls), 3), "cpu_s": round(statistics.median(cpus), 3),
                               "first_wall_s": round(walls[0], 3), "shape": list(rm.labels.shape)}
    store = runs / "demo" / "slide.ome.zarr"
    labels_s = None
    if store.is_dir():
        _, labels_s, _ = _timed(write_regions_labels, store, run.region_map)

    print(json.dumps({
        "slide": str(args.size),
        "device": args.device, "threads": torch.get_num_threads(), "nice": os.nice(0),
        "load_avg_start": round(load0, 2), "load_avg_end": round(os.getloadavg()[0], 2),
        "grid_um": cfg.regions.grid_um, "nuclei": int(run.counts.get("nuclei", 0)),
        "timings_s": t, "regions_s": round(regions, 3), "total_s": round(total, 3),
        "regions_added_ratio": round(regions / max(total - regions, 1e-9), 4),
        "regions_share_of_total": round(regions / max(total, 1e-9), 4),
        "map_regions_alone": alone, "ngff_labels_s": None if labels_s is None else round(labels_s, 3),
        "make_slide_s": None if make_s is None else round(make_s, 1),
    }))


if __name__ == "__main__":
    main()
