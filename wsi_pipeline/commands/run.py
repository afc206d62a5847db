"""``wsi-pipeline run SLIDE --out DIR``: one slide (or a plain image with --mpp)."""

NAME = "run"
HELP = "run tissue -> nuclei -> cell types -> regions -> mitoses -> synoptic draft on one slide or image into OUT/<slide-id>/"


def add_arguments(p):
    from wsi_pipeline.commands._options import add_pipeline_options

    p.add_argument("slide", help="slide file (SVS, NDPI, MRXS, TIFF, DICOM folder) or a plain image with --mpp")
    p.add_argument("--mpp", type=float, default=None, help="microns per pixel, overriding (or supplying) the file's")
    p.add_argument("--diagnosis", default=None,
                   help="the diagnosis the pathologist states (e.g. melanoma): the synoptic draft then gives pT; "
                        "the software does not diagnose")
    add_pipeline_options(p)


def run(args) -> int:
    from pathlib import Path

    from tqdm import tqdm

    from tiling.errors import InputError
    from wsi_pipeline.batch.manifest import deidentified_id, safe_id
    from wsi_pipeline.batch.manifest import SlideJob
    from wsi_pipeline.cluster import make_client
    from wsi_pipeline.commands._options import config_from_args
    from tiling import open_slide
    from wsi_pipeline.run import counts_line, run_slide

    cfg = config_from_args(args)
    path = Path(args.slide)
    if not path.exists():
        raise InputError(path, "no such file")
    if args.mpp is not None and args.mpp <= 0:
        raise InputError(path, f"--mpp must be positive, got {args.mpp}")
    from wsi_pipeline.report.staging import check_diagnosis

    diagnosis = check_diagnosis(args.diagnosis)  # an unknown one fails before any work
    with open_slide(path, mpp=args.mpp) as slide:  # an unreadable file fails before a cluster starts
        slide.mpp
    slide_id = deidentified_id(path) if cfg.output.deidentify else safe_id(path.stem)
    job = SlideJob(path=path, slide_id=slide_id, mpp=args.mpp, metadata={"diagnosis": diagnosis} if diagnosis else {})
    with make_client(cfg.cluster, scheduler_address=args.scheduler) as client, \
            tqdm(total=0, unit="tile", leave=False) as bar:
        result = run_slide(job, Path(args.out), cfg, client=client, progress=bar)
    print(f"{slide_id}: {counts_line(result.counts)}")
    for note in result.notes:
        print(f"  {note}")
    print(f"results in {result.out_dir}")
    print(f"look at them: wsi-pipeline view {path} --results {result.out_dir}   (needs the [viewer] extra)")
    return 0
