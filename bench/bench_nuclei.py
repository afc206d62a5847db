"""The nuclei benchmarks of issue #4 in one run.

Sections (``--sections``, comma-separated; all by default):

``merge``
    Merge + write of ``--nuclei`` (default 1,000,000) nuclei exactly as ``wsi-pipeline run``
    does it: star-convex polygons laid out on a slide at 0.25 µm/px, handed to the tiles of
    the weight-free detector's grid (640 px, halo 80) the way a detector sees them (every
    nucleus whose box fits in a tile's halo box, so neighbours report the same nucleus
    twice), then the responsibility-rule merge (``tile_runner.keep_owned``), sorting, stable
    ids, ``nuclei.geojson.gz`` and ``nuclei.parquet`` (``run._write_nuclei``). Checks that
    each nucleus comes out exactly once. Prints seconds (wall and CPU), nuclei/s and slide
    megapixels/s at 0.25 µm/px. Baseline in the same run: ``json.dump`` of the same features
    as plain GeoJSON dicts (no merge, no gzip, no ids, no table).
``weightfree``
    Megapixels/s of the weight-free detector on spec-size tiles (MoNuSeg dev tiles when
    ../shared/data is present, else a synthetic H&E field). Its accuracy against the
    scikit-image baseline is bench/bench_nuclei_weightfree.py.
``stardist``
    Torch StarDist vs stardist-TF ``predict_instances_big`` on the same image, same weights:
    runs bench/bench_stardist.py (``--size``, default 4096; TF side where ``--tf-python`` or
    the repository's .tfenv (or $STARDIST_TF_PYTHON) has tensorflow + stardist).

    .venv/bin/python bench/bench_nuclei.py
    .venv/bin/python bench/bench_nuclei.py --sections merge --nuclei 200000
    .venv/bin/python bench/bench_nuclei.py --sections stardist --size 4096 --stardist-args "--tf-serial-nms"
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
from bench_stardist import _clock, _since  # noqa: E402  (wall and CPU seconds, one clock for both)
MONUSEG = REPO.parent / "shared" / "data" / "nuclei" / "monuseg-dev"


def star_polygons(n: int, *, spacing: float, seed: int = 0) -> tuple[np.ndarray, float]:
    """``n`` star-convex nuclei on a jittered square lattice; -> (N,) polygons, side in px."""
    import shapely

    rng = np.random.default_rng(seed)
    side = int(np.ceil(np.sqrt(n)))
    gy, gx = np.divmod(np.arange(n), side)
    centre = (np.stack([gx, gy], 1) + 0.5) * spacing + rng.uniform(-0.2, 0.2, (n, 2)) * spacing
    angles = np.linspace(0, 2 * np.pi, 32, endpoint=False)
    radius = rng.uniform(8, 15, (n, 1)) * rng.uniform(0.8, 1.0, (n, 32))
    ring = centre[:, None, :] + radius[..., None] * np.stack([np.cos(angles), np.sin(angles)], -1)
    ring = np.concatenate([ring, ring[:, :1]], 1)
    return shapely.polygons(ring), side * spacing


def tile_inputs(polys: np.ndarray, tiles) -> list:
    """Per tile, the Instances a detector would return: every nucleus inside its halo box."""
    import shapely

    from detectors.base import Instances
    from detectors.nuclei.measurements import NAMES

    bounds = shapely.bounds(polys)
    order = np.argsort(bounds[:, 0], kind="stable")
    xmin_sorted = bounds[order, 0]
    rng = np.random.default_rng(1)
    out = []
    for t in tiles:
        x0, y0, x1, y1 = t.halo_box
        lo, hi = np.searchsorted(xmin_sorted, [x0, x1])
        cand = order[lo:hi]
        b = bounds[cand]
        rows = cand[(b[:, 1] >= y0) & (b[:, 2] < x1) & (b[:, 3] < y1)]
        geoms = shapely.transform(polys[rows], lambda c: c - np.array([x0, y0], float))
        meas = {k: rng.random(len(rows)) for k in NAMES}
        out.append(Instances(geoms, rng.random(len(rows)).astype(np.float32), np.full(len(rows), "Nucleus", object),
                             meas))
    return out


def bench_merge(n: int, out_dir: Path) -> dict:
    from detectors.nuclei.weightfree import SPEC
    from tiling.grid import tile_grid
    from wsi_pipeline.annotations import instances_to_features
    from wsi_pipeline.ids import sort_instances
    from wsi_pipeline.run import _write_nuclei
    from wsi_pipeline.tile_runner import keep_owned

    polys, side = star_polygons(n, spacing=36.0)
    size = (int(side) + 1, int(side) + 1)
    tiles = tile_grid(size, slide_mpp=SPEC.mpp, working_mpp=SPEC.mpp, tile_size=SPEC.tile_size, halo=SPEC.halo,
                      max_object=SPEC.max_object_size)
    per_tile = tile_inputs(polys, tiles)
    seen = sum(len(p) for p in per_tile)
    print(f"merge: {n:,} nuclei on a {size[0]}x{size[1]} px slide ({size[0] * size[1] / 1e6:.0f} MP at 0.25 µm/px), "
          f"{len(tiles):,} tiles reporting {seen:,} (x{seen / n:.2f}: halo duplicates)", flush=True)
    from detectors.base import Instances

    t = _clock()
    merged = sort_instances(Instances.concatenate([keep_owned(r, tile) for r, tile in zip(per_tile, tiles)]))
    merge_s = _since(t)
    if len(merged) != n:
        raise SystemExit(f"merge kept {len(merged):,} nuclei, expected {n:,}")
    t = _clock()
    _write_nuclei(out_dir, SimpleNamespace(slide_id="bench"), merged, {"bench": True})
    write_s = _since(t)
    gz = (out_dir / "nuclei.geojson.gz").stat().st_size
    t = _clock()
    feats = instances_to_features(merged, classification="Nucleus")
    plain = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [list(map(list, f.geometry.exterior.coords))]},
         "properties": {"measurements": f.measurements}} for f in feats]}
    (out_dir / "naive.geojson").write_text(json.dumps(plain))
    naive_s = _since(t)
    total = merge_s[0] + write_s[0]
    mp = size[0] * size[1] / 1e6
    print(f"  merge (keep_owned + sort): {merge_s[0]:.1f} s wall, {merge_s[1]:.1f} s CPU")
    print(f"  write (ids + nuclei.geojson.gz {gz / 1e6:.0f} MB + nuclei.parquet): {write_s[0]:.1f} s wall, "
          f"{write_s[1]:.1f} s CPU")
    print(f"  merge + write: {total:.1f} s = {n / total:,.0f} nuclei/s = {mp / total:.1f} slide MP/s")
    print(f"  baseline json.dump of the same polygons (no merge/gzip/ids/table): {naive_s[0]:.1f} s wall; "
          f"speed-up x{naive_s[0] / total:.2f}", flush=True)
    return {"nuclei": n, "tiles": len(tiles), "merge_s": merge_s, "write_s": write_s, "naive_json_s": naive_s,
            "nuclei_per_s": n / total, "slide_mp_per_s": mp / total, "geojson_gz_bytes": gz}


def field_tiles(size: int) -> tuple[np.ndarray, str]:
    if MONUSEG.is_dir():
        import tifffile

        imgs = [tifffile.imread(p)[..., :3] for p in sorted(MONUSEG.glob("*.tif"))]
        tiles = [im[y:y + size, x:x + size] for im in imgs for y in (0, im.shape[0] - size)
                 for x in (0, im.shape[1] - size)]
        return np.stack(tiles), f"{len(tiles)} crops of the MoNuSeg dev tiles"
    from detectors.testing import blob_image

    return np.stack([blob_image(size, seed=i)[0] for i in range(8)]), "8 synthetic fields"


def bench_weightfree(device: str) -> dict:
    from detectors.nuclei.weightfree import SPEC, WeightFreeNucleiDetector

    tiles, what = field_tiles(SPEC.tile_size)
    det = WeightFreeNucleiDetector(device=device)
    det.calibrate(tiles)
    det.predict_batch(tiles[:1])  # warm-up
    t = _clock()
    found = sum(len(r) for i in range(0, len(tiles), 4) for r in det.predict_batch(tiles[i:i + 4]))
    wall, cpu = _since(t)
    mp = tiles.shape[0] * SPEC.tile_size ** 2 / 1e6
    print(f"weightfree: {what}, {SPEC.tile_size} px at {SPEC.mpp} µm/px, device {det.device}: {found:,} nuclei, "
          f"{wall:.1f} s wall ({cpu:.1f} s CPU) = {mp / wall:.2f} MP/s", flush=True)
    return {"tiles": int(tiles.shape[0]), "nuclei": found, "wall_s": wall, "cpu_s": cpu, "mp_per_s": mp / wall}


def bench_stardist(size: int, extra: str) -> int:
    cmd = [sys.executable, str(REPO / "bench" / "bench_stardist.py"), "--size", str(size), *shlex.split(extra)]
    print("stardist:", " ".join(cmd), flush=True)
    return subprocess.call(cmd)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sections", default="merge,weightfree,stardist")
    ap.add_argument("--nuclei", type=int, default=1_000_000)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--size", type=int, default=4096, help="stardist image side")
    ap.add_argument("--stardist-args", default="--prob-thresh 0.19 --tf-serial-nms",
                    help="passed to bench/bench_stardist.py")
    ap.add_argument("--json", type=Path, help="write the merge/weightfree numbers here")
    args = ap.parse_args(argv)
    sections = {s.strip() for s in args.sections.split(",") if s.strip()}
    unknown = sections - {"merge", "weightfree", "stardist"}
    if unknown:
        ap.error(f"unknown sections: {', '.join(sorted(unknown))}")
    print(f"cpu cores {os.cpu_count()}, load average {os.getloadavg()[0]:.1f}", flush=True)
    results, rc = {}, 0
    if "weightfree" in sections:
        results["weightfree"] = bench_weightfree(args.device)
    if "merge" in sections:
        with tempfile.TemporaryDirectory() as tmp:
            results["merge"] = bench_merge(args.nuclei, Path(tmp))
    if "stardist" in sections:
        rc = bench_stardist(args.size, args.stardist_args)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return rc


if __name__ == "__main__":
    sys.exit(main())
