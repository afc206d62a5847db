"""Torch StarDist vs stardist-TF ``predict_instances_big`` on one large image, CPU, interleaved.

Same model folder (config.json, thresholds.json, weights_best.h5), same image, same
normalisation (1 / 99.8 percentiles of the whole image). The TF side runs in a second
interpreter that has tensorflow + tf-keras + stardist (``--tf-python``, default
``.tfenv/bin/python`` in the repository when present, or ``$STARDIST_TF_PYTHON``); it loads the model once and then waits. The two
sides then run *alternately* (torch, TF, torch, TF, ... ``--repeats`` times each) so both
see the same load on a shared machine. Prints, per side, the median wall seconds and CPU
seconds (process time, all threads), the torch split (network / NMS + labels), the ratios,
and the instance agreement (F1 at IoU 0.5 and 0.9 between the two label images,
stardist.matching).

    .venv/bin/python bench/bench_stardist.py --size 2048 --repeats 2 --prob-thresh 0.19
    .venv/bin/python bench/bench_stardist.py --size 4096 --model DIR

``--tf-serial-nms`` gives the TF side the NMS threading fix ours has (OMP_NUM_THREADS=1;
TensorFlow's own ops do not use OpenMP), to separate that fix from the network's speed.

Random-weight fixtures (the default model) need ``--prob-thresh`` well above their stored
threshold (which keeps 10 % of all grid cells), else both sides spend minutes in NMS on
hundreds of thousands of candidates that no trained model produces. The image is a mosaic of
the MoNuSeg dev tiles when ../shared/data is present, else synthetic nuclei.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = REPO / "tests" / "fixtures" / "stardist" / "versatile_he"
MONUSEG = REPO.parent / "shared" / "data" / "nuclei" / "monuseg-dev"


def _clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def _since(t: tuple[float, float]) -> tuple[float, float]:
    return time.perf_counter() - t[0], time.process_time() - t[1]


def _tf_server(model: Path, image_path: Path, pct_path: Path, out: Path, args) -> None:
    """Runs inside the TensorFlow interpreter: load once, then one timed
    ``predict_instances_big`` per ``go`` line on stdin; one JSON line per run on stdout."""
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from csbdeep.utils import normalize_mi_ma
    from stardist.models import StarDist2D

    img = np.load(image_path)
    lo, hi = np.load(pct_path)
    sd = StarDist2D(None, name=model.name, basedir=str(model.parent))
    x = normalize_mi_ma(img, lo, hi)
    sd.keras_model.predict(x[None, :256, :256], verbose=0)  # warm-up (graph building), not timed
    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip() != "go":
            break
        t = _clock()
        labels, details = sd.predict_instances_big(x, axes="YXC", block_size=args.block, min_overlap=args.overlap,
                                                   context=args.context, show_progress=False,
                                                   prob_thresh=args.prob_thresh)
        wall, cpu = _since(t)
        np.save(out, labels.astype(np.int32))
        print(json.dumps({"wall": wall, "cpu": cpu, "n": int(len(details["points"]))}), flush=True)


def make_image(size: int, seed: int = 0) -> tuple[np.ndarray, str]:
    """(size, size, 3) uint8: a mosaic of the MoNuSeg dev tiles, or synthetic nuclei."""
    tiles = sorted(MONUSEG.glob("*.tif")) if MONUSEG.is_dir() else []
    if tiles:
        import tifffile

        imgs = [tifffile.imread(p)[..., :3] for p in tiles]
        rng = np.random.default_rng(seed)
        th, tw = imgs[0].shape[:2]
        rows = []
        for _ in range(-(-size // th)):
            rows.append(np.concatenate([imgs[int(rng.integers(len(imgs)))][:th, :tw] for _ in range(-(-size // tw))], 1))
        return np.ascontiguousarray(np.concatenate(rows, 0)[:size, :size]), f"mosaic of {len(tiles)} MoNuSeg tiles"
    from wsi_pipeline.training.synthetic import synthetic_nuclei

    return synthetic_nuclei((size, size), seed=seed)[0], "synthetic nuclei"


class TorchSide:
    """The torch model, loaded and warmed up once; :meth:`run` times one whole-image prediction."""

    def __init__(self, model: Path, img: np.ndarray, lo: float, hi: float, *, tile: int, device: str,
                 prob_thresh: float | None) -> None:
        import torch

        from detectors.stardist import load_stardist_net
        from detectors.stardist.normalize import Percentiles, normalize_numpy

        self.net, self.thresholds, _ = load_stardist_net(model)
        if prob_thresh is not None:
            self.thresholds = type(self.thresholds)(prob_thresh, self.thresholds.nms)
        self.net = self.net.to(device)
        self.device, self.tile = device, tile
        self.x = normalize_numpy(img, Percentiles((lo,), (hi,)))
        with torch.inference_mode():
            self.net(torch.from_numpy(self.x[:256, :256].transpose(2, 0, 1).copy())[None].to(device))

    def run(self) -> tuple[np.ndarray, dict]:
        from detectors.stardist.predict import instances_from_prob_dist, predict_prob_dist_tiled

        t = _clock()
        prob, dist = predict_prob_dist_tiled(self.net, self.x, tile=self.tile, device=self.device)
        net_wall, net_cpu = _since(t)
        labels, details = instances_from_prob_dist(prob, dist, grid=self.net.config.grid, shape=self.x.shape[:2],
                                                   thresholds=self.thresholds)
        wall, cpu = _since(t)
        return labels, {"wall": wall, "cpu": cpu, "net_wall": net_wall, "net_cpu": net_cpu,
                        "n": len(details["points"]), "candidates": int((prob > self.thresholds.prob).sum())}


def _reply(server: subprocess.Popen) -> str:
    """Next protocol line from the TF server ("ready" or a JSON object), skipping library chatter."""
    for line in server.stdout:
        line = line.strip()
        if line == "ready" or line.startswith("{"):
            return line
    return ""


def agreement_f1(a: np.ndarray, b: np.ndarray, thresh: float) -> float:
    """F1 between two (H, W) label images at IoU >= ``thresh`` (>= 0.5, where matches are
    unique without an assignment). Sparse: stardist.matching's dense (n_a x n_b) table
    needs ~15 GB for two 4096 x 4096 images of 44k objects."""
    assert thresh >= 0.5
    both = (a > 0) & (b > 0)
    pairs, inter = np.unique(a[both].astype(np.int64) * (int(b.max()) + 1) + b[both], return_counts=True)
    ia, ib = np.divmod(pairs, int(b.max()) + 1)
    area_a, area_b = np.bincount(a.ravel()), np.bincount(b.ravel())
    iou = inter / (area_a[ia] + area_b[ib] - inter)
    n_a, n_b = int((area_a[1:] > 0).sum()), int((area_b[1:] > 0).sum())
    return 2 * int((iou >= thresh).sum()) / max(n_a + n_b, 1)


def _median(runs: list[dict], key: str) -> float:
    return float(np.median([r[key] for r in runs]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--repeats", type=int, default=2, help="timed runs per side, interleaved")
    ap.add_argument("--tile", type=int, default=2048, help="torch tile size (pixels)")
    ap.add_argument("--block", type=int, default=2048, help="stardist predict_instances_big block_size")
    ap.add_argument("--overlap", type=int, default=128, help="stardist min_overlap")
    ap.add_argument("--context", type=int, default=128, help="stardist context")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--prob-thresh", type=float, default=None,
                    help="override the model's prob threshold on both sides (random-weight fixtures need a high one)")
    ap.add_argument("--tf-serial-nms", action="store_true",
                    help="run the TF side with OMP_NUM_THREADS=1 (stardist's NMS single-threaded, as ours)")
    tfenv = Path(__file__).resolve().parents[1] / ".tfenv" / "bin" / "python"  # see scripts/make_stardist_fixtures.py
    default_tf = str(tfenv) if tfenv.exists() else ""
    ap.add_argument("--tf-python", default=os.environ.get("STARDIST_TF_PYTHON", default_tf))
    ap.add_argument("--tf-server", nargs=4, metavar=("MODEL", "IMAGE", "PCT", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.tf_server:
        _tf_server(*map(Path, args.tf_server), args)
        return 0

    img, what = make_image(args.size)
    lo, hi = (float(v) for v in np.percentile(img, (1, 99.8)))
    import torch

    print(f"image {img.shape[1]}x{img.shape[0]} ({what}); model {args.model}; cpu cores {os.cpu_count()}, "
          f"torch threads {torch.get_num_threads()}; load average {os.getloadavg()[0]:.1f}", flush=True)
    ours = TorchSide(args.model, img, lo, hi, tile=args.tile, device=args.device, prob_thresh=args.prob_thresh)
    print(f"thresholds prob {ours.thresholds.prob:.3f} nms {ours.thresholds.nms:.2f}", flush=True)
    torch_runs, tf_runs, labels_t, labels_tf = [], [], None, None
    with tempfile.TemporaryDirectory() as tmp:
        ip, pp, op = Path(tmp) / "img.npy", Path(tmp) / "pct.npy", Path(tmp) / "labels.npy"
        server = None
        if args.tf_python:
            np.save(ip, img)
            np.save(pp, np.array([lo, hi]))
            cmd = [args.tf_python, __file__, "--block", str(args.block), "--overlap", str(args.overlap),
                   "--context", str(args.context)] + (["--prob-thresh", str(args.prob_thresh)] if args.prob_thresh else []) + [
                   "--tf-server", str(args.model), str(ip), str(pp), str(op)]
            env = dict(os.environ, **({"OMP_NUM_THREADS": "1"} if args.tf_serial_nms else {}))
            server = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
            if _reply(server) != "ready":
                print("stardist-TF failed to start (see its stderr above)")
                return 1
        try:
            for r in range(args.repeats):
                labels_t, res = ours.run()
                torch_runs.append(res)
                print(f"  run {r + 1} torch: {res['wall']:.1f} s wall, {res['cpu']:.1f} s CPU "
                      f"(net {res['net_wall']:.1f} s), {res['n']} nuclei from {res['candidates']} candidates", flush=True)
                if server is None:
                    continue
                server.stdin.write("go\n")
                server.stdin.flush()
                line = _reply(server)
                if not line:
                    print("stardist-TF died")
                    return 1
                tf_runs.append(json.loads(line))
                print(f"  run {r + 1} TF:    {tf_runs[-1]['wall']:.1f} s wall, {tf_runs[-1]['cpu']:.1f} s CPU, "
                      f"{tf_runs[-1]['n']} nuclei", flush=True)
        finally:
            if server is not None:
                server.stdin.close()
                server.wait(timeout=60)
        if tf_runs:
            labels_tf = np.load(op)
    w_t, c_t = _median(torch_runs, "wall"), _median(torch_runs, "cpu")
    print(f"torch StarDist (tiles {args.tile}, one global NMS): median {w_t:.1f} s wall, {c_t:.1f} s CPU "
          f"(network {_median(torch_runs, 'net_wall'):.1f} s wall, {_median(torch_runs, 'net_cpu'):.1f} s CPU)")
    if not tf_runs:
        print("stardist-TF: skipped (no --tf-python interpreter with tensorflow)")
        return 0
    w_tf, c_tf = _median(tf_runs, "wall"), _median(tf_runs, "cpu")
    nms = ", NMS on 1 OpenMP thread" if args.tf_serial_nms else ""
    print(f"stardist-TF predict_instances_big (block {args.block}, overlap {args.overlap}, context {args.context}{nms}): "
          f"median {w_tf:.1f} s wall, {c_tf:.1f} s CPU")
    f1_5 = agreement_f1(labels_tf, labels_t, 0.5)
    f1_9 = agreement_f1(labels_tf, labels_t, 0.9)
    print(f"speed-up torch vs TF: {w_tf / w_t:.2f}x wall, {c_tf / c_t:.2f}x CPU; "
          f"instance agreement F1@0.5 {f1_5:.4f}, F1@0.9 {f1_9:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
