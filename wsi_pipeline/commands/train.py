"""``wsi-pipeline train TASK``: train a model from annotated images.

Tasks live in :data:`TASKS` (name -> module path); each task module defines
``add_arguments(parser)``, ``run(args) -> int`` and ``HELP``. Add a task (e.g. ``mitosis``
in ``wsi_pipeline/training/mitosis.py``) with one line there.
"""

from __future__ import annotations

import importlib

NAME = "train"
HELP = "Train a model: 'train nuclei' (StarDist, from images + label images or GeoJSON/XML polygons)."

#: task -> module defining HELP, add_arguments(parser), run(args)
TASKS = {
    "nuclei": "wsi_pipeline.training.nuclei_cli",
    "mitosis": "wsi_pipeline.training.mitosis_cli",
    "tissue": "wsi_pipeline.training.tissue_cli",
    "cells": "wsi_pipeline.training.cells_cli",
}


def add_arguments(parser) -> None:
    sub = parser.add_subparsers(dest="task", metavar="TASK")
    sub.required = True
    for task, module_name in TASKS.items():
        try:
            module = importlib.import_module(module_name)
        except ImportError:  # a task whose module is not there yet is simply not offered
            continue
        p = sub.add_parser(task, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_task_run=module.run)


def run(args) -> int:
    return int(args._task_run(args) or 0)
