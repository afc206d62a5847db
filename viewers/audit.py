"""Audit log of review edits: one JSON object per line (JSON Lines), append-only.

Each line: ``{"who", "when" (ISO 8601 UTC), "what" (add | delete | move | reclassify |
review), "layer", "file", "id", "before", "after"}``; ``before``/``after`` hold the changed
part (a whole GeoJSON feature for add/delete, ``null`` on the side where it does not exist).
Lines of one save are written with a single ``write`` and flushed to disk, so a crash loses
at most that save's lines, never leaves half a line in the middle of the log.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from viewers.store import Change, now_iso


def audit_lines(changes: Iterable[Change], *, who: str, layer: str, file: str | None) -> list[dict]:
    """The log records for ``changes`` (one per change), stamped with ``who`` and now."""
    when = now_iso()
    return [{"who": who, "when": when, "what": c.what, "layer": layer, "file": file, "id": c.id,
             "before": c.before, "after": c.after} for c in changes]


def append_audit(path: str | os.PathLike, records: list[dict]) -> int:
    """Append ``records`` to the JSON-lines file ``path`` (created if missing); returns the count."""
    if not records:
        return 0
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    blob = "".join(json.dumps(r, ensure_ascii=False, allow_nan=False, default=_default) + "\n" for r in records)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(blob)
        fh.flush()
        os.fsync(fh.fileno())
    return len(records)


def read_audit(path: str | os.PathLike) -> list[dict]:
    """All records of an audit log (``[]`` when it does not exist)."""
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _default(obj):
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, tuple):
        return list(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
