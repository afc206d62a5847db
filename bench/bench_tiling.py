"""Benchmark: raw openslide decode vs. our slide -> OME-Zarr conversion (1 and 2 workers).

    .venv/bin/python bench/bench_tiling.py                 # 61440 x 40960 slide (>= 60k x 40k)
    .venv/bin/python bench/bench_tiling.py --size 8192x6144  # quick run

Makes a large Aperio-like SVS (256-px JPEG tiles of a noisy H&E-like texture, written tile
by tile), then in fresh child processes (so each reports its own peak RSS):

(a) raw: openslide ``read_region`` of every level-0 tile, sequentially, one thread;
(b) ours: ``tiling.omezarr.write_omezarr`` with 1 and 2 workers.

Rates are level-0 RGB megabytes (width * height * 3 / 1e6) per second; ratio = b / a.
CPU seconds are printed too: on a shared machine wall-clock rates mostly measure the neighbours.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def _periodic_texture(period: int = 2048, seed: int = 0):
    """Region function over a periodic noisy texture (realistic JPEG sizes, cheap to make)."""
    from tiling.pyramid import downsample2
    from tiling.testing import texture_region

    rng = np.random.default_rng(seed)
    base = texture_region(0, 0, period, period, 1).astype(np.int16)
    base += rng.integers(-12, 13, base.shape, dtype=np.int16)
    cache = {1: np.clip(base, 0, 255).astype(np.uint8)}

    def region(y: int, x: int, h: int, w: int, downsample: int) -> np.ndarray:
        if downsample not in cache:
            img, ds = cache[1], 1
            while ds < downsample:
                img, ds = downsample2(img), ds * 2
            cache[downsample] = img
        img = cache[downsample]
        p = img.shape[0]
        if y % p + h <= p and x % p + w <= p:  # tile-aligned reads never wrap: plain slice
            return img[y % p : y % p + h, x % p : x % p + w]
        rows = np.arange(y, y + h) % p
        cols = np.arange(x, x + w) % p
        return img[rows[:, None], cols[None, :]]

    return region


def make_slide(path: Path, width: int, height: int) -> Path:
    from tiling.testing import write_aperio_svs

    if path.exists():
        return path
    tmp = path.with_name(path.name + ".tmp")
    write_aperio_svs(tmp, _periodic_texture(), width=width, height=height, downsamples=(4, 16, 32), quality=80)
    tmp.rename(path)
    return path


def _cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def phase_raw(slide_path: Path) -> dict:
    import openslide

    osr = openslide.OpenSlide(str(slide_path))
    w, h = osr.level_dimensions[0]
    tw = int(osr.properties.get("openslide.level[0].tile-width", 256))
    th = int(osr.properties.get("openslide.level[0].tile-height", 256))
    t0, c0 = time.perf_counter(), _cpu_seconds()
    for y in range(0, h, th):
        for x in range(0, w, tw):
            osr.read_region((x, y), 0, (min(tw, w - x), min(th, h - y)))
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "cpu_s": _cpu_seconds() - c0, "mb": w * h * 3 / 1e6, "peak_rss_mb": _peak_rss_mb()}


def phase_convert(slide_path: Path, out: Path, workers: int, codec: str) -> dict:
    from tiling import open_slide
    from tiling.omezarr import write_omezarr

    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(out.with_name(out.name + ".part"), ignore_errors=True)
    with open_slide(slide_path) as slide:
        w, h = slide.dimensions
        t0, c0 = time.perf_counter(), _cpu_seconds()
        write_omezarr(slide, out, workers=workers, codec=codec)
        seconds = time.perf_counter() - t0
        cpu = _cpu_seconds() - c0
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    shutil.rmtree(out, ignore_errors=True)
    return {"seconds": seconds, "cpu_s": cpu, "mb": w * h * 3 / 1e6, "peak_rss_mb": _peak_rss_mb(), "store_mb": size / 1e6}


def _child(args: list[str]) -> dict:
    proc = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", default="61440x40960", help="WIDTHxHEIGHT of the synthetic slide")
    p.add_argument("--workdir", default="/tmp/wsi-bench", help="where the slide and stores go")
    p.add_argument("--workers", default="1,2", help="worker counts to convert with")
    p.add_argument("--codec", default="lz4")
    p.add_argument("--keep", action="store_true", help="keep the synthetic slide for the next run")
    p.add_argument("--phase", choices=["raw", "convert"], help=argparse.SUPPRESS)
    p.add_argument("--slide", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.phase == "raw":
        print(json.dumps(phase_raw(Path(args.slide))))
        return 0
    if args.phase == "convert":
        out = Path(args.workdir) / f"bench-{args.workers}.ome.zarr"
        print(json.dumps(phase_convert(Path(args.slide), out, int(args.workers), args.codec)))
        return 0

    width, height = (int(v) for v in args.size.lower().split("x"))
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    slide = work / f"bench-{width}x{height}.svs"
    t0 = time.perf_counter()
    make_slide(slide, width, height)
    print(f"slide {slide} {width}x{height} ({slide.stat().st_size / 1e6:.0f} MB on disk), made in {time.perf_counter() - t0:.0f} s")

    raw = _child(["--phase", "raw", "--slide", str(slide)])
    raw_rate = raw["mb"] / raw["seconds"]
    print(
        f"(a) raw openslide decode, 1 thread: {raw_rate:7.1f} MB/s  ({raw['seconds']:.1f} s wall, "
        f"{raw['cpu_s']:.1f} s CPU, peak RSS {raw['peak_rss_mb']:.0f} MB)"
    )
    for n in (int(v) for v in args.workers.split(",")):
        res = _child(["--phase", "convert", "--slide", str(slide), "--workers", str(n), "--workdir", str(work), "--codec", args.codec])
        rate = res["mb"] / res["seconds"]
        print(
            f"(b) OME-Zarr conversion, {n} worker(s): {rate:7.1f} MB/s  ratio b/a {rate / raw_rate:.2f}  "
            f"({res['seconds']:.1f} s wall, {res['cpu_s']:.1f} s CPU = {res['cpu_s'] / raw['cpu_s']:.2f}x raw CPU, "
            f"peak RSS {res['peak_rss_mb']:.0f} MB, store {res['store_mb']:.0f} MB)"
        )
    if not args.keep:
        slide.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
