"""Whole-slide throughput (issue 19): the whole default ``run`` on a synthetic skin excision.

What it measures, in one benchmark run:

* a synthetic Aperio-like excision at 0.25 µm/px with >= ``--tissue-mm2`` of tissue (default
  100 mm² = 1 cm², an ellipse about 25 x 5 mm), made once by the project's painter and cached
  outside the repository (``~/.cache/wsi-pipeline/bench/``, or ``--cache DIR`` /
  ``$WSI_BENCH_CACHE``); see :mod:`wsi_pipeline.synthetic.large`;
* ``python -m wsi_pipeline run`` on it (every stage of ``configs/default.yaml`` unless
  ``--config``), as a subprocess into a temporary folder: wall seconds, and the peak of the
  summed RSS of that process and all its children (Dask workers included), sampled every
  0.2 s (summed RSS counts pages shared between processes once per process: an upper bound);
* from the run's ``summary.json``: tissue mm² found, each stage's seconds, share of the total
  and tissue mm² per minute;
* the raw decode rate of the same tiles: after the run, the slide is opened again and the
  halo box of every nuclei tile is read at the nuclei detector's working mpp, one thread, the
  way ``tile_runner.read_tile`` does, over the grid the run builds (tissue found the way the
  run's tissue stage finds it; the tile count is checked against the run's);
* issue 19's targets with PASS/FAIL (CPU: >= 10 mm²/min and peak RSS <= 4 GB; GPU: >= 100
  mm²/min), using the whole process's wall time, and the machine (cores, load, threads).

Run (from the repository root)::

    .venv/bin/python bench/bench_slide.py                     # 1 cm², device auto
    .venv/bin/python bench/bench_slide.py --tissue-mm2 10     # a quicker, smaller excision
    .venv/bin/python bench/bench_slide.py --device cuda --json bench_gpu.json

Options it does not know go to ``run`` unchanged (``--nuclei-model weightfree-fast``,
``--workers 2``, ``--config cpu-fast``...). Making the 1 cm² slide takes a few minutes on one
core (once); ``--cache`` chooses where it lives.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

TARGETS = {"cpu_mm2_per_min": 10.0, "cpu_peak_rss_gb": 4.0, "gpu_mm2_per_min": 100.0}
DEFAULT_CACHE = "~/.cache/wsi-pipeline/bench"


# -- process-tree memory ----------------------------------------------------------------
class TreeRss:
    """Peak summed RSS of a process and all its descendants, sampled every ``interval`` s."""

    def __init__(self, pid: int, interval: float = 0.2) -> None:
        import psutil

        self._root = psutil.Process(pid)
        self.interval = interval
        self.peak_bytes = 0
        self.peak_root_bytes = 0
        self.peak_processes = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="rss-sampler", daemon=True)

    def __enter__(self) -> TreeRss:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def sample(self) -> None:
        import psutil

        try:
            procs = [self._root, *self._root.children(recursive=True)]
        except psutil.Error:
            return
        total = 0
        for p in procs:
            try:
                rss = p.memory_info().rss
            except psutil.Error:  # ended between listing and reading
                continue
            total += rss
            if p.pid == self._root.pid:
                self.peak_root_bytes = max(self.peak_root_bytes, rss)
        self.peak_bytes = max(self.peak_bytes, total)
        self.peak_processes = max(self.peak_processes, len(procs))
        self.samples += 1

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)


# -- the run ---------------------------------------------------------------------------
def run_args(slide: Path, out: Path, args, extra: list[str]) -> list[str]:
    argv = [str(slide), "--out", str(out), "--device", args.device]
    if args.config:
        argv += ["--config", args.config]
    return argv + list(extra)


def run_pipeline(argv: list[str], log_path: Path, timeout: float | None) -> dict:
    """``python -m wsi_pipeline run ARGV`` with its process tree's memory watched."""
    cmd = [sys.executable, "-m", "wsi_pipeline", "run", *argv]
    t0 = time.perf_counter()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        with TreeRss(proc.pid) as rss:
            try:
                rc = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                rc = None
    wall = time.perf_counter() - t0
    return {"cmd": cmd, "returncode": rc, "wall_s": wall, "peak_rss_bytes": rss.peak_bytes,
            "peak_main_rss_bytes": rss.peak_root_bytes, "peak_processes": rss.peak_processes,
            "rss_samples": rss.samples}


def read_summary(out: Path) -> dict:
    found = sorted(p for p in out.glob("*/summary.json") if not p.parent.name.startswith("."))
    if len(found) != 1:
        raise SystemExit(f"{out}: expected one <slide-id>/summary.json after the run, found {len(found)}")
    return json.loads(found[0].read_text())


# -- decode of the same tiles ------------------------------------------------------------
def run_config(argv: list[str]):
    """The config the run used: its own parser and option handling on the same arguments."""
    from wsi_pipeline.commands import run as run_cmd
    from wsi_pipeline.commands._options import config_from_args

    parser = argparse.ArgumentParser(prog="wsi-pipeline run")
    run_cmd.add_arguments(parser)
    return config_from_args(parser.parse_args(argv))


def decode_tiles(slide_path: Path, cfg) -> dict:
    """Read every nuclei tile's halo box at the detector's mpp, as the run's nuclei stage does."""
    from tiling import open_slide
    from wsi_pipeline.annotations import bounds_properties
    from wsi_pipeline.detection import nuclei_factory
    from wsi_pipeline.run import nuclei_tiles
    from wsi_pipeline.run_stages import detect_tissue_stage
    from wsi_pipeline.tile_runner import read_tile

    logging.getLogger("wsi_pipeline.detection").setLevel(logging.ERROR)  # the run already said which model
    with open_slide(slide_path) as slide, tempfile.TemporaryDirectory(prefix="bench-tissue-") as tmp:
        tissue = detect_tissue_stage(slide, cfg, Path(tmp), bounds_properties(slide.bounds))
        factory, _ = nuclei_factory(cfg.nuclei.model, cfg.device, slide=slide, mpp=cfg.nuclei.mpp)
        spec = factory().spec
        tile_size = cfg.nuclei.tile_size or spec.tile_size
        tiles = nuclei_tiles(slide, tissue, spec, cfg, tile_size)
        core = tile_size - 2 * spec.halo
        t0 = time.perf_counter()
        checksum = 0
        for t in tiles:
            checksum += int(read_tile(slide, t, spec.mpp)[::64, ::64, 1].sum())  # touch the pixels
        seconds = time.perf_counter() - t0
        scale = spec.mpp / slide.mpp[0]
    working_px = len(tiles) * tile_size * tile_size
    return {"tiles": len(tiles), "tile_size": tile_size, "halo": spec.halo, "core": core,
            "working_mpp": spec.mpp, "slide_mpp": float(slide.mpp[0]), "seconds": seconds,
            "working_mpix": working_px / 1e6, "level0_mpix": working_px * scale * scale / 1e6,
            "halo_overhead": tile_size * tile_size / (core * core) - 1, "checksum": checksum,
            "tissue_mm2": tissue.total_area_mm2}


# -- machine -----------------------------------------------------------------------------
def machine(device: str) -> dict:
    import torch

    info = {"host_cpus": os.cpu_count(), "usable_cpus": len(os.sched_getaffinity(0)),
            "platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "torch_interop_threads": torch.get_num_interop_threads(),
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"), "device_requested": device}
    try:
        from detectors.device import select_device

        info["device"] = str(select_device(device))
    except Exception as exc:  # noqa: BLE001 - reported, the run will say the same
        info["device"] = f"unavailable ({exc})"
    if info["device"].startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(torch.device(info["device"]))
    return info


# -- report ------------------------------------------------------------------------------
def _size(n: int) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e9 else f"{n / 1e6:.1f} MB"


def per_min(mm2: float, seconds: float) -> float | None:
    return mm2 / seconds * 60.0 if seconds > 0 else None


def _fmt(v, spec=".2f") -> str:
    return "-" if v is None else format(v, spec)


def report(res: dict) -> list[str]:
    lines = []
    m, sl, run, dec = res["machine"], res["slide"], res["run"], res["decode"]
    mm2 = res["tissue_mm2"]
    lines.append(f"machine: {m['usable_cpus']} usable cores of {m['host_cpus']}, torch {m['torch']} "
                 f"({m['torch_threads']} threads in the bench process, OMP_NUM_THREADS={m['OMP_NUM_THREADS']}), "
                 f"device {m['device']}" + (f" ({m['gpu']})" if m.get("gpu") else ""))
    lines.append(f"load average: start {res['load_start'][0]:.2f} {res['load_start'][1]:.2f} "
                 f"{res['load_start'][2]:.2f} | end {res['load_end'][0]:.2f} {res['load_end'][1]:.2f} "
                 f"{res['load_end'][2]:.2f}")
    made = f"made now in {sl['seconds']:.0f} s" if sl["created"] else f"cached, made in {sl['seconds']:.0f} s"
    lines.append(f"slide: {sl['path']} ({made}), {sl['width']} x {sl['height']} px at {sl['mpp']} µm/px, "
                 f"{_size(sl['file_bytes'])}, painted tissue {sl['tissue_mm2']:.2f} mm²")
    lines.append(f"run: {' '.join(run['cmd'][1:])}")
    lines.append(f"tissue found by the run: {mm2:.2f} mm²  ({res['counts'].get('nuclei_tiles')} nuclei tiles, "
                 f"{res['counts'].get('nuclei')} nuclei)")
    lines.append(f"nuclei model: {res['counts'].get('nuclei_model')}")
    lines.append("")
    lines.append(f"{'stage':<14}{'seconds':>10}{'share':>8}{'mm²/min':>11}")
    total = res["timings"].get("total") or 0.0
    stages = {k: v for k, v in res["timings"].items() if k != "total"}
    for name, s in stages.items():
        lines.append(f"{name:<14}{s:>10.1f}{(s / total if total else 0):>8.1%}{_fmt(per_min(mm2, s), '.1f'):>11}")
    other = total - sum(stages.values())
    lines.append(f"{'(other)':<14}{other:>10.1f}{(other / total if total else 0):>8.1%}{'':>11}")
    lines.append(f"{'run total':<14}{total:>10.1f}{1:>8.0%}{_fmt(per_min(mm2, total), '.2f'):>11}")
    lines.append(f"{'process wall':<14}{run['wall_s']:>10.1f}{'':>8}{_fmt(res['mm2_per_min'], '.2f'):>11}"
                 "   (startup, imports, Dask cluster included)")
    lines.append("")
    lines.append(f"decode, same tiles, 1 thread: {dec['tiles']} tiles of {dec['tile_size']}² at "
                 f"{dec['working_mpp']} µm/px (core {dec['core']}, halo overhead {dec['halo_overhead']:.0%}) in "
                 f"{dec['seconds']:.1f} s = {dec['working_mpix'] / dec['seconds']:.1f} MP/s working "
                 f"({dec['level0_mpix'] / dec['seconds']:.1f} MP/s level 0), "
                 f"{per_min(mm2, dec['seconds']):.1f} mm²/min of tissue")
    if dec["tiles"] != res["counts"].get("nuclei_tiles"):
        lines.append(f"  WARNING: the decode grid has {dec['tiles']} tiles, the run had "
                     f"{res['counts'].get('nuclei_tiles')} (run.nuclei_tiles called with another config?)")
    lines.append(f"peak RSS, process tree: {run['peak_rss_bytes'] / 1e9:.2f} GB (main process "
                 f"{run['peak_main_rss_bytes'] / 1e9:.2f} GB, up to {run['peak_processes']} processes, "
                 f"{run['rss_samples']} samples)")
    lines.append("")
    for t in res["targets"]:
        verdict = "PASS" if t["pass"] else "FAIL"
        lines.append(f"target {t['name']}: {t['value']:.2f} {t['op']} {t['limit']:g} -> {verdict}")
    if m["usable_cpus"] != 2 and m["device"] == "cpu":
        lines.append(f"  (the CPU targets are for 2 cores; this machine has {m['usable_cpus']})")
    return lines


def targets(device: str, mm2_per_min: float, peak_gb: float) -> list[dict]:
    if device.startswith("cuda"):
        return [{"name": "GPU tissue mm²/min", "value": mm2_per_min, "op": ">=",
                 "limit": TARGETS["gpu_mm2_per_min"], "pass": mm2_per_min >= TARGETS["gpu_mm2_per_min"]}]
    return [
        {"name": "CPU tissue mm²/min", "value": mm2_per_min, "op": ">=", "limit": TARGETS["cpu_mm2_per_min"],
         "pass": mm2_per_min >= TARGETS["cpu_mm2_per_min"]},
        {"name": "CPU peak RSS GB", "value": peak_gb, "op": "<=", "limit": TARGETS["cpu_peak_rss_gb"],
         "pass": peak_gb <= TARGETS["cpu_peak_rss_gb"]},
    ]


def write_json(path: Path, data: dict) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    os.replace(tmp, path)


def parse(argv=None) -> tuple[argparse.Namespace, list[str]]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                epilog="Unknown options are passed to `wsi-pipeline run`.")
    p.add_argument("--tissue-mm2", type=float, default=100.0, help="tissue area of the excision (default 100 = 1 cm²)")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic excision (default 0)")
    p.add_argument("--cache", default=os.environ.get("WSI_BENCH_CACHE", DEFAULT_CACHE),
                   help=f"folder of cached slides (default $WSI_BENCH_CACHE or {DEFAULT_CACHE})")
    p.add_argument("--config", default=None, help="run config (path, or default | cpu-fast | gpu; default: default)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda (default auto)")
    p.add_argument("--json", default=None, help="also write the numbers to this JSON file")
    p.add_argument("--out", default=None, help="keep the run's outputs in this folder (default: a temporary one)")
    p.add_argument("--timeout", type=float, default=None, help="give up on the run after this many seconds")
    args, extra = p.parse_known_args(argv)
    if not args.tissue_mm2 > 0:
        p.error(f"--tissue-mm2 must be positive, got {args.tissue_mm2}")
    return args, extra


def main(argv=None) -> int:
    args, extra = parse(argv)
    load_start = os.getloadavg()
    mach = machine(args.device)
    from tiling import open_slide
    from wsi_pipeline.synthetic.large import cached_excision

    cache = Path(args.cache).expanduser()
    if REPO in cache.resolve().parents or cache.resolve() == REPO:
        print(f"{cache}: the slide cache must be outside the repository", file=sys.stderr)
        return 2
    print(f"excision with >= {args.tissue_mm2:g} mm² of tissue: cache {cache}", flush=True)
    ex = cached_excision(cache, tissue_mm2=args.tissue_mm2, seed=args.seed)
    with open_slide(ex.path) as slide:
        levels, vendor = slide.level_count, slide.info.vendor
        if tuple(slide.dimensions) != (ex.width, ex.height) or abs(slide.mpp[0] - ex.mpp) > 1e-4:
            print(f"{ex.path}: reads as {slide.dimensions} at {slide.mpp} µm/px, expected "
                  f"{(ex.width, ex.height)} at {ex.mpp}; delete {ex.folder} to rebuild", file=sys.stderr)
            return 1
    print(f"slide {ex.path}: {'made in %.0f s' % ex.seconds if ex.created else 'cached'}, "
          f"{_size(ex.file_bytes)}, {levels} levels, vendor {vendor}", flush=True)

    with tempfile.TemporaryDirectory(prefix="bench-slide-") as tmp:
        out = Path(args.out) if args.out else Path(tmp) / "out"
        argv_run = run_args(ex.path, out, args, extra)
        cfg = run_config(argv_run)  # bad options fail here, before the long run
        print(f"running: wsi-pipeline run {' '.join(argv_run)}", flush=True)
        run = run_pipeline(argv_run, Path(tmp) / "run.log", args.timeout)
        if run["returncode"] != 0:
            tail = (Path(tmp) / "run.log").read_text(errors="replace")[-4000:]
            why = "timed out" if run["returncode"] is None else f"exit {run['returncode']}"
            print(f"{ex.path}: the run failed ({why}) after {run['wall_s']:.0f} s; its log ends:\n{tail}",
                  file=sys.stderr)
            return 1
        summary = read_summary(out)
        print(f"run done in {run['wall_s']:.0f} s; decoding the same tiles", flush=True)
        dec = decode_tiles(ex.path, cfg)
    load_end = os.getloadavg()

    timings = summary.get("timings_s") or summary.get("timings") or {}
    counts = summary.get("counts", {})
    mm2 = float(counts.get("tissue_mm2") or 0.0)
    rate = per_min(mm2, run["wall_s"]) or 0.0
    peak_gb = run["peak_rss_bytes"] / 1e9
    res = {
        "machine": mach, "load_start": list(load_start), "load_end": list(load_end),
        "slide": {"path": str(ex.path), "width": ex.width, "height": ex.height, "mpp": ex.mpp, "seed": ex.seed,
                  "tissue_mm2": ex.tissue_mm2, "seconds": ex.seconds, "file_bytes": ex.file_bytes,
                  "created": ex.created, "levels": levels, "vendor": vendor},
        "run": run, "timings": timings, "counts": counts, "notes": summary.get("notes", []),
        "tissue_mm2": mm2, "mm2_per_min": rate,
        "run_total_mm2_per_min": per_min(mm2, timings.get("total") or 0.0),
        "stages_mm2_per_min": {k: per_min(mm2, v) for k, v in timings.items() if k != "total"},
        "decode": {**dec, "mpix_per_s": dec["working_mpix"] / dec["seconds"],
                   "mm2_per_min": per_min(mm2, dec["seconds"])},
        "peak_rss_gb": peak_gb,
        "targets": targets(mach["device"], rate, peak_gb),
    }
    print()
    print("\n".join(report(res)))
    if args.json:
        write_json(Path(args.json), res)
        print(f"numbers in {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
