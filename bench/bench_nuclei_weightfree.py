"""Weight-free nuclei detector vs a grid-searched scikit-image distance-watershed baseline.

On the MoNuSeg-2018 dev tiles (1000 x 1000 H&E at ~0.25 µm/px, XML polygons) it prints,
per tile and overall (aggregated over tiles; AJI = summed intersections / unions):
AJI, F1 at IoU 0.5 and PQ for ours (one setting, calibrated per image as per slide) and for
the baseline (Otsu on hematoxylin, distance transform, peak_local_max markers, watershed),
whose parameters are grid-searched on the same tiles (best aggregated AJI), the ratio
ours/baseline, and our megapixels/s on spec-size tiles. The same is printed for the
single-level detector that came before the threshold tree (``weightfree-fast``), so the
tree's gain and its cost are measured in the same run.

With ``--loo`` it also grid-searches our main parameters (:data:`OURS_GRID`) and prints
leave-one-tile-out scores for both methods: for each tile the setting with the best
aggregated AJI on the other six is chosen and scored on the held-out tile.

    .venv/bin/python bench/bench_nuclei_weightfree.py                 # 'fair' baseline grid (27)
    .venv/bin/python bench/bench_nuclei_weightfree.py --loo --workers 2 --json out.json
    .venv/bin/python bench/bench_nuclei_weightfree.py --grid full --workers 16   # 90 settings
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
import multiprocessing
from pathlib import Path

import numpy as np
import tifffile
from scipy import ndimage

from detectors.nuclei.polygons import rasterise
from detectors.nuclei.weightfree import SINGLE_LEVEL, WeightFreeNucleiDetector, WeightFreeParams
from wsi_pipeline.evaluation import ImageScores, load_labels, score_labels

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "nuclei" / "monuseg-dev"
# "fair" brackets the best setting found on these tiles (sigma 0.5, k 1.2, md 9) on every
# side; wider searches (k 1.0-1.8, md 3-15, min_size 30-150, sigma up to 2) found nothing better.
GRIDS = {
    "fair": dict(sigma=[0.0, 0.5, 1.0], k=[1.1, 1.2, 1.3], md=[7, 9, 11], min_size=[80]),
    "small": dict(sigma=[0.5, 1.0], k=[1.0, 1.2], md=[7, 9, 11], min_size=[80]),
    "full": dict(sigma=[0.5, 1.0, 2.0], k=[0.8, 1.0, 1.2], md=[3, 5, 7, 9, 11], min_size=[30, 80]),
}


def baseline(rgb: np.ndarray, *, sigma: float, k: float, md: int, min_size: int) -> np.ndarray:
    """scikit-image recipe: (H, W, 3) uint8 -> (H, W) labels."""
    from skimage.color import rgb2hed
    from skimage.feature import peak_local_max
    from skimage.filters import gaussian, threshold_otsu
    from skimage.morphology import remove_small_objects
    from skimage.segmentation import watershed

    h = gaussian(rgb2hed(rgb)[..., 0], sigma)
    fg = h > k * threshold_otsu(h)
    fg = ndimage.binary_fill_holes(remove_small_objects(fg, max_size=min_size))
    dist = ndimage.distance_transform_edt(fg)
    comps, _ = ndimage.label(fg)
    peaks = peak_local_max(dist, min_distance=md, labels=comps, exclude_border=False)
    markers = np.zeros(fg.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    return watershed(-dist, markers, mask=fg)


def load(data: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    out = {}
    for xml in sorted(data.glob("*.xml")):
        rgb = tifffile.imread(xml.with_suffix(".tif"))[..., :3]
        out[xml.stem] = (rgb, load_labels(xml, shape=rgb.shape[:2]))
    if not out:
        raise SystemExit(f"no *.xml + *.tif pairs in {data}")
    return out


_TILES: dict = {}


def _init_worker(tiles: dict) -> None:
    _TILES.update(tiles)


def _pool(workers: int, tiles: dict):
    """Worker processes started fresh (spawn), each given the tiles: a fork after torch's
    threads have started can deadlock the children (it did here, in the grid of ours)."""
    return multiprocessing.get_context("spawn").Pool(workers, initializer=_init_worker, initargs=(tiles,))


def _baseline_job(job):
    cfg, stem = job
    rgb, gt = _TILES[stem]
    return cfg, stem, score_labels(gt, baseline(rgb, **cfg))


def summary(s: ImageScores) -> tuple[float, float, float]:
    m = s.at(0.5)
    return s.aji, m["f1"], m["pq"]


def run_baseline(tiles, grid: dict, workers: int):
    cfgs = [dict(zip(grid, v)) for v in itertools.product(*grid.values())]
    jobs = [(c, s) for c in cfgs for s in tiles]
    _TILES.update(tiles)
    if workers > 1:
        with _pool(workers, tiles) as pool:
            results = pool.map(_baseline_job, jobs)
    else:
        results = [_baseline_job(j) for j in jobs]
    by_cfg: dict[str, dict[str, ImageScores]] = {}
    for cfg, stem, sc in results:
        by_cfg.setdefault(json.dumps(cfg, sort_keys=True), {})[stem] = sc
    best = max(by_cfg, key=lambda k: sum(by_cfg[k].values(), ImageScores()).aji)
    return json.loads(best), by_cfg[best], len(cfgs), by_cfg


#: our parameters searched with --loo (the defaults are the middle values)
OURS_GRID = {"threshold_factor": [0.75, 0.8, 0.85], "min_score": [0.2, 0.3, 0.4], "marker_h": [0.3, 0.5, 0.7]}


def run_ours(tiles, device: str, params: WeightFreeParams | None = None):
    per, seconds = {}, 0.0
    for stem, (rgb, gt) in tiles.items():
        det = WeightFreeNucleiDetector(device=device, params=params).calibrate(rgb)
        t = time.perf_counter()
        res = det.predict(rgb)
        seconds += time.perf_counter() - t
        per[stem] = score_labels(gt, rasterise(res.geometry, gt.shape))
    return per, seconds


def _ours_job(job):
    cfg, device = job
    return cfg, run_ours(_TILES, device, WeightFreeParams(**cfg))[0]


def run_ours_grid(tiles, device: str, workers: int) -> dict[str, dict[str, ImageScores]]:
    """{setting as JSON: {tile: scores}} for every setting of :data:`OURS_GRID`."""
    cfgs = [dict(zip(OURS_GRID, v)) for v in itertools.product(*OURS_GRID.values())]
    _TILES.update(tiles)
    jobs = [(c, device) for c in cfgs]
    if workers > 1:
        with _pool(workers, tiles) as pool:
            results = pool.map(_ours_job, jobs)
    else:
        results = [_ours_job(j) for j in jobs]
    return {json.dumps(c, sort_keys=True): per for c, per in results}


def leave_one_out(by_cfg: dict[str, dict[str, ImageScores]]) -> dict[str, tuple[str, ImageScores]]:
    """For each tile: the setting with the best aggregated AJI on the other tiles, and its
    scores on the held-out tile."""
    stems = list(next(iter(by_cfg.values())))
    out = {}
    for held in stems:
        def train_aji(key, held=held):
            return sum((s for t, s in by_cfg[key].items() if t != held), ImageScores()).aji
        best = max(by_cfg, key=train_aji)
        out[held] = (best, by_cfg[best][held])
    return out


def throughput(tiles, device: str, *, batch: int = 8, params: WeightFreeParams | None = None) -> tuple[float, str]:
    """Megapixels/s of predict_batch on spec-size tiles cut from the dev images."""
    det = WeightFreeNucleiDetector(device=device, params=params)
    ts = det.spec.tile_size
    crops = np.stack([rgb[y:y + ts, x:x + ts] for rgb, _ in tiles.values()
                      for y in (0, rgb.shape[0] - ts) for x in (0, rgb.shape[1] - ts)])
    det.predict_batch(crops[:1])  # warm-up
    t = time.perf_counter()
    for i in range(0, len(crops), batch):
        det.predict_batch(crops[i:i + batch])
    dt = time.perf_counter() - t
    return crops[..., 0].size / dt / 1e6, str(det.device)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--grid", choices=sorted(GRIDS), default="fair")
    ap.add_argument("--workers", type=int, default=1, help="processes for the baseline grid")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--loo", action="store_true", help="grid-search ours too; leave-one-tile-out scores")
    args = ap.parse_args()

    tiles = load(args.data)
    t0 = time.perf_counter()
    ours, ours_s = run_ours(tiles, args.device)
    t1 = time.perf_counter()
    best_cfg, base, n_cfg, base_grid = run_baseline(tiles, GRIDS[args.grid], args.workers)
    t2 = time.perf_counter()
    mps, dev = throughput(tiles, args.device)
    single, single_s = run_ours(tiles, args.device, WeightFreeParams(**SINGLE_LEVEL))
    single_mps, _ = throughput(tiles, args.device, params=WeightFreeParams(**SINGLE_LEVEL))

    print(f"{'tile':<26} {'ours AJI':>8} {'F1':>6} {'PQ':>6}   {'base AJI':>8} {'F1':>6} {'PQ':>6}")
    for stem in tiles:
        a, b = summary(ours[stem]), summary(base[stem])
        print(f"{stem:<26} {a[0]:8.3f} {a[1]:6.3f} {a[2]:6.3f}   {b[0]:8.3f} {b[1]:6.3f} {b[2]:6.3f}")
    o_all = summary(sum(ours.values(), ImageScores()))
    b_all = summary(sum(base.values(), ImageScores()))
    print(f"{'OVERALL (aggregated)':<26} {o_all[0]:8.3f} {o_all[1]:6.3f} {o_all[2]:6.3f}   "
          f"{b_all[0]:8.3f} {b_all[1]:6.3f} {b_all[2]:6.3f}")
    o_mean = np.mean([summary(s) for s in ours.values()], axis=0)
    b_mean = np.mean([summary(s) for s in base.values()], axis=0)
    print(f"{'MEAN over tiles':<26} {o_mean[0]:8.3f} {o_mean[1]:6.3f} {o_mean[2]:6.3f}   "
          f"{b_mean[0]:8.3f} {b_mean[1]:6.3f} {b_mean[2]:6.3f}")
    ratio = [o / b for o, b in zip(o_all, b_all, strict=True)]
    print(f"ratio ours/baseline: AJI {ratio[0]:.3f}  F1 {ratio[1]:.3f}  PQ {ratio[2]:.3f}")
    s_all = summary(sum(single.values(), ImageScores()))
    print(f"{'single level (fast)':<26} {s_all[0]:8.3f} {s_all[1]:6.3f} {s_all[2]:6.3f}   "
          f"({single_s:.1f} s for the tiles; {single_mps:.2f} MP/s, {single_mps / mps:.1f}x ours)")
    print(f"baseline best of {n_cfg} settings ({args.grid} grid, {t2 - t1:.0f} s): {best_cfg}")
    print(f"ours: {ours_s:.1f} s for {len(tiles)} tiles of 1 MP; throughput {mps:.2f} MP/s on {dev} "
          f"({WeightFreeNucleiDetector.spec.tile_size}-px tiles, batch 8); wall {t1 - t0:.0f} s incl. scoring")
    loo = {}
    if args.loo:
        t3 = time.perf_counter()
        ours_grid = run_ours_grid(tiles, args.device, args.workers)
        loo = {"ours": leave_one_out(ours_grid), "baseline": leave_one_out(base_grid)}
        print(f"leave-one-tile-out (setting chosen on the other 6 tiles; ours over {len(ours_grid)} settings "
              f"of {OURS_GRID}, {time.perf_counter() - t3:.0f} s):")
        for stem in tiles:
            (ko, so), (kb, sb) = loo["ours"][stem], loo["baseline"][stem]
            a, b = summary(so), summary(sb)
            print(f"{stem:<26} {a[0]:8.3f} {a[1]:6.3f} {a[2]:6.3f}   {b[0]:8.3f} {b[1]:6.3f} {b[2]:6.3f}   ours {ko}")
        lo = summary(sum((v[1] for v in loo["ours"].values()), ImageScores()))
        lb = summary(sum((v[1] for v in loo["baseline"].values()), ImageScores()))
        print(f"{'LOO OVERALL (aggregated)':<26} {lo[0]:8.3f} {lo[1]:6.3f} {lo[2]:6.3f}   {lb[0]:8.3f} {lb[1]:6.3f} {lb[2]:6.3f}")
        best_ours = max(ours_grid, key=lambda k: sum(ours_grid[k].values(), ImageScores()).aji)
        bo = summary(sum(ours_grid[best_ours].values(), ImageScores()))
        print(f"ours best of grid on all 7: {best_ours} AJI {bo[0]:.3f} F1 {bo[1]:.3f} PQ {bo[2]:.3f}")
    if args.json:
        args.json.write_text(json.dumps({
            "ours": {k: v.to_dict() for k, v in ours.items()}, "baseline": {k: v.to_dict() for k, v in base.items()},
            "baseline_setting": best_cfg, "overall": {"ours": o_all, "baseline": b_all, "ratio": ratio},
            "megapixels_per_s": mps, "device": dev,
            "single_level": {"overall": s_all, "megapixels_per_s": single_mps},
            "leave_one_out": {m: {k: {"setting": json.loads(c), "scores": v.to_dict()} for k, (c, v) in d.items()}
                              for m, d in loo.items()},
        }, indent=1))


if __name__ == "__main__":
    main()
