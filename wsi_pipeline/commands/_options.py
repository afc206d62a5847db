"""Options shared by ``run`` and ``batch``."""

from __future__ import annotations

import argparse


def add_pipeline_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default=None, help="YAML config (a path, or default | cpu-fast | gpu)")
    p.add_argument("--out", required=True, help="output folder; each slide gets OUT/<slide-id>/")
    p.add_argument("--device", default=None, help="auto | cpu | cuda | cuda:N | mps (overrides the config)")
    p.add_argument("--nuclei-model", default=None, help="weightfree | weightfree-fast | auto | stardist-he | stardist-monuseg (opt-in, CC BY-NC-SA 4.0) | a local StarDist model folder")
    p.add_argument("--cell-model", default=None, help="model folder from `wsi-pipeline train cells` (default: weight-free rules)")
    p.add_argument("--tissue-model", default=None, help="model folder from `wsi-pipeline train tissue` (default: weight-free region map)")
    p.add_argument("--mitosis-model", default=None, help="model folder from `wsi-pipeline train mitosis`")
    p.add_argument("--workers", type=int, default=None, help="Dask workers of the embedded LocalCluster")
    p.add_argument("--scheduler", default=None, help="address of an existing Dask scheduler, e.g. tcp://host:8786")
    p.add_argument("--deidentify", action="store_true", help="name outputs by a slide id, not by the file name")
    p.add_argument("--ome-zarr", action="store_true", help="also write slide.ome.zarr")


def config_from_args(args: argparse.Namespace):
    from wsi_pipeline.config import load_config

    cfg = load_config(args.config)
    cfg = cfg.updated(**{
        "device": args.device,
        "nuclei.model": args.nuclei_model,
        "mitosis.model": args.mitosis_model,
        "cells.model": args.cell_model,
        "regions.model": args.tissue_model,
        "cluster.workers": args.workers,
        "output.deidentify": True if args.deidentify else None,
        "output.ome_zarr": True if args.ome_zarr else None,
    })
    if cfg.nuclei.enabled:
        from wsi_pipeline.detection import check_nuclei_model

        check_nuclei_model(cfg.nuclei.model)  # a missing, corrupt or mismatched folder fails before any slide
    return cfg
