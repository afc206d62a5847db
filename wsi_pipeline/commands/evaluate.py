"""``wsi-pipeline evaluate PRED GT``: nucleus segmentation scores against ground truth.

PRED and GT are two files or two folders (files matched by name stem). Formats: GeoJSON
(ours, QuPath's), MoNuSeg/Aperio XML, label images (TIFF/PNG). Prints a table; ``--json``
writes every number. ``--points --radius R``: point detections (e.g. mitoses) matched one
to one within R px: precision, recall, F1. ``MODEL CROPS --points --crops --mpp X``: the
mitosis model MODEL (folder, ``default`` or ``heuristic``) on a folder of crops centred on
mitotic figures (a lab's own scanner): recall within R px of the centre.
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
    parser.add_argument("--crops", action="store_true",
                        help="with --points: GT is a folder of image crops each centred on a mitotic figure (class "
                             "sub-folders allowed) and PRED the mitosis model to check on them (a model folder, "
                             "'default' or 'heuristic'): recall within --radius of the centre")
    parser.add_argument("--mpp", type=float, default=None, help="with --crops: µm per pixel of the crops (required)")
    parser.add_argument("--device", default="cpu", help="with --crops: auto | cpu | cuda | mps (default cpu)")
    parser.add_argument("--regions", action="store_true",
                        help="score tissue regions (Epidermis/Dermis/Tumor/Inflammation/Other areas): Dice and IoU per class")
    parser.add_argument("--cells", action="store_true",
                        help="score cell types: nuclei matched at IoU >= --iou (first value), then the confusion "
                             "matrix, per-class F1 and macro-F1 (truth class from nucleusType or classification)")


def run(args) -> int:
    from wsi_pipeline.evaluation.report import evaluate_paths, format_table, write_json_atomic

    if args.cells:
        from wsi_pipeline.evaluation.celltypes import evaluate_cell_paths, format_cells_table

        result = evaluate_cell_paths(args.pred, args.gt, iou=args.iou[0])
        if args.json:
            write_json_atomic(args.json, result)
        print(format_cells_table(result))
        return 0
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
        if args.crops:
            return _figure_crops(args)
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


def _figure_crops(args) -> int:
    """``--points --crops``: run the mitosis model PRED on the crops in GT."""
    from detectors.mitosis.detector import MitosisDetector
    from tiling.errors import InputError
    from wsi_pipeline.evaluation.points import evaluate_figure_crops, format_crops_table
    from wsi_pipeline.evaluation.report import write_json_atomic

    if args.mpp is None or args.mpp <= 0:
        raise InputError(None, "--crops needs --mpp, the µm per pixel of the crops (e.g. 0.25 at 40x)")
    model = None if args.pred == "heuristic" else args.pred
    detector = MitosisDetector(model=model, device=args.device)
    result = evaluate_figure_crops(args.gt, detector=detector, mpp=args.mpp, radius_um=args.radius * args.mpp)
    if args.json:
        write_json_atomic(args.json, result)
    print(format_crops_table(result))
    return 0
