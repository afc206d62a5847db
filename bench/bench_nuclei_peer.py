"""Our default nuclei detector vs HistomicsTK's NucleiDetection with its defaults, one thread each.

On the MoNuSeg-2018 dev tiles (1000 x 1000 H&E at ~0.25 µm/px, XML polygons) it runs, in one
process pinned to one thread (OMP/MKL/OPENBLAS_NUM_THREADS=1 before any import,
``torch.set_num_threads(1)``):

* ``htk`` -- HistomicsTK's NucleiDetection CLI defaults, read from the installed package's
  ``histomicstk/cli/NucleiDetection/NucleiDetection.xml`` and applied as the CLI does per tile
  (``histomicstk.segmentation.nuclear.detect_tile_nuclei``), by calling the library functions on
  the array (no slicer CLI, girder or large_image I/O): Reinhard normalisation to the default
  reference LAB statistics (source statistics of the whole image, as the CLI computes them for an
  image without magnification), colour deconvolution with the default stain matrix
  (hematoxylin, eosin, null), foreground = hematoxylin intensity < 60, then
  ``detect_nuclei_kofahi`` (min radius 6, max radius 20, min area 80, local max search radius 10).
  The CLI reads these tiles at native resolution: they carry a 72 dpi tag and no magnification,
  and large_image then uses the full-resolution level whatever ``analysis_mag`` (20) asks; a
  1000 x 1000 image is one analysis tile (1024), so the tile-overlap and overlapping-nuclei
  steps do nothing and are left out.
* ``htk@0.5`` -- the same at 0.5 µm/px (tile reduced 2 x 2 by averaging; labels enlarged back):
  what the CLI's ``analysis_mag`` 20 does on a 40x whole slide that reports its magnification.
  Its parameters stay in pixels, so min area 80 px (20 µm²) and the disk-3 opening drop most
  of the small nuclei of these tiles.
* ``ours@0.25`` / ``ours@0.5`` -- ``WeightFreeNucleiDetector(device="cpu", mpp=M)``, calibrated on
  the tile, then ``predict``. At 0.5 the tile is reduced 2 x 2 by averaging (uint8, rounded) and
  the polygons are scaled x2 about (0, 0): with the pixel-edge convention of
  :mod:`detectors.nuclei.polygons` (pixel (r, c) covers [c, c+1] x [r, r+1]) small pixel (r, c)
  covers full pixels 2r..2r+1, 2c..2c+1, so no half-pixel shift is needed. ``--shift-check``
  scores ours with the (scaled) polygons shifted by s px in x and y. Measured once: on
  monuseg-dev 0.25 and 0.5 gain about equally from s = +0.5..+0.75 (pooled AJI +0.015, and
  HistomicsTK's labels rolled by 1 px gain +0.004), on monuseg-train both only +0.002 at
  s = +0.5: an offset of the truth of the dev set (as ``load_labels`` rasterises its XML), the
  same for every method, not of the 0.5 -> 0.25 mapping; so no shift is applied here.
* ``fast@0.5`` -- the single-level detector (``WeightFreeParams(**SINGLE_LEVEL)``,
  ``weightfree-fast``) at 0.5 µm/px, for reference.

Times are CPU seconds (``time.process_time``, robust to other jobs on a shared core; wall
seconds are printed too) of segmentation per 1000 x 1000 source tile (no file I/O, no scoring;
the 2 x 2 reduction is included for the 0.5 rows); methods alternate tile by tile. For
HistomicsTK, "seg" is normalisation + deconvolution + ``detect_nuclei_kofahi`` and "tile fn"
is the library's whole per-tile function ``detect_tile_nuclei`` (also tracing the boundary
annotations); "stats" is its per-image Reinhard source statistics. For ours, "seg" is
``predict`` (polygons, confidence and measurements included) and "stats" is ``calibrate``.
Scores: AJI and F1 at IoU 0.5, per tile and pooled (sums of
:class:`wsi_pipeline.evaluation.ImageScores`, so AJI = summed intersections / unions);
HistomicsTK's label image is scored directly, ours via
:func:`detectors.nuclei.polygons.rasterise` at the full tile shape. The speed ratio is
HistomicsTK seconds / ours seconds (> 1: ours is faster per thread).

Install HistomicsTK into the project's virtual environment without its GDAL / large_image
source extras (histomicstk imports large_image, ctk_cli and slicer_cli_web at import time;
the rest it needs -- numpy, scipy, scikit-image, pandas, Pillow, shapely, dask, imageio,
jinja2, jsonschema, pyyaml, cachetools, typing-extensions -- is already in the environment)::

    .venv/bin/pip install --no-deps histomicstk==1.4.0 large-image==1.35.6 palettable \
        ctk-cli girder-slicer-cli-web

Without histomicstk the script prints one line and exits 0. Run on one core::

    taskset -c 0 .venv/bin/python bench/bench_nuclei_peer.py
    taskset -c 0 .venv/bin/python bench/bench_nuclei_peer.py --data ../shared/data/nuclei/monuseg-train --json t.json
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_v] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
import xml.etree.ElementTree as ET  # noqa: E402
from pathlib import Path  # noqa: E402
from types import SimpleNamespace  # noqa: E402

import numpy as np  # noqa: E402
import shapely  # noqa: E402
import tifffile  # noqa: E402
import torch  # noqa: E402

from detectors.nuclei.polygons import rasterise  # noqa: E402
from detectors.nuclei.weightfree import SINGLE_LEVEL, WeightFreeNucleiDetector, WeightFreeParams  # noqa: E402
from wsi_pipeline.evaluation import ImageScores, load_labels, score_labels  # noqa: E402

torch.set_num_threads(1)
# histomicstk 1.4.0 uses RegionProperties.weighted_centroid (deprecated in scikit-image 0.26)
warnings.filterwarnings("ignore", message=".*weighted_centroid.*", category=FutureWarning)

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "nuclei" / "monuseg-dev"
METHODS = ("htk", "htk@0.5", "ours@0.25", "ours@0.5", "fast@0.5")
SHIFTS = (-0.5, 0.0, 0.25, 0.5, 0.75, 1.0)


# -- data ----------------------------------------------------------------------------------
def load(data: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    out = {}
    for xml in sorted(data.glob("*.xml")):
        tif = xml.with_suffix(".tif")
        if not tif.is_file():
            raise SystemExit(f"{xml}: no matching {tif.name}")
        rgb = np.ascontiguousarray(tifffile.imread(tif)[..., :3])
        if rgb.dtype != np.uint8 or rgb.ndim != 3:
            raise SystemExit(f"{tif}: expected an 8-bit RGB image, got {rgb.dtype} {rgb.shape}")
        out[xml.stem] = (rgb, load_labels(xml, shape=rgb.shape[:2]))
    if not out:
        raise SystemExit(f"{data}: no *.xml + *.tif pairs")
    return out


def reduce2(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 -> (H//2, W//2, 3) uint8, the mean of each 2 x 2 block (area averaging)."""
    h, w = rgb.shape[0] // 2 * 2, rgb.shape[1] // 2 * 2
    blocks = rgb[:h, :w].reshape(h // 2, 2, w // 2, 2, 3).astype(np.uint16)
    return ((blocks.sum(axis=(1, 3)) + 2) // 4).astype(np.uint8)


def enlarge2(labels: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A label image at half resolution back to ``shape`` (each pixel becomes its 2 x 2 block)."""
    big = np.repeat(np.repeat(labels, 2, axis=0), 2, axis=1)
    out = np.zeros(shape, big.dtype)
    out[:big.shape[0], :big.shape[1]] = big[:shape[0], :shape[1]]
    return out


# -- HistomicsTK ---------------------------------------------------------------------------
def _xml_value(tag: str, text: str):
    text = (text or "").strip()
    if tag.endswith("-vector"):
        conv = int if tag.startswith("integer") else float
        return [conv(x) for x in text.split(",")] if text else []
    if tag == "integer":
        return int(text)
    if tag in ("float", "double"):
        return float(text)
    if tag == "boolean":
        return text.lower() == "true"
    return text


def htk_defaults() -> SimpleNamespace:
    """The NucleiDetection CLI's parameters at their defaults, read from the installed XML."""
    import histomicstk

    xml = Path(histomicstk.__file__).parent / "cli" / "NucleiDetection" / "NucleiDetection.xml"
    args = {}
    for el in ET.parse(xml).getroot().iter():
        name, default = el.find("name"), el.find("default")
        if name is not None and default is not None and el.tag != "parameters":
            args[name.text.strip()] = _xml_value(el.tag, default.text)
    return SimpleNamespace(**args)


class HTK:
    """HistomicsTK's per-tile nuclei detection (``detect_tile_nuclei``) with the CLI defaults."""

    def __init__(self) -> None:
        import histomicstk.preprocessing.color_deconvolution as cdeconv
        import histomicstk.preprocessing.color_normalization as cnorm
        import histomicstk.segmentation.nuclear as nuclear
        from histomicstk.cli import utils as cli_utils

        self.args = htk_defaults()
        self.cdeconv, self.cnorm, self.nuclear = cdeconv, cnorm, nuclear
        self.stains = cli_utils.get_stain_matrix(self.args)  # columns: hematoxylin, eosin, null

    def stats(self, rgb: np.ndarray):
        """Reinhard source statistics of the image (the CLI's ``reinhard_stats_rgb`` on it)."""
        return self.cnorm.reinhard_stats_rgb(rgb)

    def segment(self, rgb: np.ndarray, stats) -> np.ndarray:
        """(H, W) int label image, the steps of ``detect_tile_nuclei`` before its annotations."""
        a = self.args
        nmzd = self.cnorm.reinhard(rgb, a.reference_mu_lab, a.reference_std_lab, src_mu=stats.Mu,
                                   src_sigma=stats.Sigma)
        h = self.cdeconv.color_deconvolution(nmzd, self.stains).Stains[:, :, 0].astype(float)
        return self.nuclear.detect_nuclei_kofahi(h, h < a.foreground_threshold, a.min_radius, a.max_radius,
                                                 a.min_nucleus_area, a.local_max_search_radius)

    def cli_tile(self, rgb: np.ndarray, stats) -> list:
        """The library's whole per-tile function (segmentation + boundary annotations)."""
        h, w = rgb.shape[:2]
        info = {"tile": rgb, "gx": 0, "gy": 0, "width": w, "height": h, "gwidth": w, "gheight": h,
                "tile_overlap": {"x": 0, "y": 0, "left": 0, "top": 0, "right": 0, "bottom": 0}}
        return self.nuclear.detect_tile_nuclei(info, self.args, stats.Mu, stats.Sigma)


# -- runs ------------------------------------------------------------------------------------
class Clock:
    """Wall and CPU seconds (``time.process_time``: all threads of this process) of timed calls."""

    def __init__(self) -> None:
        self.wall = self.cpu = 0.0

    def __call__(self, fn, *a):
        w, c = time.perf_counter(), time.process_time()
        out = fn(*a)
        self.wall += time.perf_counter() - w
        self.cpu += time.process_time() - c
        return out


def run_htk(htk: HTK, rgb: np.ndarray, gt: np.ndarray, half: bool) -> dict:
    seg, cli, st = Clock(), Clock(), Clock()
    img = rgb
    if half:
        img = seg(reduce2, rgb)
        cli.wall, cli.cpu = seg.wall, seg.cpu
    stats = st(htk.stats, img)
    lab = seg(htk.segment, img, stats)
    annots = cli(htk.cli_tile, img, stats)
    n = len(np.unique(lab)) - 1 if lab.any() else 0
    if half:
        lab = enlarge2(lab, gt.shape)
    return {"scores": score_labels(gt, lab.astype(np.int32)), "seg": seg.cpu, "wall": seg.wall, "cli": cli.cpu,
            "stats": st.cpu, "n": n, "n_annotations": len(annots)}


def run_ours(rgb: np.ndarray, gt: np.ndarray, mpp: float, params: WeightFreeParams | None,
             shifts: tuple[float, ...] = ()) -> dict:
    seg, cal = Clock(), Clock()
    img = seg(reduce2, rgb) if mpp == 0.5 else rgb
    det = WeightFreeNucleiDetector(device="cpu", mpp=mpp, params=params)
    cal(det.calibrate, img)
    res = seg(det.predict, img)
    geoms = np.asarray(res.geometry, dtype=object)
    if mpp == 0.5:  # pixel-edge coordinates: small pixel (r, c) is full pixels 2r..2r+1, 2c..2c+1
        geoms = shapely.transform(geoms, lambda xy: xy * 2.0)
    return {"seg": seg.cpu, "wall": seg.wall, "stats": cal.cpu, "n": len(geoms),
            "scores": score_labels(gt, rasterise(geoms, gt.shape)),
            "shift": {s: score_labels(gt, rasterise(shapely.transform(geoms, lambda xy, s=s: xy + s), gt.shape))
                      for s in shifts}}


def warm_up(tiles, methods, htk: HTK | None) -> None:
    """One untimed run of each method on a 256 x 256 crop (imports, caches, torch kernels)."""
    rgb = next(iter(tiles.values()))[0][:256, :256]
    if htk is not None:
        htk.segment(rgb, htk.stats(rgb))
    for m in methods:
        if not m.startswith("htk"):
            mpp = float(m.split("@")[1])
            params = WeightFreeParams(**SINGLE_LEVEL) if m.startswith("fast") else None
            img = reduce2(rgb) if mpp == 0.5 else rgb
            WeightFreeNucleiDetector(device="cpu", mpp=mpp, params=params).calibrate(img).predict(img)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder of MoNuSeg *.tif + *.xml")
    ap.add_argument("--json", type=Path, default=None, help="write all numbers here")
    ap.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated subset of {','.join(METHODS)}")
    ap.add_argument("--shift-check", action="store_true",
                    help="also score ours@0.5 with its scaled polygons shifted by -1, -0.5, 0, +0.5 px")
    args = ap.parse_args()
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    bad = [m for m in methods if m not in METHODS]
    if bad:
        raise SystemExit(f"--methods: unknown {', '.join(bad)} (choose from {', '.join(METHODS)})")
    if not args.data.is_dir():
        raise SystemExit(f"{args.data}: no such folder")

    htk = None
    if any(m.startswith("htk") for m in methods):
        try:
            import histomicstk
        except ImportError as e:
            print(f"skipped: histomicstk is not importable ({e}); see this script's docstring to install it")
            return
        htk = HTK()
        htk_version = histomicstk.__version__

    tiles = load(args.data)
    warm_up(tiles, methods, htk)
    shifts = SHIFTS if args.shift_check else ()
    res: dict[str, dict[str, dict]] = {m: {} for m in methods}
    for stem, (rgb, gt) in tiles.items():
        for m in methods:
            if m.startswith("htk"):
                res[m][stem] = run_htk(htk, rgb, gt, half=m.endswith("@0.5"))
            else:
                mpp = float(m.split("@")[1])
                params = WeightFreeParams(**SINGLE_LEVEL) if m.startswith("fast") else None
                res[m][stem] = run_ours(rgb, gt, mpp, params, shifts if m.startswith("ours") else ())
        print(f"  {stem}: " + "  ".join(f"{m} {res[m][stem]['seg']:.2f}s" for m in methods), file=sys.stderr)

    n_tiles = len(tiles)
    mp = float(np.mean([rgb.shape[0] * rgb.shape[1] for rgb, _ in tiles.values()])) / 1e6
    print(f"data: {args.data.name} ({n_tiles} tiles, {mp:.2f} MP each); threads: torch {torch.get_num_threads()}, "
          f"OMP {os.environ['OMP_NUM_THREADS']}" + (f"; histomicstk {htk_version}" if htk else ""))
    head = f"{'tile':<26}" + "".join(f" {m + ' AJI':>13} {'F1':>5}" for m in methods)
    print(head)
    for stem in tiles:
        row = f"{stem:<26}"
        for m in methods:
            s = res[m][stem]["scores"]
            row += f" {s.aji:13.3f} {s.at(0.5)['f1']:5.3f}"
        print(row)
    pooled = {m: sum((r["scores"] for r in res[m].values()), ImageScores()) for m in methods}
    print(f"{'POOLED (sum of counts)':<26}" + "".join(f" {pooled[m].aji:13.3f} {pooled[m].at(0.5)['f1']:5.3f}"
                                                     for m in methods))
    print()
    print(f"{'CPU s per source tile':<26}" + "".join(f" {m:>19}" for m in methods))
    for stem in tiles:
        print(f"{stem:<26}" + "".join(f" {res[m][stem]['seg']:19.3f}" for m in methods))
    sec = {m: float(np.mean([r["seg"] for r in res[m].values()])) for m in methods}
    stats = {m: float(np.mean([r["stats"] for r in res[m].values()])) for m in methods}
    wall = {m: float(np.mean([r["wall"] for r in res[m].values()])) for m in methods}
    print(f"{'MEAN seg, CPU s':<26}" + "".join(f" {sec[m]:19.3f}" for m in methods))
    print(f"{'MEAN seg, wall s':<26}" + "".join(f" {wall[m]:19.3f}" for m in methods))
    print(f"{'MEAN stats/calibrate CPU':<26}" + "".join(f" {stats[m]:19.3f}" for m in methods))
    cli = {m: float(np.mean([r["cli"] for r in res[m].values()])) for m in methods if m.startswith("htk")}
    if cli:
        print(f"{'MEAN htk tile fn, CPU s':<26}" + "".join(f" {cli[m]:19.3f}" if m in cli else f" {'':>19}"
                                                         for m in methods))
    print(f"{'MP/s (source) per thread':<26}" + "".join(f" {mp / sec[m]:19.2f}" for m in methods))
    print(f"{'nuclei found (all tiles)':<26}" + "".join(f" {sum(r['n'] for r in res[m].values()):19d}"
                                                       for m in methods) + f"   (truth {pooled[methods[0]].n_gt})")
    ratios, wall_ratios = {}, {}
    if "htk" in sec:
        for m in methods:
            if not m.startswith("htk"):
                ratios[m], wall_ratios[m] = sec["htk"] / sec[m], wall["htk"] / wall[m]
        print("speed per thread vs htk defaults (htk s / ours s; > 1 = ours faster), CPU time: "
              + ", ".join(f"{m} {r:.2f}x" for m, r in ratios.items())
              + "; wall: " + ", ".join(f"{m} {r:.2f}x" for m, r in wall_ratios.items()))
    for m in methods:
        if shifts and m.startswith("ours"):
            by = {s: sum((r["shift"][s] for r in res[m].values()), ImageScores()) for s in shifts}
            print(f"{m} polygons (x2 at 0.5) shifted by (s, s) px, pooled AJI / F1: "
                  + ", ".join(f"{s:+.2f}: {v.aji:.4f} / {v.at(0.5)['f1']:.4f}" for s, v in by.items()))
    if args.json:
        doc = {
            "data": str(args.data.name), "tiles": list(tiles), "megapixels_per_tile": mp,
            "per_tile": {m: {k: {"scores": r["scores"].to_dict(), "cpu_seconds": r["seg"], "wall_seconds": r["wall"],
                                 "stats_cpu_seconds": r["stats"], "n": r["n"],
                                 **({"tile_fn_cpu_seconds": r["cli"], "n_annotations": r["n_annotations"]}
                                    if "cli" in r else {})}
                             for k, r in res[m].items()} for m in methods},
            "pooled": {m: pooled[m].to_dict() for m in methods},
            "cpu_seconds_per_tile": sec, "wall_seconds_per_tile": wall, "stats_cpu_seconds_per_tile": stats,
            "htk_tile_fn_cpu_seconds": cli, "speed_ratio_vs_htk": {"cpu": ratios, "wall": wall_ratios},
            "htk_params": vars(htk.args) if htk else None,
        }
        tmp = args.json.with_name(args.json.name + ".tmp")
        tmp.write_text(json.dumps(doc, indent=1, default=str))
        tmp.replace(args.json)


if __name__ == "__main__":
    main()
