"""Benchmark: whole-slide tissue detection on a large synthetic slide (wall and CPU seconds).

    nice -n 15 .venv/bin/python bench/bench_tissue.py [--width 61440 --height 40960] [--threads 1]

Makes (once, cached in --cache, in a child process so that this process's peak memory is
the detection's alone) a synthetic Aperio-like SVS, then times ``detect_tissue`` end to end
(thumbnail read from a pyramid level + torch segmentation + polygons), its parts, and a
simple baseline on the same thumbnail: skimage Otsu on grey levels + binary closing +
small-object removal. IoU against the synthetic ground truth for both. Prints one JSON line
(seconds: wall ``*_s``, CPU of this process, all threads, ``*_cpu_s``; peak RSS in MB).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path


def _make_slide(cache: Path, width: int, height: int) -> float:
    """Write the synthetic slide in a child process; returns its wall seconds."""
    code = (
        "import sys; from wsi_pipeline.synthetic import make_synthetic_slide; "
        "make_synthetic_slide(sys.argv[1], width=int(sys.argv[2]), height=int(sys.argv[3]), mpp=0.25, seed=1)"
    )
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code, str(cache), str(width), str(height)], check=True)
    return time.perf_counter() - t0


def _timed(fn, *args, **kwargs):
    """(result, wall s, CPU s of this process)."""
    c0, t0 = time.process_time(), time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0, time.process_time() - c0


def _peak_rss_mb() -> float:
    """VmHWM of this process (MB); ru_maxrss as a fallback."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--width", type=int, default=61440)
    ap.add_argument("--height", type=int, default=40960)
    ap.add_argument("--mpp", type=float, default=8.0, help="working resolution (µm/px)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    ap.add_argument("--cache", default="/tmp/wsi_bench_tissue", help="folder for the synthetic slide (not the repo)")
    args = ap.parse_args()

    cache = Path(args.cache) / f"{args.width}x{args.height}"
    make_s = None
    if not (cache / "synthetic.svs").exists():
        make_s = _make_slide(cache, args.width, args.height)

    import numpy as np
    import torch
    from shapely.ops import unary_union
    from skimage import color, filters, morphology
    from skimage.draw import polygon as fill

    from detectors.tissue import detect_tissue, read_thumbnail
    from detectors.tissue.features import glass_colour, to_tensor
    from detectors.tissue.segment import segment, working_mpp
    from tiling import open_slide
    from wsi_pipeline.annotations import read_geojson

    if args.threads:
        torch.set_num_threads(args.threads)
    load0 = os.getloadavg()[0]
    rss0 = _peak_rss_mb()
    slide = open_slide(cache / "synthetic.svs")
    res, total, total_cpu = _timed(detect_tissue, slide, mpp=args.mpp, device=args.device)
    rss_detect = _peak_rss_mb()

    work = working_mpp(slide.mpp[0], slide.dimensions, mpp=args.mpp)
    level = slide.level_for_mpp(work)
    thumb, read_s, read_cpu = _timed(read_thumbnail, slide, work)

    def seg():
        rgb = to_tensor(thumb, args.device)
        with torch.inference_mode():
            return segment(rgb.float(), mpp=work, glass=glass_colour(rgb))

    _, seg_s, seg_cpu = _timed(seg)

    def baseline():
        grey = color.rgb2gray(thumb)
        base = grey < filters.threshold_otsu(grey)
        base = morphology.closing(base, morphology.disk(5))
        return morphology.remove_small_objects(base, max_size=150)

    base, base_s, base_cpu = _timed(baseline)

    truth = unary_union([f.geometry for f in read_geojson(cache / "synthetic_truth" / "tissue.geojson").features])
    got = unary_union(res.polygons)
    iou = got.intersection(truth).area / got.union(truth).area
    ds = res.downsample
    tm = np.zeros_like(base)
    for poly in getattr(truth, "geoms", [truth]):
        xy = np.asarray(poly.exterior.coords) / ds
        rr, cc = fill(xy[:, 1], xy[:, 0], tm.shape)
        tm[rr, cc] = True
        for hole in poly.interiors:
            hxy = np.asarray(hole.coords) / ds
            rr, cc = fill(hxy[:, 1], hxy[:, 0], tm.shape)
            tm[rr, cc] = False
    base_iou = (base & tm).sum() / max((base | tm).sum(), 1)
    print(json.dumps({
        "slide": [args.width, args.height], "levels": [list(d) for d in slide.level_dimensions],
        "read_level": level, "read_level_mpp": round(slide.mpp[0] * slide.level_downsamples[level], 3),
        "mask": list(res.mask.shape[::-1]), "work_mpp": round(work, 3),
        "device": args.device, "threads": torch.get_num_threads(), "nice": os.nice(0),
        "load_avg_start": round(load0, 2), "load_avg_end": round(os.getloadavg()[0], 2),
        "detect_tissue_s": round(total, 2), "detect_tissue_cpu_s": round(total_cpu, 2),
        "thumbnail_read_s": round(read_s, 2), "thumbnail_read_cpu_s": round(read_cpu, 2),
        "segment_s": round(seg_s, 2), "segment_cpu_s": round(seg_cpu, 2),
        "baseline_skimage_otsu_s": round(base_s, 2), "baseline_cpu_s": round(base_cpu, 2),
        "iou": round(iou, 4), "baseline_iou": round(float(base_iou), 4),
        "inks": sorted({i.colour for i in res.inks}),
        "peak_rss_mb_before": round(rss0), "peak_rss_mb_after_detect": round(rss_detect),
        "make_slide_s": None if make_s is None else round(make_s, 1),
    }))


if __name__ == "__main__":
    main()
