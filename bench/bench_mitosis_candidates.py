"""Benchmark: mitosis candidate recall per scanner against candidates on negative tissue.

Candidate recall is the ceiling of any mitosis classifier: a figure that never becomes a
candidate cannot be scored. Per MIDOG 2021 scanner (AMi-Br crops, 128² px at 0.25 µm/px
centred on a figure; dataset ``ami-br-midog21``) and class (normal / atypical):

* ``ceiling``: share of crops with ANY detected nucleus within ``--radius-um`` (7.5 µm, as
  :func:`wsi_pipeline.evaluation.points.evaluate_figure_crops`) of the centre;
* ``recall``: share with a CANDIDATE there.

Nuclei come from the default weight-free detector as the mitosis detector runs it
(:class:`~detectors.mitosis.detector.MitosisDetector`: 0.25 µm/px, per-tile threshold),
one crop at a time. Candidate darkness is judged against the nuclei of all the crops of a
scanner pooled (a crop holds a handful of nuclei; a slide run pools the slide, and a slide
is one scanner; ``--pool all`` pools every crop as ``evaluate_figure_crops`` does).

Negative tissue, where mitoses are rare: the MoNuSeg dev tiles (``monuseg-dev``, one
pool per tile) and the normal-skin region ``CMU-1-Small-Region.svs`` read at 0.25 µm/px
in 1000² px fields (one pool for the region, as a slide run). Reported: candidates per
mm² of tissue (not glass) and the share of nuclei kept.

Rows: ``baseline`` (the rule as committed before the blob candidates: :data:`BASELINE`),
``rule`` (the current :class:`CandidateRule` defaults, nuclei only) and ``rule+blobs``
(plus :func:`blob_candidates` merged in, as the detector is meant to run it).

    OMP_NUM_THREADS=1 nice -n 19 .venv/bin/python bench/bench_mitosis_candidates.py
    ... --limit 100          # 100 crops per scanner and class, for speed
    ... --misses /tmp/cand_misses   # PNG montages of the missed figures
"""

from __future__ import annotations

import argparse
import csv
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from detectors.base import Instances
from detectors.mitosis.candidates import (
    BlobRule, CandidateRule, blob_candidates, merge_candidates, reference_od, select_candidates,
)
from detectors.nuclei.weightfree import WeightFreeNucleiDetector

SHARED = Path(os.environ.get("WSI_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
MPP = 0.25
#: the rule as committed before this benchmark (the comparison row)
BASELINE = CandidateRule(min_relative_od=1.15, min_relative_std=1.35, min_area_um2=5.0, max_area_um2=120.0,
                         irregular_relative_od=1.0, max_circularity=0.6, max_solidity=0.85, min_set_size=20,
                         fallback_od=0.55, fallback_std=0.16, min_darkness=float("inf"))


def scanner_of(slide: str) -> str:
    from wsi_pipeline.training.mitosis_loso import midog21_scanner

    return midog21_scanner(slide) or "unknown"


@dataclass
class Field:
    """One image and its nuclei: a crop (``scanner``, ``cls``) or a negative field."""

    name: str
    rgb: np.ndarray
    nuclei: Instances
    scanner: str = ""
    cls: str = ""
    pool: str = ""
    tissue_mm2: float = 0.0
    extra: dict = field(default_factory=dict)


def tissue_mm2(rgb: np.ndarray, mpp: float = MPP) -> float:
    from wsi_pipeline.training.mitosis_loso import tissue_fraction

    return tissue_fraction(rgb) * rgb.shape[0] * rgb.shape[1] * (mpp * 1e-3) ** 2


def load_crops(root: Path, limit: int | None, det) -> list[Field]:
    slides = {}
    with open(root / "AMI-BR-MIDOG21.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            slides[row["uid"]] = row["slide"]
    out = []
    for cls in ("normal", "atypical"):
        by_scanner: dict[str, list[Path]] = {}
        for p in sorted((root / cls).glob("*.png"), key=lambda p: int(p.stem.split("_")[-1])):
            by_scanner.setdefault(scanner_of(slides.get(p.stem.split("_")[-1], "")), []).append(p)
        for sc, paths in sorted(by_scanner.items()):
            for p in paths[:limit]:
                rgb = np.array(Image.open(p).convert("RGB"))
                out.append(Field(f"{cls}/{p.name}", rgb, det.predict(rgb), scanner=sc, cls=cls, pool=sc,
                                 extra={"slide": slides.get(p.stem.split("_")[-1], "")}))
    return out


def load_negatives(det, cmu_fields: int | None) -> list[Field]:
    from wsi_pipeline.training.mitosis_data import read_rgb

    out = []
    for p in sorted((SHARED / "nuclei" / "monuseg-dev").glob("*.tif")):
        rgb = read_rgb(p, mpp=MPP)
        out.append(Field(f"monuseg-dev/{p.stem}", rgb, det.predict(rgb), pool=f"monuseg-dev/{p.stem}",
                         tissue_mm2=tissue_mm2(rgb)))
    svs = SHARED / "slides" / "CMU-1-Small-Region.svs"
    if svs.exists() and cmu_fields != 0:
        from tiling.open import open_slide

        with open_slide(svs) as slide:
            side = 1000 * MPP / slide.mpp[0]
            w, h = slide.dimensions
            n = 0
            for y in np.arange(0, h - side + 1, side):
                for x in np.arange(0, w - side + 1, side):
                    if cmu_fields is not None and n >= cmu_fields:
                        break
                    rgb = slide.read_region((int(x), int(y)), (1000, 1000), mpp=MPP)
                    area = tissue_mm2(rgb)
                    if area < 0.005:
                        continue
                    out.append(Field(f"CMU-1/x{int(x)}_y{int(y)}", rgb, det.predict(rgb), pool="CMU-1", tissue_mm2=area))
                    n += 1
    return out


def candidates_of(fields: list[Field], rule: CandidateRule, blob_rule: BlobRule | None) -> list[np.ndarray]:
    """(K, 2) candidate centres (x, y) per field: the rule on each pool's nuclei, plus the
    blobs (darkness relative to the pool's median nucleus) not already within the radius."""
    pools: dict[str, list[int]] = {}
    for i, f in enumerate(fields):
        pools.setdefault(f.pool, []).append(i)
    out: list[np.ndarray] = [np.empty((0, 2))] * len(fields)
    for idx in pools.values():
        nuc = Instances.concatenate([fields[i].nuclei for i in idx])
        mask = select_candidates(nuc, rule=rule) if len(nuc) else np.zeros(0, bool)
        masks = np.split(mask, np.cumsum([len(fields[i].nuclei) for i in idx])[:-1])
        ref = reference_od(nuc) if blob_rule is not None else None
        for i, m in zip(idx, masks):
            f = fields[i]
            xy = f.nuclei.subset(m).centroids().reshape(-1, 2) if m.any() else np.empty((0, 2))
            if blob_rule is not None:
                blobs = blob_candidates(f.rgb, mpp=MPP, reference=ref, rule=blob_rule)
                xy = merge_candidates(xy, blobs, radius=blob_rule.merge_radius_um / MPP)
            out[i] = xy
    return out


def _near_centre(xy: np.ndarray, rgb: np.ndarray, radius_px: float) -> bool:
    if not len(xy):
        return False
    return bool((np.hypot(xy[:, 0] - rgb.shape[1] / 2, xy[:, 1] - rgb.shape[0] / 2) <= radius_px).any())


def crop_table(crops: list[Field], cands: list[np.ndarray], radius_px: float) -> dict:
    rows: dict[tuple[str, str], list[int]] = {}
    for f, xy in zip(crops, cands):
        ceil = _near_centre(f.nuclei.centroids().reshape(-1, 2) if len(f.nuclei) else np.empty((0, 2)), f.rgb, radius_px)
        hit = _near_centre(xy, f.rgb, radius_px)
        f.extra["ceiling"], f.extra["hit"] = ceil, hit
        for key in ((f.scanner, f.cls), (f.scanner, "all"), ("ALL", f.cls), ("ALL", "all")):
            r = rows.setdefault(key, [0, 0, 0])
            r[0] += 1
            r[1] += ceil
            r[2] += hit
    return rows


def negative_table(negs: list[Field], cands: list[np.ndarray]) -> dict:
    rows: dict[str, list[float]] = {}
    for f, xy in zip(negs, cands):
        key = f.pool.split("/")[0]
        r = rows.setdefault(key, [0.0, 0, 0])
        r[0] += f.tissue_mm2
        r[1] += len(f.nuclei)
        r[2] += len(xy)
    return rows


def montage(fields: list[Field], cands: list[np.ndarray], path: Path, radius_px: float, per_row: int = 8) -> None:
    """Crops side by side (2x), nuclei outlined green, candidates as red crosses, the
    radius as a blue circle."""
    s, n = 2, len(fields)
    if not n:
        return
    tile = 128 * s + 4
    rows = (n + per_row - 1) // per_row
    canvas = Image.new("RGB", (per_row * tile, rows * tile), "white")
    for k, (f, xy) in enumerate(zip(fields, cands)):
        im = Image.fromarray(f.rgb).resize((128 * s, 128 * s), Image.Resampling.NEAREST)
        d = ImageDraw.Draw(im)
        for g in f.nuclei.geometry:
            if g.geom_type == "Polygon":
                d.line([(x * s, y * s) for x, y in g.exterior.coords], fill=(0, 200, 0), width=1)
        c = 64 * s
        d.ellipse([c - radius_px * s, c - radius_px * s, c + radius_px * s, c + radius_px * s], outline=(0, 0, 255))
        for x, y in xy:
            d.line([(x * s - 5, y * s), (x * s + 5, y * s)], fill=(255, 0, 0), width=2)
            d.line([(x * s, y * s - 5), (x * s, y * s + 5)], fill=(255, 0, 0), width=2)
        canvas.paste(im, ((k % per_row) * tile, (k // per_row) * tile))
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=None, help="crops per scanner and class (default: all)")
    ap.add_argument("--cmu-fields", type=int, default=None, help="CMU-1 1000² px fields (default: all, 0: none)")
    ap.add_argument("--radius-um", type=float, default=7.5)
    ap.add_argument("--pool", choices=("scanner", "all"), default="scanner")
    ap.add_argument("--misses", type=Path, default=None, help="folder for PNG montages of missed figures")
    ap.add_argument("--sweep", type=float, nargs="*", default=None,
                    help="also the trade-off for these CandidateRule.min_darkness values (with blobs)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    root = SHARED / "mitosis" / "ami-br-midog21"
    if not root.is_dir():
        raise SystemExit(f"no crops at {root} (set WSI_SHARED_DATA)")
    t0 = time.perf_counter()
    det = WeightFreeNucleiDetector(device="cpu")
    crops = load_crops(root, args.limit, det)
    if args.pool == "all":
        for f in crops:
            f.pool = "crops"
    t1 = time.perf_counter()
    negs = load_negatives(det, args.cmu_fields)
    t2 = time.perf_counter()
    print(f"nuclei: {len(crops)} crops {t1 - t0:.1f} s; {len(negs)} negative fields "
          f"({sum(f.tissue_mm2 for f in negs):.3f} mm² tissue) {t2 - t1:.1f} s")
    radius = args.radius_um / MPP
    variants = [("baseline", BASELINE, None), ("rule", CandidateRule(), None), ("rule+blobs", CandidateRule(), BlobRule())]
    results = {}
    for name, rule, blob in variants:
        t = time.perf_counter()
        cc, cn = candidates_of(crops, rule, blob), candidates_of(negs, rule, blob)
        results[name] = (crop_table(crops, cc, radius), negative_table(negs, cn), time.perf_counter() - t)
        if args.misses and name != "baseline":
            for sc in sorted({f.scanner for f in crops}):
                miss = [(f, xy) for f, xy in zip(crops, cc) if f.scanner == sc and not f.extra["hit"]]
                tag = sc.lower().replace(" ", "-")
                for kind, sel in (("nonucleus", [m for m in miss if not m[0].extra["ceiling"]]),
                                  ("rule", [m for m in miss if m[0].extra["ceiling"]])):
                    montage([m[0] for m in sel[:48]], [m[1] for m in sel[:48]],
                            args.misses / f"{name}_{tag}_{kind}.png", radius)
    base_c, base_n, _ = results["baseline"]
    print(f"\ncrops: ceiling = any nucleus within {args.radius_um:g} µm of the centre; recall = a candidate there "
          f"(pool: {args.pool})")
    print(f"{'scanner':14s} {'class':9s} {'crops':>5s} {'ceiling':>7s} " +
          " ".join(f"{n:>12s}" for n, *_ in variants) + "  (ratio to baseline)")
    for key in sorted(base_c, key=lambda k: (k[0] == "ALL", k[0], k[1] == "all", k[1])):
        n, ceil, _ = base_c[key]
        cells = []
        for name, *_ in variants:
            rec = results[name][0][key][2] / n
            cells.append(f"{rec:6.3f}" + (f" x{rec / max(base_c[key][2] / n, 1e-9):4.2f}" if name != "baseline" else "      "))
        print(f"{key[0]:14s} {key[1]:9s} {n:5d} {ceil / n:7.3f} " + " ".join(cells))
    print("\nnegative tissue: candidates per mm² of tissue (share of nuclei kept)")
    print(f"{'set':12s} {'mm²':>6s} {'nuclei/mm²':>10s} " + " ".join(f"{n:>22s}" for n, *_ in variants))
    for key in base_n:
        area, nn, _ = base_n[key]
        cells = []
        for name, *_ in variants:
            k = results[name][1][key][2]
            cells.append(f"{k / area:7.0f} ({k / max(nn, 1):5.3f}) x{k / max(base_n[key][2], 1):4.2f}")
        print(f"{key:12s} {area:6.3f} {nn / area:10.0f} " + " ".join(cells))
    if args.sweep:
        print("\ntrade-off (rule+blobs) over min_darkness: candidate recall per scanner | candidates per mm² of tissue")
        for v in args.sweep:
            rule = replace(CandidateRule(), min_darkness=v)
            c = crop_table(crops, candidates_of(crops, rule, BlobRule()), radius)
            n = negative_table(negs, candidates_of(negs, rule, BlobRule()))
            print(f"min_darkness {v:5.3f}: " + " ".join(f"{sc} {c[(sc, 'all')][2] / c[(sc, 'all')][0]:.3f}"
                                                     for sc in sorted({f.scanner for f in crops}))
                  + " | " + " ".join(f"{k} {a[2] / a[0]:.0f}" for k, a in n.items()))
    print("\ncandidate selection time: " + ", ".join(f"{n} {results[n][2]:.1f} s" for n, *_ in variants)
          + f"; total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
