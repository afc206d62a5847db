"""Benchmark: whole-slide tissue detection on a large synthetic slide (CPU seconds).

    .venv/bin/python bench/bench_tissue.py [--width 61440 --height 40960] [--device cpu]

Makes (once, cached in --cache) a synthetic Aperio-like SVS, then times
``detect_tissue`` end to end (thumbnail read + torch segmentation + polygons), its
segmentation alone, and a simple baseline on the same thumbnail: skimage Otsu on
grey levels + binary closing + small-object removal. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--width", type=int, default=61440)
    ap.add_argument("--height", type=int, default=40960)
    ap.add_argument("--mpp", type=float, default=8.0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--cache", default="/tmp/wsi_bench_tissue")
    args = ap.parse_args()

    import numpy as np
    import torch
    from shapely.ops import unary_union
    from skimage import color, filters, morphology

    from detectors.tissue import detect_tissue, read_thumbnail
    from detectors.tissue.features import glass_colour, to_tensor
    from detectors.tissue.segment import segment, working_mpp
    from tiling import open_slide
    from wsi_pipeline.annotations import read_geojson
    from wsi_pipeline.synthetic import make_synthetic_slide

    cache = Path(args.cache) / f"{args.width}x{args.height}"
    t0 = time.perf_counter()
    if not (cache / "synthetic.svs").exists():
        make_synthetic_slide(cache, width=args.width, height=args.height, mpp=0.25, seed=1)
    make_s = time.perf_counter() - t0
    slide = open_slide(cache / "synthetic.svs")

    t0 = time.perf_counter()
    res = detect_tissue(slide, mpp=args.mpp, device=args.device)
    total = time.perf_counter() - t0

    work = working_mpp(slide.mpp[0], slide.dimensions, mpp=args.mpp)
    t0 = time.perf_counter()
    thumb = read_thumbnail(slide, work)
    read_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    rgb = to_tensor(thumb, args.device)
    with torch.inference_mode():
        segment(rgb, mpp=work, glass=glass_colour(rgb))
    seg_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    grey = color.rgb2gray(thumb)
    base = grey < filters.threshold_otsu(grey)
    base = morphology.binary_closing(base, morphology.disk(5))
    base = morphology.remove_small_objects(base, max_size=150)
    base_s = time.perf_counter() - t0

    truth = unary_union([f.geometry for f in read_geojson(cache / "synthetic_truth" / "tissue.geojson").features])
    got = unary_union(res.polygons)
    iou = got.intersection(truth).area / got.union(truth).area
    ds = res.downsample
    tm = np.zeros_like(base)
    from skimage.draw import polygon as fill
    for poly in getattr(truth, "geoms", [truth]):
        xy = np.asarray(poly.exterior.coords) / ds
        rr, cc = fill(xy[:, 1], xy[:, 0], tm.shape)
        tm[rr, cc] = True
    base_iou = (base & tm).sum() / max((base | tm).sum(), 1)
    print(json.dumps({
        "slide": [args.width, args.height], "mask": list(res.mask.shape[::-1]), "work_mpp": round(work, 3),
        "device": args.device, "threads": torch.get_num_threads(),
        "detect_tissue_s": round(total, 2), "thumbnail_read_s": round(read_s, 2), "segment_s": round(seg_s, 2),
        "baseline_skimage_otsu_s": round(base_s, 2), "iou": round(iou, 4), "baseline_iou": round(float(base_iou), 4),
        "inks": sorted({i.colour for i in res.inks}), "make_slide_s": round(make_s, 1),
    }))


if __name__ == "__main__":
    main()
