"""Measure the synoptic draft against synthetic truth (issue 17's done-when numbers).

    # the demo (after `wsi-pipeline demo --out demo-output`): the run's own draft, the draft
    # again from its results, with the truth regions, and with the truth cell types too
    python scripts/check_synoptic.py demo demo-output

    # melanoma-like scenes (truth geometry only, no painting): Breslow, ulceration, TILs, pT
    python scripts/check_synoptic.py melanoma --out /tmp/mel --cases 0:0.6:0:brisk 1:1.5:300:non-brisk 2:3.2:500:absent

Each row says, against the truth, whether the headline names the truly closest inked margin
within 0.05 mm, nothing is "involved" where the truth is clear, Breslow is within 0.1 mm (or
10%), and ulceration, TIL grade and pT are right (``*_ok``).

For ``melanoma``, a results folder is assembled from the truth folder: ``tissue.geojson`` (Tissue + Ink),
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
    from wsi_pipeline.annotations import read_geojson, write_geojson

    out.mkdir(parents=True, exist_ok=True)
    feats = read_geojson(truth / "tissue.geojson").features + read_geojson(truth / "ink.geojson").features
    write_geojson(out / "tissue.geojson", feats)
    shutil.copy(regions or truth / "regions.geojson", out / "regions.geojson")
    truth_nuclei(truth, out)
    return out


def judge(draft: dict, scene: dict) -> dict:
    """One row: the draft (``synoptic.json`` content) against the scene's truth, with ``*_ok``
    flags for issue 17's targets."""
    by_name = {f["name"]: f for f in draft["findings"]}
    m = draft["margins"]
    closest = m.get("closest") or {}
    edges = scene.get("tumor_inked_edge_distances_um") or {scene["tumor_ink_color"]: scene["tumor_ink_distance_um"]}
    true_colour = min(edges, key=edges.get)
    true_mm = edges[true_colour] / 1000
    got_mm = closest.get("clearance_mm")
    row = {"headline": draft["headline"], "lesion": draft["lesion"]["source"],
           "closest_colour": closest.get("colour"), "closest_mm": got_mm, "true_colour": true_colour,
           "true_mm": round(true_mm, 4),
           "margin_ok": closest.get("colour") == true_colour and got_mm is not None and abs(got_mm - true_mm) <= 0.05,
           "involved": [x["colour"] for x in m["margins"] if x["status"] == "involved"],
           "surface_mm": m["epidermal_surface"]["length_mm"]}
    row["involved_ok"] = not row["involved"] if min(edges.values()) > 0 else True
    mel = scene.get("melanoma")
    if mel:
        b = by_name["Breslow thickness"]
        measured = None if b["value"] is None else b["details"]["measured_um"] / 1000
        tol = max(0.1, 0.1 * mel["breslow_mm"])
        u = by_name["Ulceration"]
        row.update({
            "breslow_true_mm": mel["breslow_mm"], "breslow_measured_mm": measured, "breslow_reported_mm": b["value"],
            "breslow_ok": measured is not None and abs(measured - mel["breslow_mm"]) <= tol,
            "ulcer_true": mel["ulceration"], "ulcer_got": u["value"], "ulcer_ok": u["value"] == mel["ulceration"],
            "ulcer_len_true_mm": mel.get("ulcer_length_mm"), "ulcer_len_got_mm": (u.get("details") or {}).get("length_mm"),
            "til_true": mel["til_grade"], "til_got": by_name["Tumour-infiltrating lymphocytes"]["value"],
            "pt_true": mel["pT"], "pt_got": by_name["pT (AJCC 8th)"]["value"]})
        row["til_ok"] = row["til_got"] == row["til_true"]
        row["pt_ok"] = row["pt_got"] == row["pt_true"]
    for name, f in by_name.items():
        if f["value"] is None and name in ("Breslow thickness", "Ulceration", "Tumour-infiltrating lymphocytes"):
            row.setdefault("not_assessed", {})[name] = f["reason"]
    return row


def check_demo(demo: Path) -> list[dict]:
    """Drafts of the demo: the run's own ``synoptic.json``; then, drawn again with the current
    report code, the run's tissue, ink, regions and cell types; the same with the truth regions
    (isolates the region map); and with the truth regions and truth cell types (isolates the
    report)."""
    from wsi_pipeline.report.synoptic import write_synoptic

    scene = json.loads((demo / "demo_truth" / "scene.json").read_text())
    mpp = (scene["mpp"], scene["mpp"])
    run = demo / "demo"
    rows = []
    own = run / "synoptic.json"
    if own.is_file():  # as the run wrote it (the report code of that time)
        rows.append({"case": "demo (run's synoptic.json)", **judge(json.loads(own.read_text()), scene),
                     "folder": str(run)})
    for name, regions, truth_cells in (("predicted regions + cell types", run / "regions.geojson", False),
                                       ("truth regions", demo / "demo_truth" / "regions.geojson", False),
                                       ("truth regions + truth cells", demo / "demo_truth" / "regions.geojson", True)):
        res = demo / ("check_" + name.replace(" + ", "_").replace(" ", "_"))
        if res.exists():
            shutil.rmtree(res)
        res.mkdir()
        for f in ("tissue.geojson", "nuclei.parquet", "summary.json", "mitoses.geojson"):
            shutil.copy(run / f, res / f)
        shutil.copy(regions, res / "regions.geojson")
        if truth_cells:
            truth_nuclei(demo / "demo_truth", res)
        out = write_synoptic(demo / "demo.svs", res, diagnosis="melanoma" if scene.get("melanoma") else None)
        rows.append({"case": f"demo ({name})", **judge(out, scene), "folder": str(res)})
    return rows


def truth_nuclei(truth: Path, out: Path) -> None:
    """``out/nuclei.parquet`` from the truth nuclei, ``class`` = the truth cell type."""
    import pandas as pd
    import shapely

    from wsi_pipeline.annotations import read_geojson

    nuc = read_geojson(truth / "nuclei.geojson").features
    c = shapely.centroid([f.geometry for f in nuc])
    pd.DataFrame({"id": [f"n{i}" for i in range(len(nuc))], "object_type": "detection",
                  "class": [TYPE_TO_CLASS.get((f.extra or {}).get("nucleusType"), "Other") for f in nuc],
                  "centroid_x": shapely.get_x(c), "centroid_y": shapely.get_y(c)}).to_parquet(out / "nuclei.parquet")


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
        rows.append({"case": case, **judge(draft.to_dict(), scene), "folder": str(res)})
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
    m = sub.add_parser("melanoma")
    m.add_argument("--out", type=Path, required=True)
    m.add_argument("--cases", nargs="+", required=True, help="seed:breslow_mm:ulcer_um:til")
    m.add_argument("--width", type=int, default=24576)
    m.add_argument("--height", type=int, default=16384)
    args = p.parse_args(argv)
    if args.what == "demo":
        rows = check_demo(args.demo_output)
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
