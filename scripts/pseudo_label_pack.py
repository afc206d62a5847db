"""Label tiles of a slide with the weight-free detector and pack them for ``train_monuseg.py --extra-pack``.

The slide is cut into SIZE x SIZE tiles at ``--mpp`` (default 0.25 µm/px, the MoNuSeg tiles'
resolution); the ``--tiles`` tiles with the most tissue (share of pixels whose mean RGB is
below 200) are labelled by the weight-free detector, calibrated per tile as the evaluation
does, and written in ``train_monuseg.py --save-pack``'s layout.

    .venv/bin/python scripts/pseudo_label_pack.py ../shared/data/slides/CMU-1-Small-Region.svs \\
        /tmp/pseudo.npz --tiles 5
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def tissue_share(tile: np.ndarray) -> float:
    return float((tile.mean(axis=2) < 200).mean())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("slide", type=Path)
    ap.add_argument("out", type=Path, help="the pack to write (.npz)")
    ap.add_argument("--tiles", type=int, default=5)
    ap.add_argument("--size", type=int, default=1000)
    ap.add_argument("--mpp", type=float, default=0.25)
    args = ap.parse_args(argv)

    from train_monuseg import save_pack

    from detectors.nuclei.polygons import rasterise
    from detectors.nuclei.weightfree import WeightFreeNucleiDetector
    from tiling.errors import InputError, first_line
    from tiling.open import open_slide
    from wsi_pipeline.training.nuclei import Sample

    try:
        slide = open_slide(args.slide)
        scale = slide.mpp[0] / args.mpp  # tile pixels per level-0 pixel
        w, h = (int(d * scale) for d in slide.dimensions)
        tiles = []
        for y in range(0, h - args.size + 1, args.size):
            for x in range(0, w - args.size + 1, args.size):
                img = np.array(slide.read_region((round(x / scale), round(y / scale)), (args.size, args.size),
                                                 mpp=args.mpp))  # writable: torch warns on read-only arrays
                tiles.append((tissue_share(img), y, x, img))
    except InputError as exc:
        print(f"error: {first_line(exc)}", file=sys.stderr)
        return 1
    if not tiles:
        print(f"error: {args.slide}: smaller than one {args.size}-px tile at {args.mpp} um/px", file=sys.stderr)
        return 1
    tiles.sort(key=lambda t: (-t[0], t[1], t[2]))
    samples = []
    for share, y, x, img in tiles[:args.tiles]:
        t0 = time.perf_counter()
        res = WeightFreeNucleiDetector(device="cpu").calibrate(img).predict(img)
        labels = rasterise(res.geometry, img.shape[:2]).astype(np.int32)
        samples.append(Sample(f"pseudo-{args.slide.stem}-y{y}-x{x}", img, labels))
        print(f"tile y {y} x {x}: tissue {share:.2f}, {len(res.geometry)} nuclei ({time.perf_counter() - t0:.1f} s)",
              flush=True)
    save_pack(args.out, samples)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
