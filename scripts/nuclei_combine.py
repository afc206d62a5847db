"""Does combining a trained StarDist with the weight-free detector pay? Scored per tile set.

Ways of combining, each scored (pooled AJI, F1@0.5, PQ) on the validation tiles (the
choice) and then on the test tiles (the report):

* ``stardist``: the model folder as shipped (its own outline choice);
* ``weightfree``: the default detector alone (per-tile calibration, at ``--wf-mpp``);
* ``fill``: StarDist, plus every weight-free nucleus that StarDist's nuclei cover by less
  than ``--fill-overlap`` of its area (the nuclei the network missed);
* ``outlines``: StarDist's nuclei, each redrawn as the weight-free nucleus that matches it at
  IoU >= ``--match-iou`` one-to-one (the weight-free outlines follow the membrane more
  closely), the others as StarDist drew them;
* ``outlines+fill``: both.

    .venv/bin/python scripts/nuclei_combine.py --model models/stardist-monuseg \\
        --val ../shared/data/nuclei/monuseg-train --val-tiles TCGA-21-5786-01Z-00-DX1,... \\
        --test ../shared/data/nuclei/monuseg-dev
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def overlap_tables(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixel counts: (inter[a_id, b_id] as a dense table, area of each a, area of each b)."""
    na, nb = int(a.max()) + 1, int(b.max()) + 1
    inter = np.bincount(a.ravel().astype(np.int64) * nb + b.ravel(), minlength=na * nb).reshape(na, nb)
    return inter, np.bincount(a.ravel(), minlength=na), np.bincount(b.ravel(), minlength=nb)


def combine(sd: np.ndarray, wf: np.ndarray, *, fill: bool, outlines: bool, fill_overlap: float,
            match_iou: float) -> np.ndarray:
    """Label image of a combination of StarDist (``sd``) and weight-free (``wf``) labels."""
    inter, area_sd, area_wf = overlap_tables(sd, wf)
    out = sd.copy()
    if outlines:
        union = area_sd[:, None] + area_wf[None, :] - inter
        iou = np.where(union > 0, inter / np.maximum(union, 1), 0.0)
        iou[0, :] = iou[:, 0] = 0
        best_wf, best_sd = iou.argmax(1), iou.argmax(0)
        swap = np.flatnonzero(iou.max(1) >= match_iou)
        swap = swap[best_sd[best_wf[swap]] == swap]  # one-to-one
        out[np.isin(out, swap)] = 0
        new_id = np.zeros(len(area_wf), out.dtype)
        new_id[best_wf[swap]] = swap
        take = (new_id[wf] > 0) & (out == 0)
        out[take] = new_id[wf][take]
    if fill:
        covered = inter[1:, :].sum(0)  # wf pixels under any StarDist nucleus
        add = np.flatnonzero((area_wf > 0) & (covered < fill_overlap * area_wf))
        add = add[add > 0]
        new_id = np.zeros(len(area_wf), out.dtype)
        new_id[add] = int(out.max()) + 1 + np.arange(len(add))
        take = (new_id[wf] > 0) & (out == 0)
        out[take] = new_id[wf][take]
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", type=Path, default=ROOT / "models" / "stardist-monuseg")
    ap.add_argument("--val", type=Path, required=True)
    ap.add_argument("--val-tiles", default="", help="comma-separated stems of --val to use (default all)")
    ap.add_argument("--test", type=Path, default=None)
    ap.add_argument("--wf-mpp", type=float, default=0.25)
    ap.add_argument("--fill-overlap", type=float, default=0.2)
    ap.add_argument("--match-iou", type=float, default=0.5)
    args = ap.parse_args(argv)

    from detectors.nuclei.polygons import rasterise
    from detectors.nuclei.weightfree import WeightFreeNucleiDetector
    from detectors.stardist import load_stardist_model
    from scripts.train_monuseg import DATA_MPP, predict_labels, summary
    from wsi_pipeline.evaluation import score_labels
    from wsi_pipeline.training.nuclei import load_pairs

    det = load_stardist_model(args.model, device="cpu")
    scale = DATA_MPP / det.spec.mpp
    ways = {"stardist": None, "weightfree": None, "fill": (True, False), "outlines": (False, True),
            "outlines+fill": (True, True)}
    names = tuple(v for v in args.val_tiles.split(",") if v)
    for label, folder in (("validation", args.val), ("test", args.test)):
        if folder is None:
            continue
        samples = [s for s in sorted(load_pairs(folder, polygons=folder), key=lambda s: s.name)
                   if label == "test" or not names or s.name in names]
        totals = dict.fromkeys(ways)
        for s in samples:
            sd = predict_labels(det, s.image, scale=scale)
            wf_det = WeightFreeNucleiDetector(device="cpu", mpp=args.wf_mpp)
            small_scale = DATA_MPP / args.wf_mpp
            wf = predict_labels(wf_det.calibrate(_resampled(s.image, small_scale)), s.image, scale=small_scale)
            for way, how in ways.items():
                pred = {"stardist": sd, "weightfree": wf}.get(way)
                if pred is None:
                    pred = combine(sd, wf, fill=how[0], outlines=how[1], fill_overlap=args.fill_overlap,
                                   match_iou=args.match_iou)
                sc = score_labels(s.labels, pred)
                totals[way] = sc if totals[way] is None else totals[way] + sc
        print(f"\n{label} ({len(samples)} tiles: {', '.join(s.name[:12] for s in samples)}), pooled:")
        print(f"  {'':<16}{'AJI':>7}{'F1@0.5':>8}{'PQ':>7}")
        for way, sc in totals.items():
            r = summary(sc)
            print(f"  {way:<16}{r['aji']:>7.3f}{r['f1@0.5']:>8.3f}{r['pq@0.5']:>7.3f}")
    return 0


def _resampled(image: np.ndarray, scale: float) -> np.ndarray:
    from wsi_pipeline.training.nuclei_data import resample_pair

    return resample_pair(image, np.zeros(image.shape[:2], np.int32), scale)[0]


if __name__ == "__main__":
    sys.exit(main())
