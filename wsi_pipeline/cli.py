"""``wsi-pipeline`` command line: thin parse -> config -> call.

Each sub-command lives in its own module under :mod:`wsi_pipeline.commands` and defines

* ``NAME`` (the sub-command), ``HELP`` (one line),
* ``add_arguments(parser)`` and ``run(args) -> int``.

Modules import heavy dependencies (torch, napari) inside ``run`` so ``--help`` is fast.
User errors (:class:`tiling.errors.InputError`) print one line and exit non-zero.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys

from tiling.errors import InputError


def _command_modules():
    import wsi_pipeline.commands as pkg

    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"wsi_pipeline.commands.{info.name}")
        if hasattr(module, "NAME") and hasattr(module, "run"):
            yield module


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wsi-pipeline",
        description="Whole-slide dermatopathology pipeline (tiling, tissue, nuclei, mitoses, margins).",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module in _command_modules():
        p = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)]
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args._run(args) or 0)
    except InputError as exc:
        print(f"wsi-pipeline {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"wsi-pipeline {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
