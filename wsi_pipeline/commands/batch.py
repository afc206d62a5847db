"""``wsi-pipeline batch INPUT --out DIR``: many slides overnight, resumable."""

NAME = "batch"
HELP = "run every slide of a folder or CSV manifest; resumes, isolates failures, writes batch_report.html"


def add_arguments(p):
    from wsi_pipeline.commands._options import add_pipeline_options

    p.add_argument("input", help="folder of slides, or a CSV manifest (path, specimen_id, body_site, "
                                 "specimen_type, fitzpatrick_type, diagnosis, mpp; the stated diagnosis, e.g. melanoma, "
                                 "gives the synoptic draft its pT)")
    add_pipeline_options(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bars (for logs)")


def run(args) -> int:
    from wsi_pipeline.reasons import not_he_slide
    from wsi_pipeline.batch.runner import run_batch
    from wsi_pipeline.commands._options import config_from_args

    cfg = config_from_args(args)
    result = run_batch(args.input, args.out, cfg, scheduler=args.scheduler, deidentify=args.deidentify,
                       show_progress=not args.no_progress)
    n = {s: sum(r.status == s for r in result.rows) for s in ("done", "skipped", "failed")}
    not_he = sum(bool(not_he_slide(r.counts)) for r in result.rows)
    print(f"{len(result.rows)} slides: {n['done']} done, {n['skipped']} already complete, {n['failed']} failed"
          + (f"; {not_he} not H&E (tissue and nuclei only)" if not_he else ""))
    for r in result.failed:  # the file is named here, on the terminal, even when outputs are de-identified
        print(f"  FAILED {r.slide_id} ({r.source}): {r.error}" if r.source and r.source not in r.error
              else f"  FAILED {r.slide_id}: {r.error}")
    print(f"report: {result.out_dir / 'batch_report.html'}")
    return 1 if result.failed else 0
