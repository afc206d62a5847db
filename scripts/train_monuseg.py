"""Train the torch StarDist on the MoNuSeg dev tiles with leave-tiles-out validation; report AJI.

Split (by sorted file name, fixed): the first 4 tiles train, the 5th validates (best epoch
and thresholds), the last 2 are held out for testing: they are never seen in training or
threshold choice. Prints and writes ``results.json`` (AJI, F1@0.5, PQ per test tile and
pooled) next to the model folder.

    .venv/bin/python scripts/train_monuseg.py --data ../shared/data/nuclei/monuseg-dev \\
        --out /tmp/monuseg-model --minutes 55 --device auto --workers 0
    # --pack FILE.npz instead of --data: images/labels/names saved by --save-pack (for a
    # machine without the data folder)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def load_samples(args):
    from wsi_pipeline.training.nuclei import Sample, load_pairs

    if args.pack:
        z = np.load(args.pack)
        return [Sample(str(n), z[f"image_{i}"], z[f"labels_{i}"]) for i, n in enumerate(z["names"])]
    return load_pairs(args.data, polygons=args.data)


def score(gt: np.ndarray, pred: np.ndarray):
    try:
        from wsi_pipeline.evaluation.metrics import score_labels
    except ImportError:
        return None
    return score_labels(gt, pred, iou_thresholds=(0.5,))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path)
    ap.add_argument("--pack", type=Path)
    ap.add_argument("--save-pack", type=Path)
    ap.add_argument("--out", type=Path, default=Path("/tmp/monuseg-model"))
    ap.add_argument("--minutes", type=float, default=55)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--steps-per-epoch", type=int, default=50)
    ap.add_argument("--preset", default="versatile_he")
    args = ap.parse_args(argv)
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stdout)

    samples = sorted(load_samples(args), key=lambda s: s.name)
    if args.save_pack:
        arrays = {"names": np.array([s.name for s in samples])}
        for i, s in enumerate(samples):
            arrays[f"image_{i}"], arrays[f"labels_{i}"] = s.image, s.labels
        np.savez_compressed(args.save_pack, **arrays)
        print(f"saved {len(samples)} samples to {args.save_pack}")
        return 0

    import torch

    from detectors.device import select_device
    from detectors.stardist import load_stardist_net
    from detectors.stardist.normalize import normalize_numpy
    from detectors.stardist.predict import predict_instances
    from wsi_pipeline.training.nuclei import NucleiTrainingOptions, train_nuclei

    device = select_device(args.device)
    train, val, test = samples[:4], samples[4:5], samples[5:]
    print(f"train {[s.name for s in train]}\nval {[s.name for s in val]}\ntest {[s.name for s in test]}", flush=True)
    options = NucleiTrainingOptions(preset=args.preset, epochs=10_000, steps_per_epoch=args.steps_per_epoch,
                                    batch_size=args.batch_size, patch_size=256, val_names=(val[0].name,),
                                    val_patches_per_image=16, time_limit_min=args.minutes, workers=args.workers)
    t0 = time.perf_counter()
    res = train_nuclei(train + val, out=args.out, mpp=0.25, options=options, device=device)
    train_s = time.perf_counter() - t0
    net, thresholds, _ = load_stardist_net(args.out)
    net = net.to(device)
    per_image, total = {}, None
    for s in test:
        with torch.inference_mode():
            labels, _ = predict_instances(net, normalize_numpy(s.image, s.percentiles), thresholds=thresholds,
                                          device=device)
        sc = score(s.labels, labels)
        if sc is None:
            from wsi_pipeline.training.nuclei import f1_scores

            tp, g, q = f1_scores(s.labels, labels, (0.5,))
            per_image[s.name] = {"f1@0.5": float(2 * tp[0] / max(g + q, 1)), "n_gt": g, "n_pred": q}
            continue
        total = sc if total is None else total + sc
        per_image[s.name] = {"aji": sc.aji, **{k: sc.at(0.5)[k] for k in ("f1", "pq")}, "n_gt": sc.n_gt,
                             "n_pred": sc.n_pred}
    out = {"device": str(device), "train_seconds": train_s, "epochs": len(res.fit.train_loss),
           "steps": len(res.fit.train_loss) * args.steps_per_epoch, "best_epoch": res.fit.best_epoch + 1,
           "thresholds": thresholds.to_dict(), "val_mean_f1": res.val_f1["mean_f1"], "test": per_image}
    if total is not None:
        out["test_pooled"] = {"aji": total.aji, "f1@0.5": total.at(0.5)["f1"], "pq@0.5": total.at(0.5)["pq"]}
    (args.out / "results.json").write_text(json.dumps(out, indent=2))
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
