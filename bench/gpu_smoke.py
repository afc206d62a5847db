"""GPU smoke benchmark (< 5 minutes on a GPU machine): nuclei detectors batched on the device.

Runs the in-process tile runner (prefetching reader thread, batches to the device, mixed
precision on CUDA, OOM -> halve the batch) over an H&E field, for the weight-free detector
and for a StarDist2D network with the 2D_versatile_he configuration (the test fixture's
random weights: speed, not quality). Prints tiles/s, megapixels/s and the GPU memory peak,
with a CPU run over the first tiles as the baseline in the same run. On a GPU it also checks
that the device finds the nuclei the CPU finds on those tiles (fp16 autocast), and, with
the process capped to a small share of GPU memory, that a batch too big for it is halved
and retried with the same result as batch size 1 (a real CUDA out-of-memory, not a patch).

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


def grid(detector, slide, max_tiles: int | None = None) -> list:
    from tiling.grid import tile_grid

    spec = detector.spec
    return tile_grid(slide.dimensions, slide_mpp=slide.mpp[0], working_mpp=spec.mpp, tile_size=spec.tile_size,
                     halo=spec.halo, max_object=spec.max_object_size)[:max_tiles]


def collect(detector, slide, tiles, batch: int):
    from detectors.base import Instances
    from wsi_pipeline.tile_runner import run_inprocess

    return Instances.concatenate(list(run_inprocess(slide, detector, tiles, batch_size=batch)))


def agreement(a, b, tol: float = 2.0) -> float:
    """Share of a's centroids with one of b's within tol pixels (both ways, the smaller)."""
    from scipy.spatial import cKDTree

    if len(a) == 0 or len(b) == 0:
        return float(len(a) == len(b))
    ca = np.array([g.centroid.coords[0] for g in a.geometry])
    cb = np.array([g.centroid.coords[0] for g in b.geometry])
    ab = np.mean(cKDTree(cb).query(ca)[0] <= tol)
    ba = np.mean(cKDTree(ca).query(cb)[0] <= tol)
    return float(min(ab, ba))


def oom_check(build, device, slide, *, batch: int, n_tiles: int, cap_mb: int | None = None) -> str:
    """Cap this process's GPU memory, run a batch too big for the cap: it must be halved and
    retried, and give what batch size 1 gives. Without ``cap_mb`` the cap is what is in use
    now plus four times what one tile needs (measured here)."""
    import logging

    import torch

    from wsi_pipeline.tile_runner import read_tile

    detector = build(str(device))
    tiles = grid(detector, slide, n_tiles)
    index = device.index if device.index is not None else torch.cuda.current_device()
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    base = torch.cuda.memory_allocated(index)
    torch.cuda.reset_peak_memory_stats(index)
    detector.predict_batch(read_tile(slide, tiles[0], detector.spec.mpp)[None])
    one_tile = torch.cuda.max_memory_allocated(index) - base
    torch.cuda.empty_cache()
    cap = cap_mb * 2**20 if cap_mb else torch.cuda.memory_reserved(index) + 4 * one_tile
    total = torch.cuda.get_device_properties(index).total_memory
    torch.cuda.set_per_process_memory_fraction(cap / total, index)
    warnings: list[str] = []

    class Catch(logging.Handler):
        def emit(self, record):
            warnings.append(record.getMessage())

    handler = Catch(level=logging.WARNING)
    logging.getLogger("wsi_pipeline.tile_runner").addHandler(handler)
    try:
        big = collect(detector, slide, tiles, batch)
        one = collect(detector, slide, tiles, 1)
    finally:
        logging.getLogger("wsi_pipeline.tile_runner").removeHandler(handler)
        torch.cuda.set_per_process_memory_fraction(1.0, index)
    halvings = sum("out of memory" in w for w in warnings)
    same = len(big) == len(one) and agreement(big, one, tol=0.01) == 1.0
    return (f"OOM backoff (one tile needs {one_tile / 2**20:.0f} MB; cap {cap / 2**20:.0f} MB, batch {batch}, "
            f"{len(tiles)} tiles): {halvings} halvings, {len(big)} vs {len(one)} objects with batch 1, "
            f"{'same' if same else 'DIFFERENT'}"
            + ("" if halvings else " -- no OOM was hit, raise --oom-batch or lower --oom-cap-mb"))


def run(detector, slide, *, batch: int, max_tiles: int | None = None) -> dict:
    import torch

    from wsi_pipeline.tile_runner import run_inprocess

    spec = detector.spec
    tiles = grid(detector, slide, max_tiles)
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
    ap.add_argument("--oom-cap-mb", type=int, help="GPU memory cap for the backoff check (default: 4 tiles' worth)")
    ap.add_argument("--oom-batch", type=int, default=64)
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
        if device.type == "cuda":
            cpu_det, dev_det = build("cpu"), build(str(device))
            tiles = grid(cpu_det, slide, args.cpu_tiles)
            a, b = collect(cpu_det, slide, tiles, 4), collect(dev_det, slide, tiles, 4)
            print(f"{name:30s} cpu vs {device.type} on {len(tiles)} tiles: {len(a)} vs {len(b)} objects, "
                  f"{agreement(a, b):.4f} of centroids within 2 px", flush=True)
            try:
                msg = oom_check(build, device, slide, cap_mb=args.oom_cap_mb, batch=args.oom_batch,
                                n_tiles=args.oom_batch)
            except Exception as exc:  # report and go on to the next detector
                msg = f"OOM backoff check FAILED: {type(exc).__name__}: {str(exc).splitlines()[0]}"
            print(f"{name:30s} {msg}", flush=True)


if __name__ == "__main__":
    main()
