"""GPU smoke benchmark (< 5 minutes on a GPU machine): nuclei detectors batched on the device.

Runs the in-process tile runner (prefetching reader thread, batches to the device, mixed
precision on CUDA, OOM -> halve the batch) over an H&E field, for the weight-free detector
and for a StarDist2D network with the 2D_versatile_he configuration (the test fixture's
random weights: speed, not quality). Prints tiles/s, megapixels/s and the GPU memory peak,
with a CPU run over the first tiles as the baseline in the same run.

    python bench/gpu_smoke.py [--image FIELD.jpg --mpp 0.25] [--size 4096] [--batch 16]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def field_image(args) -> np.ndarray:
    if args.image:
        from PIL import Image

        Image.MAX_IMAGE_PIXELS = None
        return np.asarray(Image.open(args.image).convert("RGB"))
    from wsi_pipeline.synthetic import build_scene, render_region

    scene = build_scene(args.size * 2, args.size * 2, mpp=args.mpp, seed=0)
    x0 = args.size // 2
    return render_region(scene, x0, x0, args.size, args.size)


def run(detector, slide, *, batch: int, max_tiles: int | None = None) -> dict:
    import torch

    from tiling.grid import tile_grid
    from wsi_pipeline.tile_runner import run_inprocess

    spec = detector.spec
    tiles = tile_grid(slide.dimensions, slide_mpp=slide.mpp[0], working_mpp=spec.mpp, tile_size=spec.tile_size,
                      halo=spec.halo, max_object=spec.max_object_size)[:max_tiles]
    if detector.device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    list(run_inprocess(slide, detector, tiles[:batch], batch_size=batch))  # warm-up
    t0 = time.perf_counter()
    n = sum(len(r) for r in run_inprocess(slide, detector, tiles, batch_size=batch))
    if detector.device.type == "cuda":
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated() / 2**20 if detector.device.type == "cuda" else float("nan")
    mpx = len(tiles) * spec.tile_size**2 / 1e6
    return {"tiles": len(tiles), "seconds": dt, "tiles_per_s": len(tiles) / dt, "mpx_per_s": mpx / dt,
            "objects": n, "gpu_peak_mb": peak}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--image")
    ap.add_argument("--mpp", type=float, default=0.25)
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--cpu-tiles", type=int, default=8)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()

    import torch

    from detectors.device import select_device
    from detectors.nuclei.weightfree import WeightFreeNucleiDetector
    from detectors.stardist import load_stardist_model
    from tiling import ArraySlide

    device = select_device(args.device)
    print(f"device: {device} ({torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu'}), torch {torch.__version__}")
    t0 = time.perf_counter()
    img = field_image(args)
    slide = ArraySlide(img, mpp=args.mpp)
    print(f"field: {img.shape[1]}x{img.shape[0]} px at {args.mpp} µm/px ({time.perf_counter() - t0:.1f} s to load)")
    builders = {
        "weight-free": lambda dev: WeightFreeNucleiDetector(device=dev),
        "stardist versatile_he config": lambda dev: load_stardist_model(REPO / "tests/fixtures/stardist/versatile_he", device=dev),
    }
    for name, build in builders.items():
        cpu = run(build("cpu"), slide, batch=min(args.batch, args.cpu_tiles), max_tiles=args.cpu_tiles)
        line = f"{name:30s} cpu: {cpu['tiles_per_s']:7.2f} tiles/s {cpu['mpx_per_s']:7.2f} Mpx/s ({cpu['tiles']} tiles)"
        if device.type != "cpu":
            dev = run(build(str(device)), slide, batch=args.batch)
            line += (f" | {device.type}: {dev['tiles_per_s']:7.2f} tiles/s {dev['mpx_per_s']:7.2f} Mpx/s "
                     f"({dev['tiles']} tiles, {dev['objects']} objects) peak {dev['gpu_peak_mb']:.0f} MB"
                     f" | speed-up x{dev['tiles_per_s'] / cpu['tiles_per_s']:.1f}")
        print(line, flush=True)


if __name__ == "__main__":
    main()
