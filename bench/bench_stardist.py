"""Torch StarDist vs stardist-TF ``predict_instances_big`` on one 4096 x 4096 image, CPU.

Same model folder (config.json, thresholds.json, weights_best.h5), same image, same
normalisation (1 / 99.8 percentiles of the whole image); prints seconds for each, the
ratio, and how well the two instance sets agree (F1 at IoU 0.5 and 0.9, stardist.matching).

    .venv/bin/python bench/bench_stardist.py [--model DIR] [--size 4096] [--tf-python /work/tfenv/bin/python]

The TF side runs in a separate interpreter that has tensorflow + tf-keras + stardist
(``--tf-python``, default /work/tfenv/bin/python when present); without one only the torch
side is timed. The image is a mosaic of the MoNuSeg dev tiles when ../shared/data is present,
else synthetic nuclei.
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


def _tf_side(model: Path, image_path: Path, pct_path: Path, out: Path, block: int, overlap: int, context: int,
             prob_thresh: float | None) -> None:
    """Runs inside the TensorFlow interpreter: predict_instances_big, timed."""
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from csbdeep.utils import normalize_mi_ma
    from stardist.models import StarDist2D

    img = np.load(image_path)
    lo, hi = np.load(pct_path)
    sd = StarDist2D(None, name=model.name, basedir=str(model.parent))
    x = normalize_mi_ma(img, lo, hi)
    sd.keras_model.predict(x[None, :256, :256], verbose=0)  # warm-up (graph building), not timed
    t0 = time.perf_counter()
    labels, details = sd.predict_instances_big(x, axes="YXC", block_size=block, min_overlap=overlap,
                                               context=context, show_progress=False, prob_thresh=prob_thresh)
    seconds = time.perf_counter() - t0
    np.save(out, labels.astype(np.int32))
    print(json.dumps({"seconds": seconds, "n": int(len(details["points"]))}))


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


def torch_side(model: Path, img: np.ndarray, lo: float, hi: float, *, tile: int, device: str,
               prob_thresh: float | None) -> tuple[np.ndarray, float, int]:
    import torch

    from detectors.stardist import load_stardist_net
    from detectors.stardist.normalize import Percentiles, normalize_numpy
    from detectors.stardist.predict import predict_instances

    net, thresholds, _ = load_stardist_net(model)
    if prob_thresh is not None:
        thresholds = type(thresholds)(prob_thresh, thresholds.nms)
    net = net.to(device)
    x = normalize_numpy(img, Percentiles((lo,), (hi,)))
    with torch.inference_mode():
        net(torch.from_numpy(x[:256, :256].transpose(2, 0, 1).copy())[None].to(device))  # warm-up
    t0 = time.perf_counter()
    labels, details = predict_instances(net, x, thresholds=thresholds, device=device, tile=tile)
    return labels, time.perf_counter() - t0, len(details["points"])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--tile", type=int, default=1024, help="torch tile size (pixels)")
    ap.add_argument("--block", type=int, default=2048, help="stardist predict_instances_big block_size")
    ap.add_argument("--overlap", type=int, default=128, help="stardist min_overlap")
    ap.add_argument("--context", type=int, default=128, help="stardist context")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--prob-thresh", type=float, default=None,
                    help="override the model's prob threshold on both sides (random-weight fixtures need a high one)")
    default_tf = "/work/tfenv/bin/python" if Path("/work/tfenv/bin/python").exists() else ""
    ap.add_argument("--tf-python", default=os.environ.get("STARDIST_TF_PYTHON", default_tf))
    ap.add_argument("--tf-side", nargs=4, metavar=("MODEL", "IMAGE", "PCT", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.tf_side:
        m, i, p, o = map(Path, args.tf_side)
        _tf_side(m, i, p, o, args.block, args.overlap, args.context, args.prob_thresh)
        return 0

    img, what = make_image(args.size)
    lo, hi = (float(v) for v in np.percentile(img, (1, 99.8)))
    print(f"image {img.shape[1]}x{img.shape[0]} ({what}); model {args.model}; cpu threads {os.cpu_count()}")
    labels_t, sec_t, n_t = torch_side(args.model, img, lo, hi, tile=args.tile, device=args.device,
                                         prob_thresh=args.prob_thresh)
    print(f"torch StarDist (tiles {args.tile}, one global NMS): {sec_t:.1f} s, {n_t} nuclei")
    if not args.tf_python:
        print("stardist-TF: skipped (no --tf-python interpreter with tensorflow)")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        ip, pp, op = Path(tmp) / "img.npy", Path(tmp) / "pct.npy", Path(tmp) / "labels.npy"
        np.save(ip, img)
        np.save(pp, np.array([lo, hi]))
        cmd = [args.tf_python, __file__, "--block", str(args.block), "--overlap", str(args.overlap),
               "--context", str(args.context)] + (["--prob-thresh", str(args.prob_thresh)] if args.prob_thresh else []) + [
               "--tf-side", str(args.model), str(ip), str(pp), str(op)]
        run = subprocess.run(cmd, capture_output=True, text=True)
        if run.returncode:
            print(f"stardist-TF failed:\n{run.stderr[-2000:]}")
            return 1
        res = json.loads(run.stdout.strip().splitlines()[-1])
        labels_tf = np.load(op)
    from stardist.matching import matching

    print(f"stardist-TF predict_instances_big (block {args.block}, overlap {args.overlap}, context {args.context}): "
          f"{res['seconds']:.1f} s, {res['n']} nuclei")
    f1_5 = matching(labels_tf, labels_t, thresh=0.5).f1
    f1_9 = matching(labels_tf, labels_t, thresh=0.9).f1
    print(f"speed-up torch vs TF: {res['seconds'] / sec_t:.2f}x; instance agreement F1@0.5 {f1_5:.4f}, F1@0.9 {f1_9:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
