"""``wsi-pipeline evaluate PRED GT``: nucleus segmentation scores against ground truth.

PRED and GT are two files or two folders (files matched by name stem). Formats: GeoJSON
(ours, QuPath's), MoNuSeg/Aperio XML, label images (TIFF/PNG). Prints a table; ``--json``
writes every number.
"""

from __future__ import annotations

NAME = "evaluate"
HELP = "Score nucleus predictions against ground truth: F1 at IoU thresholds, PQ (DQ, SQ), AJI, pixel Dice."


def add_arguments(parser) -> None:
    parser.add_argument("pred", help="prediction: GeoJSON(.gz), MoNuSeg XML or label image, or a folder of them")
    parser.add_argument("gt", help="ground truth, same kinds (a folder is matched to PRED's folder by file stem)")
    parser.add_argument("--iou", type=float, nargs="+", default=[0.5], metavar="T",
                        help="IoU thresholds for matching (default 0.5); PQ/DQ/SQ are given at each")
    parser.add_argument("--json", default=None, metavar="OUT", help="also write all scores to this JSON file")


def run(args) -> int:
    from wsi_pipeline.evaluation.report import evaluate_paths, format_table, write_json_atomic

    result = evaluate_paths(args.pred, args.gt, iou_thresholds=args.iou)
    if args.json:
        write_json_atomic(args.json, result)
    print(format_table(result))
    return 0
