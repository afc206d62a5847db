"""Margin outputs: ``margins.json``, ``margins.geojson``, ``margin_report.html`` and ``.pdf``.

The report is one A4 page a surgeon can read: specimen id, the headline (closest margin and
its status), the overview picture, the table of margins, the clearance profile, the method
in two sentences and the caveat. No patient data: the specimen id is the one given (or from
``summary.json``), never the file name; no label/macro image, no slide properties.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import io
import json
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # noqa: E402  (file output only; never a window)
from matplotlib import colors as mcolors  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from wsi_pipeline.report.margins._io import GeoFeature, atomic_path, write_features, write_text_atomic  # noqa: E402
from wsi_pipeline.report.margins._units import to_px  # noqa: E402
from wsi_pipeline.report.margins.config import SCAN_BORDER, SURFACE, UNINKED  # noqa: E402
from wsi_pipeline.report.margins.compute import (  # noqa: E402
    CLOSE,
    CLEAR,
    INVOLVED,
    NO_LESION,
    MarginAssessment,
    closest_lines,
    format_mm,
)
from wsi_pipeline.report.margins.picture import Thumbnail, draw_overview, draw_profile, ink_colour, read_thumbnail  # noqa: E402

CAVEAT = "Computer-assisted estimate, to be confirmed by the pathologist."
PLANE = "Distances are measured in the plane of this section only."
STATUS_COLOURS = {INVOLVED: "#fecaca", CLOSE: "#fde68a", CLEAR: "#bbf7d0"}
OUTPUTS = ("margins.json", "margins.geojson", "margin_report.html", "margin_report.pdf")


def headline(assessment: MarginAssessment) -> str:
    """One line: the answer to the surgeon's question."""
    if assessment.status == NO_LESION:
        return no_lesion_text(assessment.lesion)
    m = assessment.closest
    if m is None:
        return "Tumour found, but no margin could be measured (no inked or uninked edge beside it)."
    where = m.name if m.colour in (UNINKED, SURFACE) else f"{m.colour} ink ({m.name})"
    if m.status == INVOLVED:
        return f"Tumour reaches the edge: {where}. INVOLVED."
    return f"Closest margin: {format_mm(m.clearance_mm)} to {where}. {m.status.upper()}."


def no_lesion_text(lesion) -> str:
    """The headline when there is no lesion: found none (a map looked) or had none to look with."""
    if any(s.startswith("regions.geojson") for s in lesion.searched):
        return "No tumour found (the tissue map holds no Tumor region): margins not measured."
    return ("No tumour outline: no Tumor annotation and no tissue map (regions.geojson); margins not measured. "
            "Draw a Tumor annotation or pass --lesion FILE.")


def surface_text(assessment: MarginAssessment) -> str:
    """How the epidermal surface was told from the margins (the headline names an inked margin
    whenever one is measured)."""
    if assessment.surface_known:
        return (f"uninked edges along the epidermis ({assessment.surface_from}) are the epidermal surface, "
                "not a margin" if not any(m.colour == SURFACE for m in assessment.margins)
                else "the epidermal surface is counted as a margin (surface_is_margin)")
    return (f"the epidermal surface could not be told from a margin ({assessment.surface_from}), so uninked edges "
            "are listed as margins")


def method_text(assessment: MarginAssessment, *, mpp: tuple[float, float]) -> str:
    """The method in two sentences."""
    return (
        f"Tissue outlines and ink colours were detected on the scanned slide and the lesion was taken from "
        f"{assessment.lesion.description}; the shortest straight-line distance from the lesion to each inked stretch "
        f"of the outer tissue edge was measured at {mpp[0]:.3g} x {mpp[1]:.3g} µm per pixel (holes inside the tissue "
        f"are not margins; {surface_text(assessment)}). "
        f"A margin is involved when the lesion touches the edge (0 mm) and close when under {assessment.close_mm:g} mm."
    )


def write_margin_outputs(
    out_dir: str | Path,
    assessment: MarginAssessment,
    *,
    slide,
    mpp: tuple[float, float],
    specimen_id: str | None,
) -> dict[str, Path]:
    """Write the four outputs atomically into ``out_dir``; returns name -> path."""
    out_dir = Path(out_dir)
    specimen = specimen_id or "not recorded (give --specimen-id)"
    thumb = read_thumbnail(slide, assessment, mpp=mpp)
    paths = {name: out_dir / name for name in OUTPUTS}
    write_text_atomic(paths["margins.json"], json.dumps(_json(assessment, mpp=mpp, specimen=specimen), indent=1))
    write_features(paths["margins.geojson"], geojson_features(assessment, mpp=mpp),
                   properties={"specimen_id": specimen, "generator": "wsi-pipeline margins"})
    with atomic_path(paths["margin_report.pdf"]) as tmp:
        fig = report_figure(assessment, thumb, mpp=mpp, specimen=specimen)
        fig.savefig(tmp, format="pdf")
    write_text_atomic(paths["margin_report.html"], report_html(assessment, thumb, mpp=mpp, specimen=specimen))
    return paths


def _json(assessment: MarginAssessment, *, mpp, specimen: str) -> dict:
    out = {"specimen_id": specimen, "generated": _today(), "headline": headline(assessment)}
    out.update(assessment.to_dict(mpp))
    out["method"] = method_text(assessment, mpp=mpp)
    out["caveat"] = f"{CAVEAT} {PLANE}"
    return out


def geojson_features(assessment: MarginAssessment, *, mpp) -> list[GeoFeature]:
    """Lines and labels for napari/QuPath, in level-0 pixels."""
    feats = []
    for seg in assessment.segments:
        if seg.colour == SCAN_BORDER:
            continue
        name = assessment_name(assessment, seg.colour)
        if seg.colour == SURFACE and name.endswith("(not a margin)"):
            feats.append(GeoFeature(to_px(seg.line, mpp), "Epidermal surface", color=_rgb(SURFACE),
                                    name="epidermal surface", extra={"marginStatus": "not a margin"}))
            continue
        feats.append(GeoFeature(to_px(seg.line, mpp), f"Margin: {name}", color=_rgb(seg.colour),
                                name=f"{seg.colour} edge ({name})", extra={"inkColor": seg.colour}))
    for m, line in closest_lines(assessment):
        feats.append(GeoFeature(
            to_px(line, mpp), "Margin clearance", color=_rgb(m.colour), name=m.label(),
            measurements={"Clearance mm": round(m.clearance_mm, 4), "Clearance µm": round(m.approach.distance_um, 1)},
            extra={"inkColor": m.colour, "marginName": m.name, "marginStatus": m.status},
        ))
        for g in m.involved:
            feats.append(GeoFeature(to_px(g, mpp), "Margin involved", color=(220, 38, 38),
                                    name=f"involved: {m.colour} ({m.name})", extra={"inkColor": m.colour}))
    if assessment.lesion.kind in ("proposed", "model"):
        for focus in assessment.lesion.foci:
            feats.append(GeoFeature(to_px(focus, mpp), assessment.lesion.label, color=(163, 0, 107),
                                    name=assessment.lesion.label))
    return feats


def assessment_name(assessment: MarginAssessment, colour: str) -> str:
    if colour == SCAN_BORDER:
        return "edge of scanned area (not a margin)"
    if colour == SURFACE and not any(m.colour == SURFACE for m in assessment.margins):
        return "epidermal surface (not a margin)"
    return next((m.name for m in assessment.margins if m.colour == colour), colour)


def table_rows(assessment: MarginAssessment) -> list[list[str]]:
    """Rows of the margin table: name, ink, clearance (mm to 0.1), status, piece."""
    rows = []
    for m in assessment.margins:
        piece = "" if m.approach is None else str(m.approach.piece + 1)
        rows.append([m.name, m.colour, format_mm(m.clearance_mm), m.status, piece])
    return rows


def report_figure(assessment: MarginAssessment, thumb: Thumbnail, *, mpp, specimen: str) -> Figure:
    """The one-page A4 report as a matplotlib figure."""
    fig = Figure(figsize=(8.27, 11.69))
    fig.text(0.06, 0.965, "Surgical margins", fontsize=18, fontweight="bold", va="top")
    fig.text(0.94, 0.965, f"Specimen: {specimen}", fontsize=11, ha="right", va="top")
    fig.text(0.94, 0.945, f"Report generated {_today()}", fontsize=8, ha="right", va="top", color="#555555")
    status = assessment.closest.status if assessment.closest else None
    fig.text(0.06, 0.925, headline(assessment), fontsize=12.5, fontweight="bold", va="top",
             color={INVOLVED: "#b91c1c", CLOSE: "#92400e"}.get(status, "#14532d" if status else "#333333"))
    if assessment.lesion.found:  # wrapped: a proposed outline's line ran off the page
        fig.text(0.06, 0.902, textwrap.fill(assessment.lesion.note, 100), fontsize=9.5, va="top",
                 color="#b91c1c" if assessment.lesion.proposed else "#333333",
                 fontweight="bold" if assessment.lesion.proposed else "normal")
    ax = fig.add_axes((0.04, 0.43, 0.92, 0.46))
    draw_overview(ax, assessment, thumb)
    _legend(fig, assessment)
    _table(fig.add_axes((0.06, 0.235, 0.88, 0.16)), assessment)
    if assessment.profile:
        draw_profile(fig.add_axes((0.11, 0.145, 0.84, 0.08)), assessment)
    method = textwrap.fill("Method: " + method_text(assessment, mpp=mpp), width=140)
    fig.text(0.06, 0.095, method, fontsize=7.5, va="top", color="#333333", linespacing=1.3)
    fig.text(0.5, 0.024, CAVEAT, fontsize=11, fontweight="bold", ha="center", va="bottom")
    fig.text(0.5, 0.01, PLANE, fontsize=8, ha="center", va="bottom", color="#333333")
    return fig


def _legend(fig: Figure, assessment: MarginAssessment) -> None:
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    from wsi_pipeline.report.margins.picture import LESION_EDGE, LESION_FACE

    handles = [Patch(facecolor=LESION_FACE, edgecolor=LESION_EDGE, label=assessment.lesion.label)]
    for colour in sorted({s.colour for s in assessment.segments}):
        plain = colour in (UNINKED, SCAN_BORDER, SURFACE)
        handles.append(Line2D([], [], color=ink_colour(colour), linewidth=1.4 if plain else 4,
                              linestyle={UNINKED: "--", SCAN_BORDER: ":", SURFACE: "-."}.get(colour, "-"),
                              label=assessment_name(assessment, colour)))
    if assessment.closest is not None:
        handles.append(Line2D([], [], color="black", marker="o", markersize=4, linewidth=2, label="closest approach"))
    fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.432), ncol=min(4, len(handles)),
               fontsize=8, frameon=False)


def _table(ax, assessment: MarginAssessment) -> None:
    ax.set_axis_off()
    rows = table_rows(assessment)
    if not rows or assessment.status == NO_LESION:
        ax.text(0.5, 0.6, textwrap.fill(no_lesion_text(assessment.lesion), 80), ha="center", va="center", fontsize=11)
        return
    header = ["Margin", "Ink", "Clearance", "Status", "Piece"]
    colours = [["white", "white", "white", STATUS_COLOURS.get(r[3], "#f3f4f6"), "white"] for r in rows]
    table = ax.table(cellText=rows, colLabels=header, cellColours=colours, loc="upper center",
                     colWidths=[0.36, 0.12, 0.22, 0.2, 0.1], cellLoc="left")
    table.auto_set_font_size(False)
    table.set_fontsize(10)
    table.scale(1, 1.35)
    for (r, c), cell in table.get_celld().items():
        cell.set_edgecolor("#bbbbbb")
        if r == 0:
            cell.set_text_props(fontweight="bold")
            cell.set_facecolor("#e5e7eb")
        elif c == 1:
            cell.get_text().set_color(ink_colour(rows[r - 1][1]) if rows[r - 1][1] != "yellow" else "#8a6d00")


def _png(fig: Figure, *, dpi: int) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def report_html(assessment: MarginAssessment, thumb: Thumbnail, *, mpp, specimen: str) -> str:
    """A self-contained HTML report (pictures embedded as base64 PNG)."""
    aspect = thumb.size_um[1] / max(thumb.size_um[0], 1.0)
    fig = Figure(figsize=(9, 9 * aspect) if aspect <= 1 else (9 / aspect, 9))  # longest side 9 in
    draw_overview(fig.add_axes((0, 0, 1, 1)), assessment, thumb)
    overview = _png(fig, dpi=110)
    profile = ""
    if assessment.profile:
        pf = Figure(figsize=(9, 1.8))
        draw_profile(pf.add_axes((0.08, 0.28, 0.9, 0.65)), assessment)
        profile = f'<img alt="clearance along the tissue edge" src="data:image/png;base64,{_png(pf, dpi=100)}">'
    rows = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r[:3])
        + f'<td style="background:{STATUS_COLOURS.get(r[3], "#f3f4f6")}">{html.escape(r[3])}</td>'
        + f"<td>{html.escape(r[4])}</td></tr>"
        for r in table_rows(assessment)
    ) or f'<tr><td colspan="5">{html.escape(no_lesion_text(assessment.lesion))}</td></tr>'
    note = html.escape(assessment.lesion.note)
    proposed = (f'<p class="warn">{note}</p>' if assessment.lesion.proposed else f"<p>{note}</p>" if note else "")
    e = html.escape
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Surgical margins: {e(specimen)}</title>
<style>
body {{ font-family: Helvetica, Arial, sans-serif; max-width: 960px; margin: 1.5em auto; color: #111; }}
h1 {{ margin: 0; font-size: 1.6em; }} .spec {{ float: right; font-size: 1.1em; }}
.headline {{ font-size: 1.25em; font-weight: bold; margin: .6em 0; }} .warn {{ color: #b91c1c; font-weight: bold; }}
img {{ max-width: 100%; }} table {{ border-collapse: collapse; margin: .8em 0; }}
td, th {{ border: 1px solid #bbb; padding: .3em .8em; text-align: left; }} th {{ background: #e5e7eb; }}
.method {{ font-size: .9em; color: #333; }} .caveat {{ font-weight: bold; text-align: center; margin-top: 1em; }}
</style></head><body>
<div class="spec">Specimen: {e(specimen)}<br><small>Report generated {_today()}</small></div>
<h1>Surgical margins</h1>
<p class="headline">{e(headline(assessment))}</p>{proposed}
<img alt="overview: tissue, lesion, inked margins, closest approach" src="data:image/png;base64,{overview}">
<table><tr><th>Margin</th><th>Ink</th><th>Clearance</th><th>Status</th><th>Piece</th></tr>{rows}</table>
{profile}
<p class="method">{e(method_text(assessment, mpp=mpp))}</p>
<p class="caveat">{e(CAVEAT)} {e(PLANE)}</p>
</body></html>
"""


def _rgb(colour: str) -> tuple[int, int, int]:
    return tuple(int(round(v * 255)) for v in mcolors.to_rgb(ink_colour(colour)))


def _today() -> str:
    return _dt.date.today().isoformat()
