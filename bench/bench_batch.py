"""Batch throughput: synthetic slides through `batch` on a LocalCluster of 1 vs 2 workers.

Prints slides/hour, the speed-up of 2 workers over 1, and peak memory per worker process
(ru_maxrss read in each worker after the batch), all in one run.

    python bench/bench_batch.py [--slides 4] [--width 3072 --height 2304] [--workers 1 2]
"""

from __future__ import annotations

import argparse
import resource
import shutil
import tempfile
import time
from pathlib import Path


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def make_slides(folder: Path, n: int, width: int, height: int) -> None:
    from wsi_pipeline.synthetic import make_synthetic_slide

    for i in range(n):
        s = make_synthetic_slide(folder / f"_s{i}", width=width, height=height, mpp=0.5, seed=100 + i,
                                 name=f"slide{i:02d}", ink_depth_um=30, epidermis_um=40)
        shutil.move(str(s.path), folder / f"slide{i:02d}.svs")
        shutil.rmtree(folder / f"_s{i}")


def bench(folder: Path, out: Path, workers: int) -> dict:
    from distributed import Client, LocalCluster

    from wsi_pipeline.batch.runner import run_batch
    from wsi_pipeline.config import load_config

    cfg = load_config("cpu-fast").updated(**{"device": "cpu", "cluster.kind": "local", "cluster.workers": workers})
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0",
                      memory_limit="6GB") as cluster, Client(cluster) as client:
        t0 = time.perf_counter()
        result = run_batch(folder, out, cfg, show_progress=False, client=client)
        dt = time.perf_counter() - t0
        peaks = client.run(_peak_rss_mb)
    done = sum(r.status == "done" for r in result.rows)
    return {"workers": workers, "slides": done, "seconds": dt, "slides_per_hour": 3600 * done / dt,
            "worker_peak_mb": max(peaks.values())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slides", type=int, default=4)
    ap.add_argument("--width", type=int, default=3072)
    ap.add_argument("--height", type=int, default=2304)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as tmp:
        folder = Path(tmp) / "slides"
        folder.mkdir()
        make_slides(folder, args.slides, args.width, args.height)
        rows = [bench(folder, Path(tmp) / f"out{w}", w) for w in args.workers]
    base = rows[0]["slides_per_hour"]
    for r in rows:
        print(f"{r['workers']} worker(s): {r['slides']} slides in {r['seconds']:.1f} s = {r['slides_per_hour']:.1f} slides/h, "
              f"speed-up x{r['slides_per_hour'] / base:.2f}, peak RSS per worker {r['worker_peak_mb']:.0f} MB")


if __name__ == "__main__":
    main()
