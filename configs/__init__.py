"""Packaged YAML configurations (``default.yaml``, ``cpu-fast.yaml``, ``gpu.yaml``)."""

from pathlib import Path

CONFIG_DIR = Path(__file__).parent
