"""Done markers: a slide's outputs are complete when ``.done.json`` matches input and config."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from wsi_pipeline.atomic import write_text_atomic

MARKER = ".done.json"


def file_checksum(path: Path, *, chunk: int = 1 << 22) -> str:
    """sha256 of a file (or of every file in a DICOM folder, in name order)."""
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        with open(f, "rb") as fh:
            while block := fh.read(chunk):
                h.update(block)
    return h.hexdigest()


def write_marker(slide_dir: Path, *, checksum: str, config_hash: str) -> None:
    write_text_atomic(slide_dir / MARKER, json.dumps({"input_sha256": checksum, "config_hash": config_hash}))


def is_complete(slide_dir: Path, *, checksum: str, config_hash: str) -> bool:
    marker = slide_dir / MARKER
    try:
        data = json.loads(marker.read_text())
    except (OSError, ValueError):
        return False
    return data.get("input_sha256") == checksum and data.get("config_hash") == config_hash
