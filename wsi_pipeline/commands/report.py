"""``wsi-pipeline report SLIDE --results DIR [--diagnosis melanoma] [--lesion FILE]``: the synoptic draft.

Writes ``synoptic.json``, ``synoptic.geojson``, ``synoptic_report.pdf`` / ``.html`` and the
margin outputs into DIR. "No tumour found" is an answer (exit 0, no margin headline); bad
input (missing results, a lesion file without polygons, an unknown diagnosis) is one line
naming the file and the problem, exit non-zero, and nothing is written.
"""

from __future__ import annotations

from pathlib import Path

NAME = "report"
HELP = ("synoptic draft: Breslow thickness, ulceration, TILs, mitotic rate, margins and (for a stated melanoma) pT, "
        "in a one-page PDF/HTML")


def add_arguments(parser) -> None:
    parser.add_argument("slide", type=Path, help="the slide file (for the overview picture and its mpp)")
    parser.add_argument("--results", type=Path, required=True,
                        help="results folder of that slide (tissue.geojson; regions.geojson, nuclei.parquet, "
                             "summary.json, annotations.geojson when present)")
    parser.add_argument("--diagnosis", default=None,
                        help="the diagnosis the pathologist states (melanoma, melanoma in situ, naevus, basal cell "
                             "carcinoma, squamous cell carcinoma, other); pT is drafted for melanoma only")
    parser.add_argument("--lesion", type=Path, default=None,
                        help="GeoJSON with the lesion (features classified Tumor, or all its polygons)")
    parser.add_argument("--config", type=Path, default=None, help="synoptic YAML (default: configs/synoptic.yaml)")
    parser.add_argument("--margins-config", type=Path, default=None,
                        help="margins YAML (default: configs/margins.yaml)")
    parser.add_argument("--specimen-id", default=None, help="specimen id on the report (default: summary.json's)")
    parser.add_argument("--mpp", type=float, default=None, help="micrometres per pixel when the slide records none")


def run(args) -> int:
    from tiling.errors import InputError
    from tiling.open import open_slide
    from wsi_pipeline.report.config import load_synoptic_config
    from wsi_pipeline.report.margins.config import load_margin_config
    from wsi_pipeline.report.staging import check_diagnosis
    from wsi_pipeline.report.synoptic import write_synoptic

    check_diagnosis(args.diagnosis)  # before any work
    if not args.results.is_dir():
        raise InputError(args.results, "results folder not found")
    if not args.slide.exists():
        raise InputError(args.slide, "no such file")
    config = load_synoptic_config(args.config)
    margin_config = load_margin_config(args.margins_config)
    with open_slide(args.slide, mpp=args.mpp) as slide:
        slide.mpp  # a missing mpp fails here with one line
        out = write_synoptic(slide, args.results, diagnosis=args.diagnosis, lesion_file=args.lesion, config=config,
                             margin_config=margin_config, specimen_id=args.specimen_id)
    print(out["headline"])
    for f in out["findings"]:
        note = f" ({f['reason']})" if f["reason"] else ""
        source = f" [{f['source']}]" if f["source"] else ""
        print(f"  {f['name']}: {f['display']}{source}{note}")
    print(f"wrote {', '.join(str(args.results / n) for n in out['files'])}")
    return 0
