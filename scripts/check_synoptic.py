"""Measure the synoptic draft against synthetic truth (issue 17's done-when numbers).

    # the demo: headline margin vs the truly closest inked margin (the run's tissue and ink +
    # the truth regions, and, with --predicted, the weight-free region map computed here)
    python scripts/check_synoptic.py demo demo-output [--predicted]

    # melanoma-like scenes (truth geometry only, no painting): Breslow, ulceration, TILs, pT
    python scripts/check_synoptic.py melanoma --out /tmp/mel --cases 0:0.6:0:brisk 1:1.5:300:non-brisk 2:3.2:500:absent

A results folder is assembled from the truth folder: ``tissue.geojson`` (Tissue + Ink),
``regions.geojson`` (truth or predicted), ``nuclei.parquet`` with ``class`` = the truth
cell type (lymphocyte -> Lymphocyte, tumor -> Tumor, ...). Prints one line per case and
writes ``check.json``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

TYPE_TO_CLASS = {"lymphocyte": "Lymphocyte", "epidermal": "Epithelial", "dermal": "Stromal", "endothelial": "Stromal",
                 "tumor": "Tumor", "mitosis": "Tumor"}


def assemble(truth: Path, out: Path, *, mpp: tuple[float, float], regions: Path | None = None) -> Path:
    """A results folder from a truth folder (see module docstring)."""
    import pandas as pd
    import shapely

    from wsi_pipeline.annotations import read_geojson, write_geojson

    out.mkdir(parents=True, exist_ok=True)
    feats = read_geojson(truth / "tissue.geojson").features + read_geojson(truth / "ink.geojson").features
    write_geojson(out / "tissue.geojson", feats)
    shutil.copy(regions or truth / "regions.geojson", out / "regions.geojson")
    nuc = read_geojson(truth / "nuclei.geojson").features
    c = shapely.centroid([f.geometry for f in nuc])
    pd.DataFrame({"id": [f"n{i}" for i in range(len(nuc))], "object_type": "detection",
                  "class": [TYPE_TO_CLASS.get((f.extra or {}).get("nucleusType"), "Other") for f in nuc],
                  "centroid_x": shapely.get_x(c), "centroid_y": shapely.get_y(c)}).to_parquet(out / "nuclei.parquet")
    return out


def predicted_regions(slide_path: Path, results: Path, out: Path) -> Path:
    """The weight-free region map of a slide (tissue detected again, nuclei from the run)."""
    from detectors.regions import map_regions
    from detectors.regions.output import write_regions
    from detectors.tissue import detect_tissue
    from tiling.open import open_slide
    from wsi_pipeline.annotations import features_to_instances, read_geojson

    nuclei = features_to_instances(read_geojson(results / "nuclei.geojson.gz").features)
    with open_slide(slide_path) as slide:
        tissue = detect_tissue(slide, mpp=8.0, device="cpu")
        rm = map_regions(slide, tissue, nuclei, device="cpu")
    out.mkdir(parents=True, exist_ok=True)
    write_regions(out, rm)
    return out / "regions.geojson"


def check_demo(demo: Path, *, predicted: bool) -> list[dict]:
    from wsi_pipeline.report.synoptic import write_synoptic

    truth = json.loads((demo / "demo_truth" / "scene.json").read_text())
    mpp = (truth["mpp"], truth["mpp"])
    true_colour, true_mm = truth["tumor_ink_color"], truth["tumor_ink_distance_um"] / 1000
    rows = []
    kinds = [("truth regions", None)]
    if predicted:
        kinds.append(("predicted regions", predicted_regions(demo / "demo.svs", demo / "demo", demo / "pred_regions")))
    for name, regions in kinds:  # the run's own results (detected tissue and ink), plus a region map
        res = demo / f"check_{name.split()[0]}"
        res.mkdir(exist_ok=True)
        for f in ("tissue.geojson", "nuclei.parquet", "summary.json", "mitoses.geojson"):
            shutil.copy(demo / "demo" / f, res / f)
        shutil.copy(regions or demo / "demo_truth" / "regions.geojson", res / "regions.geojson")
        out = write_synoptic(demo / "demo.svs", res)
        m = out["margins"]
        closest = m["closest"] or {}
        involved = [x["colour"] for x in m["margins"] if x["status"] == "involved"]
        rows.append({"case": f"demo ({name})", "headline": out["headline"], "closest_colour": closest.get("colour"),
                     "closest_mm": closest.get("clearance_mm"), "true_colour": true_colour, "true_mm": true_mm,
                     "error_mm": None if closest.get("clearance_mm") is None else round(closest["clearance_mm"] - true_mm, 4),
                     "involved": involved, "surface_mm": m["epidermal_surface"]["length_mm"],
                     "lesion": out["lesion"]["source"], "folder": str(res)})
    return rows


def check_melanoma(out_root: Path, cases: list[str], *, width: int, height: int) -> list[dict]:
    from wsi_pipeline.report.synoptic import build_draft

    rows = []
    for case in cases:
        seed, breslow_mm, ulcer_um, til = case.split(":")
        truth_dir = out_root / f"truth_{seed}_{breslow_mm}_{ulcer_um}_{til}"
        scene = make_truth(truth_dir, seed=int(seed), breslow_um=float(breslow_mm) * 1000, ulcer_um=float(ulcer_um),
                           til=til, width=width, height=height)
        mpp = (scene["mpp"], scene["mpp"])
        res = assemble(truth_dir, out_root / f"results_{truth_dir.name[6:]}", mpp=mpp)
        draft = build_draft(res, mpp=mpp, diagnosis="melanoma")
        t = scene["melanoma"]
        got = draft.summary()
        b = draft.breslow
        tol = max(0.1, 0.1 * t["breslow_mm"])
        ulcer = draft.finding("Ulceration")
        rows.append({"case": case, "breslow_true_mm": t["breslow_mm"],
                     "breslow_measured_mm": None if b is None else round(b.thickness_um / 1000, 4),
                     "breslow_reported_mm": got["breslow_mm"],
                     "breslow_ok": b is not None and abs(b.thickness_um / 1000 - t["breslow_mm"]) <= tol,
                     "ulcer_true": t["ulceration"], "ulcer_got": got["ulceration"],
                     "ulcer_len_true_mm": t.get("ulcer_length_mm"),
                     "ulcer_len_got_mm": (ulcer.details or {}).get("length_mm"),
                     "til_true": t["til_grade"], "til_got": got["til_grade"],
                     "pt_true": t["pT"], "pt_got": got["pT"], "folder": str(res)})
    return rows


def make_truth(folder: Path, *, seed: int, breslow_um: float, ulcer_um: float, til: str, width: int,
               height: int) -> dict:
    """Truth files of a melanoma-like scene (no painting)."""
    from wsi_pipeline.synthetic.scene import build_scene
    from wsi_pipeline.synthetic.truth import write_truth

    scene = build_scene(width, height, mpp=0.25, seed=seed, lesion="melanoma", breslow_um=breslow_um,
                        ulceration_um=ulcer_um, til=til)
    write_truth(scene, folder)
    return json.loads((folder / "scene.json").read_text())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="what", required=True)
    d = sub.add_parser("demo")
    d.add_argument("demo_output", type=Path)
    d.add_argument("--predicted", action="store_true", help="also with the weight-free region map computed here")
    m = sub.add_parser("melanoma")
    m.add_argument("--out", type=Path, required=True)
    m.add_argument("--cases", nargs="+", required=True, help="seed:breslow_mm:ulcer_um:til")
    m.add_argument("--width", type=int, default=24576)
    m.add_argument("--height", type=int, default=16384)
    args = p.parse_args(argv)
    if args.what == "demo":
        rows = check_demo(args.demo_output, predicted=args.predicted)
        out = args.demo_output / "check.json"
    else:
        args.out.mkdir(parents=True, exist_ok=True)
        rows = check_melanoma(args.out, args.cases, width=args.width, height=args.height)
        out = args.out / "check.json"
    for r in rows:
        print(json.dumps({k: v for k, v in r.items() if k != "folder"}))
    out.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
