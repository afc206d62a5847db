"""Orchestration: config, one-slide run, batch, annotations I/O, margins, reports, CLI."""

__version__ = "0.1.0"
