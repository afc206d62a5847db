"""``wsi-pipeline demo --out DIR``: the whole pipeline on a synthetic melanoma excision.

Makes ``DIR/demo.svs`` (with ground truth in ``DIR/demo_truth/``: a junctional melanoma of
known Breslow thickness, ulceration and TIL grade, inked deep and peripheral edges), runs
tissue -> nuclei -> cell types -> regions -> mitoses -> overview -> synoptic draft into
``DIR/demo/`` (with ``slide.ome.zarr``) with the diagnosis stated as melanoma, and prints
the draft's numbers next to the truth.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

NAME = "demo"
HELP = "run the whole pipeline on a built-in synthetic melanoma excision (no data or network needed)"


@dataclass(frozen=True)
class DemoCase:
    """One synthetic melanoma excision: slide size (level-0 px at 0.25 µm/px) and the lesion.

    ``center_x`` is the tumour's surface point as a fraction of the width; the inks follow
    ``configs/margins.yaml``: black on the deep (lower) arc, blue on the left peripheral edge."""

    width: int
    height: int
    breslow_um: float
    ulceration_um: float
    til: str
    radius_um: float
    center_x: float = 0.36


CASES = {
    "small": DemoCase(6144, 4096, breslow_um=500.0, ulceration_um=150.0, til="brisk", radius_um=250.0),  # pT1b
    "medium": DemoCase(16384, 12288, breslow_um=1200.0, ulceration_um=0.0, til="non-brisk", radius_um=700.0),  # pT2a
    "large": DemoCase(61440, 40960, breslow_um=2600.0, ulceration_um=400.0, til="absent", radius_um=1500.0),  # pT3b
}
INKS = (("black", 35.0, 145.0), ("blue", 150.0, 200.0))  # black: deep; blue: 12 o'clock peripheral
DIAGNOSIS = "melanoma"
REPORT_ITEMS = ("Breslow thickness", "Ulceration", "Tumour-infiltrating lymphocytes", "Mitotic rate", "pT (AJCC 8th)")


def add_arguments(parser) -> None:
    parser.add_argument("--out", default="demo-output", help="output folder (default demo-output)")
    parser.add_argument("--size", choices=sorted(CASES), default="small",
                        help="slide size (default small: 1.5 x 1 mm, about 4 minutes on 2 CPU cores)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | mps")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def make_demo_slide(out_dir: Path, *, size: str = "small", progress: bool = False):
    """``out_dir/demo.svs`` + truth: the melanoma excision of :data:`CASES` ``[size]``."""
    from wsi_pipeline.synthetic import make_synthetic_slide

    case = CASES[size]
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=-(-case.width // 256) * -(-case.height // 256), unit="tile", desc="demo.svs")
    try:
        return make_synthetic_slide(out_dir, width=case.width, height=case.height, mpp=0.25, seed=0, name="demo",
                                    ink_depth_um=30.0, inks=INKS, lesion="melanoma", breslow_um=case.breslow_um,
                                    ulceration_um=case.ulceration_um, til=case.til, tumor_radius_um=case.radius_um,
                                    tumor_center=(case.width * case.center_x, 0.0),
                                    progress=bar.update if bar else None)
    finally:
        if bar is not None:
            bar.close()


def run_demo(out_dir: str | Path, *, size: str = "small", device: str = "auto", progress: bool = False):
    """Make the demo slide and run the pipeline on it (``run`` writes the synoptic draft and
    the margin report when it finds a lesion); return ``(slide, run result)``."""
    from tqdm import tqdm

    from wsi_pipeline.batch.manifest import SlideJob
    from wsi_pipeline.config import load_config
    from wsi_pipeline.run import run_slide

    out_dir = Path(out_dir)
    slide = make_demo_slide(out_dir, size=size, progress=progress)
    cfg = load_config("default").updated(**{"device": device, "cluster.kind": "inprocess", "output.ome_zarr": True})
    job = SlideJob(path=slide.path, slide_id="demo", metadata={"specimen_id": "DEMO-0001", "body_site": "skin (synthetic)",
                                                               "diagnosis": DIAGNOSIS})
    with tqdm(total=0, unit="tile", leave=False, disable=not progress) as bar:
        result = run_slide(job, out_dir, cfg, progress=bar)
    return slide, result


def mitosis_line(counts: dict) -> str:
    """The mitosis line of the printout: a count and rate only from a validated model."""
    rate = counts.get("mitoses_per_mm2")
    if counts.get("mitoses_validated") is True and rate is not None:
        return f"{counts.get('mitoses', 0)}; hotspot {rate} per mm²"
    return (counts.get("mitotic_rate") or {}).get("reason") or "not assessed"


def truth_lines(scene: dict) -> list[str]:
    """What the synthetic slide really holds (``demo_truth/scene.json``), as printed."""
    mel = scene.get("melanoma") or {}
    edges = scene.get("tumor_inked_edge_distances_um") or {}
    lines = []
    if mel:
        ulcer = f"present, {mel['ulcer_length_mm']:.2f} mm" if mel.get("ulceration") else "absent"
        lines.append(f"Breslow {mel['breslow_mm_reported']:.1f} mm; ulceration {ulcer}; TILs {mel['til_grade']}; "
                     f"{mel['pT']}")
    if edges:
        colour = min(edges, key=edges.get)
        lines.append(f"closest inked margin: {colour} ink, {edges[colour] / 1000:.3f} mm")
    return lines


def draft_lines(synoptic: dict) -> list[str]:
    """The synoptic draft's headline and the melanoma items, as printed (value [source] (reason))."""
    by_name = {f["name"]: f for f in synoptic.get("findings", [])}
    lines = [synoptic.get("headline", "")]
    for name in REPORT_ITEMS:
        f = by_name.get(name)
        if f is None:
            continue
        note = f" ({f['reason']})" if f.get("reason") else ""
        lines.append(f"{name}: {f['display']}{note}")
    return lines


def run(args) -> int:
    from tiling.errors import InputError

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise InputError(out, "exists and is not a folder")
    slide, result = run_demo(out, size=args.size, device=args.device, progress=not args.no_progress)
    c = result.counts
    d = result.out_dir
    scene = json.loads((slide.truth_dir / "scene.json").read_text(encoding="utf-8"))
    print()
    print(f"Demo slide      {slide.path}  (ground truth in {slide.truth_dir})")
    print(f"Tissue          {c.get('tissue_mm2', 0):.2f} mm² in {c.get('tissue_pieces', 0)} piece(s), "
          f"{c.get('ink_regions', 0)} inked region(s)")
    print(f"Nuclei          {c.get('nuclei', 0)}  ({c.get('nuclei_model', '')})")
    print(f"Mitoses         {mitosis_line(c)}  ({c.get('mitosis_model', '')})")
    synoptic_path = d / "synoptic.json"
    if synoptic_path.is_file():
        synoptic = json.loads(synoptic_path.read_text(encoding="utf-8"))
        lines = draft_lines(synoptic)
        print(f"Synoptic draft  (diagnosis stated: {DIAGNOSIS}; computer-assisted draft, to be confirmed by the "
              "pathologist)")
        print(f"  {lines[0]}")
        for line in lines[1:]:
            print(f"  {line}")
    else:
        print("Synoptic draft  no tumour found (no synoptic draft, no margin report)")
    print("Truth           " + "\n                ".join(truth_lines(scene)))
    print(f"Results         {d}/")
    for name in ("overview.png", "synoptic_report.pdf", "synoptic_report.html", "synoptic.json", "margin_report.pdf",
                 "margin_report.html", "regions.geojson", "tissue.geojson", "nuclei.geojson.gz", "nuclei.parquet",
                 "mitoses.geojson", "summary.json", "slide.ome.zarr"):
        if (d / name).exists():
            print(f"  {name}")
    print(f"Look at it      wsi-pipeline view {slide.path} --results {d}   (needs the [viewer] extra)")
    return 0
