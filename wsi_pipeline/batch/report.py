"""The morning report: ``batch_report.html`` and ``batch_report.csv``.

Rewritten (atomically) after every slide, so a batch that died overnight still leaves a
report of what it finished. Mitoses and the mitotic rate read "not assessed" unless a
validated mitosis model gave them; ``mitosis_candidates`` counts the detections either way.
"""

from __future__ import annotations

import base64
import csv
import html
import io
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from wsi_pipeline.atomic import atomic_path, write_text_atomic
from wsi_pipeline.reasons import NOT_ASSESSED, not_he_slide, rate_reason

SYNOPTIC_COLUMNS = ("lesion", "breslow_mm", "ulceration", "til_grade", "tumour_mitoses_per_mm2", "pT",
                    "closest_margin_mm", "closest_margin")
COLUMNS = ("slide_id", "status", "seconds", "tissue_mm2", "nuclei", "mitosis_candidates", "mitoses", "mitoses_per_mm2",
           *SYNOPTIC_COLUMNS, "error")


@dataclass
class SlideRow:
    slide_id: str
    status: str  # done | skipped (already complete) | failed
    seconds: float = 0.0
    counts: dict = field(default_factory=dict)
    error: str = ""
    thumbnail: Path | None = None
    #: the input file, for the operator's terminal only: never written to an output (with
    #: --deidentify the file name is what the slide id hides)
    source: str = ""

    def as_csv(self) -> dict:
        c = self.counts
        return {
            "slide_id": self.slide_id,
            "status": self.status,
            "seconds": f"{self.seconds:.1f}",
            "tissue_mm2": _fmt(c.get("tissue_mm2")),
            "nuclei": _fmt(c.get("nuclei")),
            "mitosis_candidates": _fmt(c.get("mitosis_candidates")),
            "mitoses": _assessed(c, c.get("mitoses")),
            "mitoses_per_mm2": _assessed(c, c.get("mitoses_per_mm2")),
            **synoptic_columns(self),
            "error": self.error,
        }


def synoptic_columns(row: SlideRow) -> dict[str, str]:
    """The synoptic draft's values (``counts["synoptic"]``, else ``synoptic.json``'s summary
    beside the thumbnail); '' when no draft was written, "not assessed" for missing values."""
    s = row.counts.get("synoptic")
    if not isinstance(s, dict) and row.thumbnail is not None and (row.thumbnail.parent / "synoptic.json").is_file():
        import json

        try:
            s = json.loads((row.thumbnail.parent / "synoptic.json").read_text()).get("summary")
        except (OSError, ValueError):
            s = None
    if not isinstance(s, dict):
        return dict.fromkeys(SYNOPTIC_COLUMNS, "")
    found = s.get("lesion_source") not in (None, "none")

    def value(v, fmt=str):
        return (fmt(v) if v is not None else NOT_ASSESSED) if found else ""

    return {
        "lesion": s.get("lesion_source") if found else str(s.get("lesion") or "no tumour found"),
        "breslow_mm": value(s.get("breslow_mm"), lambda v: ("at least " if s.get("breslow_at_least") else "") + f"{v:.1f}"),
        "ulceration": value(s.get("ulceration"), lambda v: "present" if v else "absent"),
        "til_grade": value(s.get("til_grade")),
        "tumour_mitoses_per_mm2": value(s.get("mitoses_per_mm2"), lambda v: f"{v:.0f}"),
        "pT": value(s.get("pT")) if s.get("pT") or not found or s.get("breslow_at_least") else "",
        "closest_margin_mm": value(s.get("closest_margin_mm"), lambda v: f"{v:.2f}"),
        "closest_margin": s.get("closest_margin") or "",
    }


def _assessed(counts: dict, value) -> str:
    """``value`` formatted when a validated model gave it; "not assessed" when the mitosis
    stage ran without one (or found no hotspot); '' when it did not run."""
    ran = "mitoses_validated" in counts or "mitoses_per_mm2" in counts
    if not ran:
        return ""
    if counts.get("mitoses_validated") is not True or value is None:
        return NOT_ASSESSED
    return _fmt(value)


def _fmt(v) -> str:
    if v is None:
        return ""
    return f"{v:.2f}" if isinstance(v, float) else str(v)


def _thumb_data_uri(path: Path | None, size: int = 160) -> str:
    if path is None or not path.is_file():
        return ""
    try:
        with Image.open(path) as im:
            im.thumbnail((size, size))
            buf = io.BytesIO()
            im.convert("RGB").save(buf, "PNG")
    except OSError:
        return ""
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:middle}
th{background:#f3f3f3}.done{color:#17632a}.skipped{color:#555}.failed{color:#b00020;font-weight:bold}
.err{font-family:monospace;font-size:90%;max-width:40em}
"""


def _failed_list(rows: list[SlideRow]) -> list[str]:
    """The failed slides and why, above the table: the first thing to read in the morning
    (the error column is the table's last)."""
    failed = [r for r in rows if r.status == "failed"]
    if not failed:
        return []
    items = "".join(f"<li><b>{html.escape(r.slide_id)}</b>: <span class='err'>{html.escape(r.error)}</span></li>"
                    for r in failed)
    return [f"<h2 class='failed'>Failed ({len(failed)})</h2><ul>{items}</ul>"]


def write_reports(out_dir: Path, rows: list[SlideRow], *, title: str = "Batch report", started: str = "") -> None:
    """Write ``batch_report.csv`` and ``batch_report.html`` into ``out_dir``."""
    with atomic_path(out_dir / "batch_report.csv") as tmp:
        with open(tmp, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=COLUMNS)
            w.writeheader()
            for r in rows:
                w.writerow(r.as_csv())
    n = {s: sum(r.status == s for r in rows) for s in ("done", "skipped", "failed")}
    lines = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p>{len(rows)} slide(s): {n['done']} done, {n['skipped']} already complete, "
        f"<span class='failed'>{n['failed']} failed</span>. {html.escape(started)}</p>",
        *_failed_list(rows),
        "<table><tr><th>thumbnail</th><th>slide</th><th>status</th><th>time (s)</th><th>tissue (mm²)</th>"
        "<th>nuclei</th><th>mitosis candidates</th><th>mitoses</th><th>mitoses/mm² (slide hotspot)</th>"
        "<th>lesion</th><th>Breslow (mm)</th><th>ulceration</th><th>TILs</th><th>mitotic rate (tumour, /mm²)</th><th>pT</th><th>closest margin (mm)</th>"
        "<th>error</th></tr>",
    ]
    for r in rows:
        c = r.as_csv()
        uri = _thumb_data_uri(r.thumbnail)
        img = f"<img src='{uri}' alt='overview'>" if uri else ""
        lines.append(
            f"<tr><td>{img}</td><td>{html.escape(r.slide_id)}</td><td class='{r.status}'>{r.status}</td>"
            f"<td>{c['seconds']}</td><td>{c['tissue_mm2']}</td><td>{c['nuclei']}</td><td>{c['mitosis_candidates']}</td>"
            f"<td>{c['mitoses']}</td><td title='{html.escape(rate_reason(r.counts), quote=True)}'>"
            f"{html.escape(c['mitoses_per_mm2'])}</td>"
            + "".join(f"<td>{html.escape(c[k])}</td>" for k in SYNOPTIC_COLUMNS[:6])
            + f"<td title='{html.escape(c['closest_margin'], quote=True)}'>{html.escape(c['closest_margin_mm'])}</td>"
            f"<td class='err'>{html.escape(r.error)}</td></tr>"
        )
    lines.append("</table>")
    not_he = [r for r in rows if not_he_slide(r.counts)]
    if not_he:
        lines.append("<h2>Not H&amp;E: tissue and nuclei only</h2><ul>")
        lines += [f"<li>{html.escape(r.slide_id)}: {html.escape(not_he_slide(r.counts))}</li>" for r in not_he]
        lines.append("</ul>")
    reasons = [(r.slide_id, rate_reason(r.counts)) for r in rows if rate_reason(r.counts)]
    if reasons:
        lines.append("<h2>Mitotic rate not given</h2><ul>")
        lines += [f"<li>{html.escape(sid)}: {html.escape(why)}</li>" for sid, why in reasons]
        lines.append("</ul>")
    lines.append("</body></html>")
    write_text_atomic(out_dir / "batch_report.html", "\n".join(lines))
