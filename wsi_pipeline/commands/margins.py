"""``wsi-pipeline margins SLIDE --results DIR``: tumour-to-edge clearance report.

Writes ``margins.json``, ``margins.geojson``, ``margin_report.html`` and ``margin_report.pdf``
into DIR. The lesion is ``--lesion``, else a drawn ``Tumor`` (``annotations.geojson``), else the
tissue map's ``Tumor`` (``regions.geojson``); uninked edges along the map's epidermis are the
epidermal surface, not margins. When no lesion is found the outputs are still written with
status "no lesion found", a one-line notice goes to stderr and the exit code is 0: "no
lesion" is an answer, not an error.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tiling.errors import InputError

NAME = "margins"
HELP = "surgical margins: tumour-to-edge clearance in mm by ink colour, with a one-page report"


def add_arguments(parser) -> None:
    parser.add_argument("slide", type=Path, help="the slide file (for the overview picture and its mpp)")
    parser.add_argument("--results", type=Path, required=True,
                        help="results folder of that slide (tissue.geojson; annotations.geojson and/or regions.geojson)")
    parser.add_argument("--lesion", type=Path, default=None,
                        help="GeoJSON with the lesion (features classified Tumor, or all its polygons); QuPath exports work")
    parser.add_argument("--config", type=Path, default=None, help="margins YAML (default: configs/margins.yaml)")
    parser.add_argument("--specimen-id", default=None,
                        help="specimen id printed on the report (default: summary.json's specimen_id)")
    parser.add_argument("--mpp", type=float, default=None, help="micrometres per pixel when the slide records none")


def run(args) -> int:
    from tiling.open import open_slide
    from wsi_pipeline.report.margins import assess_margins, load_margin_config
    from wsi_pipeline.report.margins.compute import NO_LESION
    from wsi_pipeline.report.margins.report import headline, no_lesion_text, write_margin_outputs

    results = args.results
    if not results.is_dir():
        raise InputError(results, "results folder not found")
    config = load_margin_config(args.config)
    summary = _summary(results)
    slide = open_slide(args.slide, mpp=args.mpp)
    if slide.mpp_or_none is None and _summary_mpp(summary) is not None:  # --mpp > file > summary.json
        slide.close()
        slide = open_slide(args.slide, mpp=_summary_mpp(summary))
    with slide:
        mpp = slide.mpp  # raises the one-line MissingMppError
        assessment = assess_margins(results, mpp=mpp, config=config, lesion_file=args.lesion, frame_px=slide.bounds)
        specimen = args.specimen_id or summary.get("specimen_id")
        paths = write_margin_outputs(results, assessment, slide=slide, mpp=mpp, specimen_id=specimen)
    if assessment.status == NO_LESION:
        print(f"wsi-pipeline margins: notice: {results}: no lesion found: {no_lesion_text(assessment.lesion)}",
              file=sys.stderr)
    else:
        print(headline(assessment))
    print(f"wrote {', '.join(str(p) for p in paths.values())}")
    return 0


def _summary(results: Path) -> dict:
    path = results / "summary.json"
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise InputError(path, f"not valid JSON ({exc})") from None
    return data if isinstance(data, dict) else {}


def _summary_mpp(summary: dict) -> tuple[float, float] | None:
    mpp = (summary.get("slide") or {}).get("mpp")
    if isinstance(mpp, (list, tuple)) and len(mpp) == 2 and all(isinstance(v, (int, float)) and v > 0 for v in mpp):
        return (float(mpp[0]), float(mpp[1]))
    return None
