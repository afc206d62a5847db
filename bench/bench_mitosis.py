"""Benchmark: mitosis scoring throughput per mm² on CPU (candidates + crops + scoring).

Fields: the MoNuSeg dev tiles (1000² px at ~0.25 µm/px = 0.0625 mm² each) when the shared
data is present, else synthetic-slide fields. Nuclei come from the weight-free detector
(timed separately: it is the nuclei stage's cost, not the mitosis stage's). Then, per field,
as the whole-slide stage does: ``select_candidates`` -> ``read_crops`` from an in-memory
slide -> ``scorer.score`` in batches of 32; timed for the heuristic and, with ``--model``,
a trained CNN.

    .venv/bin/python bench/bench_mitosis.py                      # heuristic only
    .venv/bin/python bench/bench_mitosis.py --model models/mitosis-midog21-cnn --threads 1
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from detectors.mitosis import load_mitosis_scorer, select_candidates
from detectors.nuclei.weightfree import WeightFreeNucleiDetector
from tiling._array import ArraySlide
from wsi_pipeline.mitosis_stage import read_crops

SHARED = Path(os.environ.get("WSI_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def fields(limit: int) -> list[np.ndarray]:
    tiles = sorted((SHARED / "nuclei" / "monuseg-dev").glob("*.tif"))[:limit]
    if tiles:
        return [np.array(Image.open(p).convert("RGB")) for p in tiles]
    import tempfile

    from tiling.open import open_slide
    from wsi_pipeline.synthetic import make_synthetic_slide

    s = make_synthetic_slide(Path(tempfile.mkdtemp()), width=4096, height=4096, mpp=0.25, seed=0)
    sl = open_slide(s.path)
    return [sl.read_region((1024 + 1000 * i, 1500), (1000, 1000), level=0) for i in range(min(limit, 2))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="trained model folder (adds a CNN row)")
    ap.add_argument("--fields", type=int, default=7)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    imgs = fields(args.fields)
    area = sum(im.shape[0] * im.shape[1] for im in imgs) * (0.25e-3) ** 2
    det = WeightFreeNucleiDetector(device="cpu")
    t = time.perf_counter()
    nuclei = [det.predict(im) for im in imgs]
    t_nuc = time.perf_counter() - t
    print(f"{len(imgs)} fields, {area:.3f} mm², {sum(map(len, nuclei))} nuclei; torch threads {torch.get_num_threads()}")
    print(f"nuclei (weight-free, for reference): {t_nuc:.1f} s = {t_nuc / area:.1f} s/mm²")
    scorers = [("heuristic", load_mitosis_scorer(None, device="cpu"))]
    if args.model:
        scorers.append(("cnn", load_mitosis_scorer(args.model, device="cpu")))
    for name, scorer in scorers:
        t_c = t_r = t_s = 0.0
        n_cand = n_pos = 0
        for im, nuc in zip(imgs, nuclei):
            slide = ArraySlide(im, mpp=0.25)
            t = time.perf_counter()
            centres = nuc.subset(select_candidates(nuc)).centroids()
            t_c += time.perf_counter() - t
            n_cand += len(centres)
            for i in range(0, len(centres), 32):
                t = time.perf_counter()
                crops = read_crops(slide, centres[i : i + 32], size=scorer.crop_size, mpp=scorer.mpp)
                t_r += time.perf_counter() - t
                t = time.perf_counter()
                n_pos += int((scorer.score(crops) >= scorer.threshold).sum())
                t_s += time.perf_counter() - t
        total = t_c + t_r + t_s
        print(f"{name:9s}: {n_cand} candidates ({n_cand / area:.0f}/mm²), {n_pos} above threshold "
              f"({n_pos / area:.1f}/mm²); candidates {t_c:.3f} s, crops {t_r:.2f} s, scoring {t_s:.2f} s; "
              f"total {total:.2f} s = {total / area:.2f} s/mm² = {area / total * 3600:.0f} mm²/h "
              f"({n_cand / max(t_s, 1e-9):.0f} crops/s scored)")


if __name__ == "__main__":
    main()
