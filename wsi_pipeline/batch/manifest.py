"""Which slides a batch runs: a folder of slides or a CSV manifest.

Manifest columns: ``path`` (required; relative paths are relative to the manifest) and
the optional metadata ``specimen_id``, ``body_site``, ``specimen_type``,
``fitzpatrick_type``, ``diagnosis``, ``mpp``. Other columns are refused: a free-text column
is where patient names end up, and metadata is copied into outputs. ``diagnosis`` (the one
the pathologist states; the synoptic draft gives pT for ``melanoma`` only) takes only the
values of :data:`wsi_pipeline.report.staging.DIAGNOSES` (or is left empty).
"""

from __future__ import annotations

import csv
import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

from tiling.errors import InputError

SLIDE_SUFFIXES = {
    ".svs", ".ndpi", ".mrxs", ".tif", ".tiff", ".vms", ".vmu", ".scn", ".bif", ".svslide",
    ".dcm", ".png", ".jpg", ".jpeg",
}
METADATA_COLUMNS = ("specimen_id", "body_site", "specimen_type", "fitzpatrick_type", "diagnosis")
ALLOWED_COLUMNS = {"path", "mpp", *METADATA_COLUMNS}


@dataclass(frozen=True)
class SlideJob:
    """One slide to process; everything a worker needs, nothing more."""

    path: Path
    slide_id: str
    mpp: float | None = None
    metadata: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"path": str(self.path), "slide_id": self.slide_id, "mpp": self.mpp, "metadata": dict(self.metadata)}


def safe_id(text: str) -> str:
    """A folder-safe id from a file stem."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "slide"


def deidentified_id(path: Path) -> str:
    """An id that does not reveal the file name: a hash of the path and size."""
    h = hashlib.sha256(f"{path.resolve()}|{path.stat().st_size if path.exists() else 0}".encode())
    return f"slide-{h.hexdigest()[:12]}"


def _make_job(path: Path, *, mpp: float | None, metadata: dict[str, str], deidentify: bool) -> SlideJob:
    slide_id = deidentified_id(path) if deidentify else safe_id(path.stem)
    return SlideJob(path=path, slide_id=slide_id, mpp=mpp, metadata=metadata)


def jobs_from_folder(folder: Path, *, deidentify: bool = False) -> list[SlideJob]:
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in SLIDE_SUFFIXES)
    dicom_dirs = sorted(p for p in folder.iterdir() if p.is_dir() and any(p.glob("*.dcm")))
    jobs = [_make_job(p, mpp=None, metadata={}, deidentify=deidentify) for p in [*files, *dicom_dirs]]
    if not jobs:
        raise InputError(folder, "no slide files found (looked for " + ", ".join(sorted(SLIDE_SUFFIXES)) + ")")
    return jobs


def jobs_from_manifest(manifest: Path, *, deidentify: bool = False) -> list[SlideJob]:
    try:
        with open(manifest, newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.DictReader(fh))
            columns = set(rows[0].keys()) if rows else set()
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(manifest, f"cannot read manifest ({exc})") from None
    if not rows:
        raise InputError(manifest, "manifest has no rows")
    if "path" not in columns:
        raise InputError(manifest, "manifest needs a 'path' column")
    unknown = sorted(c for c in columns if c and c not in ALLOWED_COLUMNS)
    if unknown:
        raise InputError(manifest, f"unknown manifest column(s) {', '.join(unknown)}; allowed: {', '.join(sorted(ALLOWED_COLUMNS))}")
    jobs, seen = [], set()
    for line, row in enumerate(rows, start=2):
        raw = (row.get("path") or "").strip()
        if not raw:
            raise InputError(manifest, f"line {line}: empty path")
        path = Path(raw) if Path(raw).is_absolute() else manifest.parent / raw
        mpp_text = (row.get("mpp") or "").strip()
        try:
            mpp = float(mpp_text) if mpp_text else None
        except ValueError:
            raise InputError(manifest, f"line {line}: mpp {mpp_text!r} is not a number") from None
        if mpp is not None and mpp <= 0:
            raise InputError(manifest, f"line {line}: mpp must be positive")
        meta = {k: row[k].strip() for k in METADATA_COLUMNS if row.get(k) and row[k].strip()}
        if "diagnosis" in meta:
            meta["diagnosis"] = _diagnosis(manifest, line, meta["diagnosis"])
        job = _make_job(path, mpp=mpp, metadata=meta, deidentify=deidentify)
        if meta.get("specimen_id") and not deidentify:
            job = SlideJob(path, safe_id(meta["specimen_id"]), mpp, meta)
        if job.slide_id in seen:
            raise InputError(manifest, f"line {line}: slide id {job.slide_id!r} appears twice")
        seen.add(job.slide_id)
        jobs.append(job)
    return jobs


def _diagnosis(manifest: Path, line: int, value: str) -> str:
    from wsi_pipeline.report.staging import check_diagnosis

    try:
        return check_diagnosis(value)
    except InputError as exc:
        raise InputError(manifest, f"line {line}: {exc.problem}") from None


def read_jobs(source: str | Path, *, deidentify: bool = False) -> list[SlideJob]:
    """Jobs from a folder of slides or a ``.csv`` manifest."""
    source = Path(source)
    if not source.exists():
        raise InputError(source, "no such file or folder")
    if source.is_dir():
        return jobs_from_folder(source, deidentify=deidentify)
    if source.suffix.lower() == ".csv":
        return jobs_from_manifest(source, deidentify=deidentify)
    raise InputError(source, "expected a folder of slides or a .csv manifest")
