"""``wsi-pipeline anonymize SLIDE --out COPY``: a de-identified copy of an Aperio SVS."""

from __future__ import annotations

NAME = "anonymize"
HELP = "Write a copy of an SVS without label and macro images and without patient properties."


def add_arguments(parser) -> None:
    parser.add_argument("slide", help="slide file (Aperio .svs; other formats are not supported yet)")
    parser.add_argument("--out", required=True, help="the de-identified copy to write")
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists")


def run(args) -> int:
    from wsi_pipeline.anonymize import anonymize_slide

    report = anonymize_slide(args.slide, args.out, overwrite=args.overwrite)
    images = ", ".join(report.removed_images) or "none"
    keys = ", ".join(report.removed_properties) or "none"
    print(f"{report.output}")
    print(f"  removed images      {images}")
    print(f"  removed properties  {keys}")
    return 0
