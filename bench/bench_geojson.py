"""Benchmark: write + read N nucleus polygons as QuPath GeoJSON (plain and .gz).

Compares wsi_pipeline.annotations (vectorised geometry text, orjson, Arrow number parsing,
numpy ring structure, GEOS validity only where a numpy test cannot vouch, geometry work in a
second thread, streamed) with a naive baseline (json.dump of shapely.geometry.mapping dicts;
json.load + shapely.geometry.shape) in the same run. Wall and CPU seconds (this process, all
threads) are printed with the load average, since wall time on a shared machine is inflated.

    nice -n 15 .venv/bin/python bench/bench_geojson.py                 # 1,000,000 polygons
    nice -n 15 .venv/bin/python bench/bench_geojson.py --n 1000000 --baseline-n 200000
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import shapely
import shapely.geometry

from wsi_pipeline.annotations import Feature, new_id, read_geojson, write_geojson


def make_features(n: int, *, vertices: int = 16, seed: int = 0) -> list[Feature]:
    """``n`` star-convex nucleus-like polygons (``vertices`` + closing vertex) over a 100k² slide."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0, 100_000, (n, 1, 2))
    angles = np.linspace(0, 2 * np.pi, vertices, endpoint=False)
    radii = rng.uniform(3, 8, (n, vertices, 1)) 
    ring = centres + radii * np.stack([np.cos(angles), np.sin(angles)], -1)[None]
    geoms = shapely.polygons(ring)
    area = shapely.area(geoms)
    prob = rng.uniform(0.5, 1, n)
    return [
        Feature(g, "detection", "Nucleus", (0, 120, 220), {"Detection probability": p, "Area px^2": a}, new_id())
        for g, p, a in zip(geoms.tolist(), prob.tolist(), area.tolist())
    ]


def naive_write(path: Path, feats: list[Feature]) -> None:
    doc = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "id": f.id, "geometry": shapely.geometry.mapping(f.geometry),
         "properties": {"objectType": f.object_type,
                        "classification": {"name": f.classification, "color": list(f.color)},
                        "measurements": f.measurements}} for f in feats]}
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "wt") as fh:
        json.dump(doc, fh)


def naive_read(path: Path) -> list:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt") as fh:
        doc = json.load(fh)
    return [(shapely.geometry.shape(f["geometry"]), f["properties"]) for f in doc["features"]]


CPU: dict[str, float] = {}


def timed(fn, *args, key: str = "") -> tuple[float, object]:
    """Wall seconds (and CPU seconds of this process, all threads, into CPU[key])."""
    c0, t0 = time.process_time(), time.perf_counter()
    out = fn(*args)
    CPU[key] = time.process_time() - c0
    return time.perf_counter() - t0, out


def calibrate() -> str:
    """How loaded the machine is: a 10M-iteration Python loop (about 0.4 s on an idle core)."""
    c0, t0 = time.process_time(), time.perf_counter()
    s = 0
    for i in range(10_000_000):
        s += i
    return f"10M-loop calibration: wall {time.perf_counter() - t0:.2f} s, cpu {time.process_time() - c0:.2f} s"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--baseline-n", type=int, default=None, help="features for the naive baseline (default: --n)")
    ap.add_argument("--decimals", type=int, default=None, help="round coordinates when writing (default exact)")
    ap.add_argument("--dir", default=None, help="scratch folder (default: a temporary one)")
    args = ap.parse_args()
    bn = args.baseline_n or args.n
    print(f"cores: {os.cpu_count()}, nice {os.nice(0)}, load average: {os.getloadavg()[0]:.1f}; {calibrate()}")
    t, feats = timed(make_features, args.n)
    print(f"make {args.n:,} Feature objects (16-vertex polygons): {t:.1f} s")
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        tmp = Path(tmp)
        for suffix in (".geojson", ".geojson.gz"):
            path = tmp / f"nuclei{suffix}"
            tw, _ = timed(lambda: write_geojson(path, feats, decimals=args.decimals), key="w")
            size = path.stat().st_size
            tr, ann = timed(read_geojson, path, key="r")
            assert len(ann) == args.n
            assert shapely.equals_exact(ann.features[-1].geometry, feats[-1].geometry, 0 if args.decimals is None else 10 ** -args.decimals)
            del ann
            npath = tmp / f"naive{suffix}"
            sub = feats[:bn]
            nw, _ = timed(naive_write, npath, sub, key="nw")
            nr, _ = timed(naive_read, npath, key="nr")
            scale = args.n / bn
            print(f"{suffix:12s} size {size / 1e6:7.1f} MB | write {tw:6.1f} s ({args.n / tw:9,.0f}/s)"
                  f" | read {tr:6.1f} s ({args.n / tr:9,.0f}/s) | cpu write {CPU['w']:.1f} s, read {CPU['r']:.1f} s")
            print(f"{'':12s} naive on {bn:,}: write {nw:6.1f} s ({bn / nw:9,.0f}/s) | read {nr:6.1f} s ({bn / nr:9,.0f}/s)"
                  f" | speed-up write x{nw * scale / tw:.1f}, read x{nr * scale / tr:.1f}"
                  f" (cpu x{CPU['nw'] * scale / CPU['w']:.1f}, x{CPU['nr'] * scale / CPU['r']:.1f})")
        print(f"load average: {os.getloadavg()[0]:.1f}; {calibrate()}")
    print(f"peak memory (max RSS): {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6:.1f} GB")


if __name__ == "__main__":
    main()
