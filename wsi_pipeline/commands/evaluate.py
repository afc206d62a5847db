"""``wsi-pipeline evaluate PRED GT``: nucleus segmentation scores against ground truth.

PRED and GT are two files or two folders (files matched by name stem). Formats: GeoJSON
(ours, QuPath's), MoNuSeg/Aperio XML, label images (TIFF/PNG). Prints a table; ``--json``
writes every number. ``--points --radius R``: point detections (e.g. mitoses) matched one
to one within R px: precision, recall, F1.
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
    parser.add_argument("--points", action="store_true",
                        help="score points (e.g. mitoses; polygons count by centroid) instead of nucleus outlines")
    parser.add_argument("--radius", type=float, default=30.0,
                        help="with --points: matching radius in pixels (default 30, MIDOG's at 0.25 µm/px)")
    parser.add_argument("--regions", action="store_true",
                        help="score tissue regions (Epidermis/Dermis/Tumor/Inflammation/Other areas): Dice and IoU per class")


def run(args) -> int:
    from wsi_pipeline.evaluation.report import evaluate_paths, format_table, write_json_atomic

    if args.regions:
        from wsi_pipeline.evaluation.regions import evaluate_region_paths, format_regions_table

        result = evaluate_region_paths(args.pred, args.gt)
        if args.json:
            write_json_atomic(args.json, result)
        print(format_regions_table(result))
        return 0
    if args.points:
        from tiling.errors import InputError
        from wsi_pipeline.evaluation.points import evaluate_point_paths, format_points_table

        if args.radius <= 0:
            raise InputError(None, f"--radius must be positive, got {args.radius}")
        result = evaluate_point_paths(args.pred, args.gt, radius=args.radius)
        if args.json:
            write_json_atomic(args.json, result)
        print(format_points_table(result))
        return 0
    result = evaluate_paths(args.pred, args.gt, iou_thresholds=args.iou)
    if args.json:
        write_json_atomic(args.json, result)
    print(format_table(result))
    return 0
