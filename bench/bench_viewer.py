"""Benchmark the review desk with a million nuclei (napari under Xvfb).

Measures, on a 40,000 x 25,000 px synthetic slide (0.25 µm/px) with N nuclei (16-vertex polygons):

* build: the in-memory nucleus store from arrays (what reading a results folder ends with);
* first render: seconds from "open" (slide pyramid, density map, all-nuclei raster,
  editor, mitoses) to the first frame drawn on the canvas (target < 5 s);
* editor reload: seconds to fill the editable Shapes layer with the nuclei around a
  full-resolution view (happens when a pan leaves the loaded region);
* pan frame time: median / p95 ms per frame while panning at full resolution with the
  editable layer active (one frame = move camera + event processing + synchronous repaint);
  under Xvfb, GL is software-rendered (Mesa llvmpipe), so this is an upper bound;
* peak memory (max RSS).

Run:  .venv/bin/python bench/bench_viewer.py [--nuclei 1000000]
(starts its own Xvfb when $DISPLAY is unset; or wrap in ``xvfb-run -a``).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tiling.slide import Slide  # noqa: E402

W, H, MPP = 40_000, 25_000, 0.25


class PinkSlide(Slide):
    """A cheap lazy slide: tissue pink with a little texture, 4 levels."""

    vendor = "bench"

    def __init__(self) -> None:
        super().__init__("bench.svs", mpp=MPP)

    @property
    def level_dimensions(self):
        return tuple((W // 4**i, H // 4**i) for i in range(4))

    @property
    def level_downsamples(self):
        return tuple(float(4**i) for i in range(4))

    def _read_level(self, level, x, y, width, height):
        yy, xx = np.mgrid[y : y + height, x : x + width]
        tex = ((xx // 7 + yy // 5) % 9).astype(np.uint8) * 3
        out = np.empty((height, width, 3), np.uint8)
        out[..., 0], out[..., 1], out[..., 2] = 225 - tex, 160 - tex, 195 - tex
        return out


def make_nuclei(n: int, *, seed: int = 0, n_vertices: int = 16):
    """``n`` star-convex nuclei (radius ~6 µm) placed uniformly over the slide."""
    from viewers.store import FeatureStore

    rng = np.random.default_rng(seed)
    cx = rng.uniform(0, W, n)
    cy = rng.uniform(0, H, n)
    ang = np.linspace(0, 2 * np.pi, n_vertices, endpoint=False)
    r = (12 + rng.uniform(-3, 3, (n, 1))) * (1 + 0.1 * rng.standard_normal((n, n_vertices)))
    coords = np.empty((n * n_vertices, 2))
    coords[:, 0] = (cx[:, None] + r * np.cos(ang)).ravel()
    coords[:, 1] = (cy[:, None] + r * np.sin(ang)).ravel()
    offsets = np.arange(n + 1) * n_vertices
    return FeatureStore.from_polygons(coords, offsets, measurements={"Detection probability": rng.uniform(0.5, 1, n)})


def ensure_display() -> subprocess.Popen | None:
    if os.environ.get("DISPLAY"):
        return None
    xvfb = shutil.which("Xvfb")
    if xvfb is None:
        sys.exit("no $DISPLAY and no Xvfb: apt-get install xvfb, or run under xvfb-run")
    disp = f":{90 + os.getpid() % 100}"
    proc = subprocess.Popen([xvfb, disp, "-screen", "0", "1920x1200x24", "-nolisten", "tcp"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)
    os.environ["DISPLAY"] = disp
    return proc


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nuclei", type=int, default=1_000_000)
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--cap", type=int, default=3000)
    args = ap.parse_args(argv)
    xvfb = ensure_display()
    try:
        return run(args)
    finally:
        if xvfb is not None:
            xvfb.terminate()


def run(args) -> int:
    import napari
    from qtpy.QtWidgets import QApplication

    from viewers import layers as L
    from viewers.editor import camera
    from viewers.session import Desk

    t = time.perf_counter()
    store = make_nuclei(args.nuclei)
    t_build = time.perf_counter() - t
    slide = PinkSlide()

    viewer = napari.Viewer(show=True)
    viewer.window.resize(1600, 1000)
    QApplication.processEvents()
    canvas = viewer.window._qt_viewer.canvas

    # napari imports layer/visual modules lazily on first use (several seconds): warm up
    # with tiny layers so "first render" measures our work, not Python imports
    t = time.perf_counter()
    warm = [viewer.add_image(np.zeros((64, 64, 4), np.uint8), rgb=True),
            viewer.add_shapes([np.array([[0, 0], [0, 9], [9, 9]])], shape_type="polygon")]
    QApplication.processEvents()
    canvas._scene_canvas.render()
    for layer in warm:
        viewer.layers.remove(layer)
    t_warm = time.perf_counter() - t

    t0 = time.perf_counter()
    data, kw, _ = L.slide_layer(slide)
    viewer.add_image(data, **kw)
    grid, kw, _ = L.density_layer(store, shape_xy=(W, H), bin_px=400, mpp=MPP, name="Nuclei density")
    viewer.add_image(grid, **kw)
    desk = Desk(viewer, reviewer="bench")
    src = desk.add_nuclei(store, path=None, shape_xy=(W, H), bin_px=2 / MPP, cap=args.cap)
    viewer.reset_view()
    desk.update_view()
    QApplication.processEvents()
    canvas._scene_canvas.render()  # forces a full draw of every visible layer
    t_first = time.perf_counter() - t0
    shot = viewer.screenshot(canvas_only=True, flash=False)

    # zoom to full resolution (1 screen px = 1 level-0 px) in the middle; the editor fills
    cam = camera(viewer)
    cam.center = (H / 2, W / 2)
    cam.zoom = 1.0
    t = time.perf_counter()
    desk.update_view()
    t_reload = time.perf_counter() - t
    n_edit = len(src.editor.shapes.data)
    QApplication.processEvents()
    frames = []
    for i in range(args.frames):
        cam.center = (H / 2 + 3 * i, W / 2 + 8 * i)  # ~8 px per frame, within the loaded margin
        t = time.perf_counter()
        QApplication.processEvents()  # napari reacts to the camera (slicing, editor check)
        canvas._scene_canvas.native.repaint()  # synchronous paint of the canvas
        frames.append(time.perf_counter() - t)
    # a pan far enough to reload the editor (what happens after the 120 ms debounce)
    cam.center = (H / 2 + 2000, W / 2 + 3000)
    t = time.perf_counter()
    desk.update_view()
    t_reload2 = time.perf_counter() - t
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    fr = np.array(frames[2:]) * 1000
    print(f"nuclei: {args.nuclei:,}  slide {W}x{H} px  cap {args.cap}")
    print(f"store build from arrays: {t_build:.2f} s; napari warm-up (lazy imports): {t_warm:.2f} s")
    print(f"first full render (slide + density + all-nuclei raster + editor): {t_first:.2f} s "
          f"(screenshot mean {shot[..., :3].mean():.0f})")
    print(f"editor fill at full resolution: {t_reload:.2f} s for {n_edit} shapes; reload after a long pan: {t_reload2:.2f} s")
    print(f"pan frame time at full resolution (editor active): median {np.median(fr):.1f} ms, p95 {np.percentile(fr, 95):.1f} ms")
    print(f"peak memory (max RSS): {peak_mb:.0f} MB")
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
