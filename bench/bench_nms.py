"""StarDist NMS: torch (detectors/stardist/nms.py) against stardist's own C code, on real tiles.

For each MoNuSeg dev tile the model's network runs once; its prob/dist maps then go through
both NMS paths with the model's thresholds. Prints, per tile and pooled, the candidates, the
instances each path keeps, how many of stardist's instances the torch path reproduces at
IoU >= 0.9 (and the reverse), and the seconds of each path (``--device cuda`` puts the torch
path on the GPU: candidates and NMS on the device, as the detector does there).

    .venv/bin/python bench/bench_nms.py --model models/stardist-monuseg
    .venv/bin/python bench/bench_nms.py --model models/stardist-monuseg --device cuda
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
MONUSEG = REPO.parent / "shared" / "data" / "nuclei" / "monuseg-dev"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", type=Path, default=REPO / "models" / "stardist-monuseg")
    ap.add_argument("--data", type=Path, default=MONUSEG)
    ap.add_argument("--data-mpp", type=float, default=0.25)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    if not args.data.is_dir():
        print(f"no data at {args.data}: nothing to measure")
        return 0
    import torch
    from stardist.matching import matching

    from detectors.device import select_device
    from detectors.stardist import load_stardist_model
    from detectors.stardist.normalize import compute_percentiles, normalize_numpy
    from detectors.stardist.predict import candidates, instances_from_prob_dist, instances_on_device, predict_prob_dist
    from wsi_pipeline.training.nuclei import load_pairs
    from wsi_pipeline.training.nuclei_data import resample_pair

    device = select_device(args.device)
    det = load_stardist_model(args.model, device=device)
    cfg, thr = det.config, det.thresholds
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    print(f"model {args.model.name} ({det.spec.mpp} µm/px), thresholds prob {thr.prob:.3f} nms {thr.nms:.2f}, "
          f"torch path on {device}")
    print(f"{'tile':<26}{'cand':>7}{'stardist':>9}{'torch':>7}{'sd->t':>8}{'t->sd':>8}{'sd s':>7}{'torch s':>8}")
    tot = np.zeros(6)
    for s in sorted(load_pairs(args.data, polygons=args.data), key=lambda s: s.name):
        img, _ = resample_pair(s.image, np.zeros(s.image.shape[:2], np.int32), args.data_mpp / det.spec.mpp)
        x = normalize_numpy(img, compute_percentiles(img))
        prob, dist = predict_prob_dist(det.net, x, device=device)
        shape = img.shape[:2]
        n_cand = len(candidates(prob, dist, grid=cfg.grid, shape=shape, prob_thresh=thr.prob)[0])
        t0 = time.perf_counter()
        ref, _ = instances_from_prob_dist(prob, dist, grid=cfg.grid, shape=shape, thresholds=thr)
        t_sd = time.perf_counter() - t0
        p_t = torch.from_numpy(prob).to(device)
        d_t = torch.from_numpy(np.ascontiguousarray(dist.transpose(2, 0, 1))).to(device)
        instances_on_device(p_t, d_t, grid=cfg.grid, shape=shape, thresholds=thr, return_labels=False)  # warm-up
        sync()
        t0 = time.perf_counter()
        got, _ = instances_on_device(p_t, d_t, grid=cfg.grid, shape=shape, thresholds=thr)
        sync()
        t_torch = time.perf_counter() - t0
        fwd, back = matching(ref, got, thresh=0.9), matching(got, ref, thresh=0.9)
        row = np.array([n_cand, ref.max(), got.max(), fwd.tp, back.tp, 0])
        tot += row
        print(f"{s.name[:25]:<26}{n_cand:>7}{ref.max():>9}{got.max():>7}{fwd.tp / max(1, ref.max()):>8.3f}"
              f"{back.tp / max(1, got.max()):>8.3f}{t_sd:>7.2f}{t_torch:>8.2f}")
    print(f"{'pooled':<26}{int(tot[0]):>7}{int(tot[1]):>9}{int(tot[2]):>7}{tot[3] / tot[1]:>8.3f}{tot[4] / tot[2]:>8.3f}")
    print("sd->t: stardist's instances the torch path reproduces at IoU >= 0.9; t->sd: the reverse")
    return 0


if __name__ == "__main__":
    sys.exit(main())
