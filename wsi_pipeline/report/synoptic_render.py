"""The synoptic draft on paper: one A4 page (PDF), a self-contained HTML page, and GeoJSON.

The picture is the margin overview (:func:`~wsi_pipeline.report.margins.picture.draw_overview`:
tissue, lesion, inked margins, the epidermal surface drawn as surface, closest approaches)
with the Breslow measuring line and the ulcer bases on top. Each finding is a table row with
its value, its source (drawn / model / proposed) and, when not assessed, the reason.
"""

from __future__ import annotations

import base64
import html
import io
import json
import textwrap
from pathlib import Path

import matplotlib
import shapely

matplotlib.use("Agg")  # noqa: E402  (file output only)
from matplotlib import patheffects  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from wsi_pipeline.atomic import write_bytes_atomic, write_text_atomic  # noqa: E402
from wsi_pipeline.report.margins._io import GeoFeature, write_features  # noqa: E402
from wsi_pipeline.report.margins._units import to_px  # noqa: E402
from wsi_pipeline.report.margins.picture import Thumbnail, draw_overview, read_thumbnail  # noqa: E402
from wsi_pipeline.report.margins.report import write_margin_outputs  # noqa: E402
from wsi_pipeline.report.synoptic import CAVEAT, OUTPUTS, SynopticDraft  # noqa: E402

BRESLOW_COLOUR = "#ea580c"
ULCER_COLOUR = "#dc2626"
SOURCE_TEXT = {"drawn": "drawn", "model": "model", "proposed": "proposed (review)", "user": "stated by user",
               "manifest": "manifest", "summary.json": "run (summary.json)", "none": "", "": ""}
_HALO = [patheffects.withStroke(linewidth=4, foreground="white")]


def draw_synoptic_overview(ax, draft: SynopticDraft, thumb: Thumbnail) -> None:
    """The margin overview plus the Breslow measuring line and the ulcer bases (mm axes)."""
    draw_overview(ax, draft.assessment, thumb)
    ox, oy = thumb.origin_um

    def mm(coords):
        return [(x - ox) / 1000 for x, _ in coords], [(y - oy) / 1000 for _, y in coords]

    if draft.surface is not None:
        for u in draft.surface.ulcers:
            xs, ys = mm(u.base.coords)
            ax.plot(xs, ys, color=ULCER_COLOUR, linewidth=3.5, zorder=14, path_effects=_HALO, solid_capstyle="butt")
            ax.annotate("ulcer", (xs[len(xs) // 2], ys[len(ys) // 2]), xytext=(0, 9), textcoords="offset points",
                        ha="center", fontsize=8, fontweight="bold", color=ULCER_COLOUR, path_effects=_HALO, zorder=14)
    if draft.breslow is not None:
        xs, ys = mm(draft.breslow.line.coords)
        ax.plot(xs, ys, color=BRESLOW_COLOUR, linewidth=2.4, marker="o", markersize=3.5, zorder=15,
                path_effects=_HALO)
        ax.annotate(f"Breslow {draft.breslow.thickness_mm:.1f} mm", ((xs[0] + xs[1]) / 2, (ys[0] + ys[1]) / 2),
                    xytext=(8, 0), textcoords="offset points", fontsize=9, fontweight="bold", va="center",
                    color=BRESLOW_COLOUR, zorder=15,
                    bbox=dict(boxstyle="round,pad=0.2", facecolor="white", edgecolor=BRESLOW_COLOUR, linewidth=1.2))


def table_rows(draft: SynopticDraft) -> list[tuple[str, str, str, str]]:
    """(item, value, source, note) per finding."""
    return [(f.name, f.display, SOURCE_TEXT.get(f.source, f.source), f.reason or "") for f in draft.findings]


def method_text(draft: SynopticDraft) -> str:
    m = draft.tissue_map
    return (
        f"Lesion from {draft.lesion.description}. Epidermis, dermis and tumour from "
        f"{'no tissue map' if m is None else m.description}. Breslow thickness: from the top of the granular layer "
        "(upper boundary of the nucleated epidermis; over an ulcer, the ulcer base) to the deepest tumour point, "
        "perpendicular to the local surface, to 0.1 mm. Ulceration: surface without epidermis over tumour. "
        "TILs (Clark) from lymphocytes among the tumour cells of the invasive component. Mitotic rate only from a "
        "validated mitosis model, in the invasive component (its densest 1 mm² around a hotspot; all of it when smaller). pT (AJCC 8th) only for a stated diagnosis of melanoma. Margins: shortest distance "
        "from the lesion to each inked edge; the epidermal surface is not a margin. Measured in the plane of this "
        "section only."
    )


def report_figure(draft: SynopticDraft, thumb: Thumbnail) -> Figure:
    """One A4 page."""
    fig = Figure(figsize=(8.27, 11.69))
    fig.text(0.06, 0.968, "Synoptic report: DRAFT", fontsize=17, fontweight="bold", va="top")
    fig.text(0.94, 0.968, f"Specimen: {draft.specimen}", fontsize=10.5, ha="right", va="top")
    fig.text(0.94, 0.950, f"Generated {draft.to_dict()['generated']}", fontsize=8, ha="right", va="top",
             color="#555555")
    fig.text(0.06, 0.938, CAVEAT, fontsize=11, fontweight="bold", color="#b91c1c", va="top")
    fig.text(0.06, 0.916, textwrap.fill(draft.headline, 110), fontsize=10.5, fontweight="bold", va="top")
    note = draft.lesion.note
    fig.text(0.06, 0.893, textwrap.fill(note, 120), fontsize=8.5, va="top",
             color="#b91c1c" if draft.lesion.proposed else "#333333")
    ax = fig.add_axes((0.04, 0.50, 0.92, 0.37))
    draw_synoptic_overview(ax, draft, thumb)
    _legend(fig, draft)
    end = _table(fig, table_rows(draft), top=0.447)  # clear of the legends above
    for size in (7.5, 7.0, 6.5, 6.0):  # the largest method text that fits between the table and the footer
        method = textwrap.fill("Method: " + method_text(draft), int(135 * 7.2 / size))
        height = (method.count("\n") + 1) * size * 1.3 / 72 / 11.69  # figure fraction
        if end - 0.008 - height >= 0.032:
            break
    fig.text(0.06, end - 0.008, method, fontsize=size, va="top", color="#333333", linespacing=1.3)
    fig.text(0.5, 0.015, CAVEAT, fontsize=10, fontweight="bold", ha="center", va="bottom")
    return fig


def _legend(fig: Figure, draft: SynopticDraft) -> None:
    from matplotlib.lines import Line2D

    from wsi_pipeline.report.margins.report import _legend as margin_legend

    margin_legend(fig, draft.assessment)  # lesion, inks, surface, closest approach (placed at y 0.432)
    legend = fig.legends[-1]
    legend.set_bbox_to_anchor((0.5, 0.502), transform=fig.transFigure)
    extra = []
    if draft.breslow is not None:
        extra.append(Line2D([], [], color=BRESLOW_COLOUR, linewidth=2.4, marker="o", markersize=3.5,
                            label="Breslow measuring line"))
    if draft.surface is not None and draft.surface.ulcers:
        extra.append(Line2D([], [], color=ULCER_COLOUR, linewidth=3.5, label="ulcer base"))
    if extra:
        fig.legend(handles=extra, loc="upper center", bbox_to_anchor=(0.5, 0.478), ncol=len(extra), fontsize=8,
                   frameon=False)


def _table(fig: Figure, rows, *, top: float) -> float:
    """The findings table from ``top`` down; returns the figure y where it ends."""
    xs = (0.06, 0.29, 0.585, 0.725)
    widths = (28, 34, 17, 33)  # "proposed (review)" on one line
    y = top
    for i, head in enumerate(("Item", "Value", "Source", "Note")):
        fig.text(xs[i], y, head, fontsize=9, fontweight="bold", va="top")
    y -= 0.018
    for row in rows:
        cells = [textwrap.wrap(c, w) or [""] for c, w in zip(row, widths)]
        height = max(len(c) for c in cells) * 0.0117 + 0.005
        fig.add_artist(matplotlib.lines.Line2D([0.06, 0.94], [y + 0.004, y + 0.004], color="#d1d5db", linewidth=0.6))
        for i, c in enumerate(cells):
            not_assessed = i == 1 and row[1] == "not assessed"
            fig.text(xs[i], y, "\n".join(c), fontsize=8.5 if i < 3 else 7.2, va="top", linespacing=1.15,
                     fontweight="bold" if i == 1 and not not_assessed else "normal",
                     color="#6b7280" if not_assessed else "#111111")
        y -= height
    return y


def _png(fig: Figure, *, dpi: int) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def report_html(draft: SynopticDraft, thumb: Thumbnail) -> str:
    aspect = thumb.size_um[1] / max(thumb.size_um[0], 1.0)
    fig = Figure(figsize=(9, 9 * aspect) if aspect <= 1 else (9 / aspect, 9))
    draw_synoptic_overview(fig.add_axes((0, 0, 1, 1)), draft, thumb)
    e = html.escape
    rows = "".join(
        "<tr>" + f"<td>{e(a)}</td>" + (f'<td class="na">{e(b)}</td>' if b == "not assessed" else f"<td><b>{e(b)}</b></td>")
        + f"<td>{e(c)}</td><td class=\"note\">{e(d)}</td></tr>"
        for a, b, c, d in table_rows(draft)
    )
    note = draft.lesion.note
    note = f'<p class="{"warn" if draft.lesion.proposed else "lesion"}">{e(note)}</p>' if note else ""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Synoptic draft: {e(draft.specimen)}</title>
<style>
body {{ font-family: Helvetica, Arial, sans-serif; max-width: 960px; margin: 1.5em auto; color: #111; }}
h1 {{ margin: 0; font-size: 1.6em; }} .spec {{ float: right; }} .caveat {{ color: #b91c1c; font-weight: bold; }}
.headline {{ font-size: 1.15em; font-weight: bold; }} .warn {{ color: #b91c1c; font-weight: bold; }}
img {{ max-width: 100%; }} table {{ border-collapse: collapse; margin: .8em 0; width: 100%; }}
td, th {{ border: 1px solid #bbb; padding: .3em .6em; text-align: left; vertical-align: top; }}
th {{ background: #e5e7eb; }} .na {{ color: #6b7280; }} .note {{ font-size: .85em; }}
.method {{ font-size: .85em; color: #333; }}
</style></head><body>
<div class="spec">Specimen: {e(draft.specimen)}<br><small>Generated {e(draft.to_dict()['generated'])}</small></div>
<h1>Synoptic report: DRAFT</h1>
<p class="caveat">{e(CAVEAT)}</p>
<p class="headline">{e(draft.headline)}</p>{note}
<img alt="overview: tissue, lesion, margins, epidermal surface, Breslow measuring line"
 src="data:image/png;base64,{_png(fig, dpi=110)}">
<table><tr><th>Item</th><th>Value</th><th>Source</th><th>Note</th></tr>{rows}</table>
<p class="method">{e(method_text(draft))}</p>
<p class="caveat">{e(CAVEAT)}</p>
</body></html>
"""


def geojson_features(draft: SynopticDraft) -> list[GeoFeature]:
    """The measuring line, ulcer bases, tumour base and the mitotic-rate field in level-0 pixels
    (for napari / QuPath)."""
    mpp = draft.mpp
    feats = []
    if draft.breslow is not None:
        b = draft.breslow
        feats.append(GeoFeature(to_px(b.line, mpp), "Breslow thickness", color=(234, 88, 12),
                                name=f"Breslow {b.thickness_mm:.1f} mm",
                                measurements={"Breslow thickness mm": b.thickness_mm,
                                              "Measured um": round(b.thickness_um, 1)}))
    if draft.surface is not None:
        for u in draft.surface.ulcers:
            feats.append(GeoFeature(to_px(u.base, mpp), "Ulceration", color=(220, 38, 38), name="ulcer",
                                    measurements={"Length mm": round(u.length_um / 1000, 3)}))
    if draft.tils is not None and not draft.tils.base.is_empty:
        feats.append(GeoFeature(to_px(draft.tils.base, mpp), "Tumour base", color=(59, 130, 246),
                                name=f"TILs {draft.tils.grade}"))
    rate = draft.finding("Mitotic rate")
    field = None if rate is None else rate.details.get("field_um")
    if field:  # the field counted (a component under its area is counted whole: the lesion is drawn)
        feats.append(GeoFeature(to_px(shapely.geometry.shape(field), mpp), "Mitotic rate field", color=(255, 140, 0),
                                name=f"{rate.details['mitoses_in_field']} mitoses",
                                measurements={"Mitoses": rate.details["mitoses_in_field"],
                                              "Area mm^2": rate.details["field_mm2"]}))
    return feats


def write_draft(out_dir: Path, draft: SynopticDraft, *, slide, with_margins: bool = True) -> dict:
    """Render everything, then write :data:`OUTPUTS` (and the margin outputs); returns the
    synoptic.json content with ``"files"``."""
    thumb = read_thumbnail(slide, draft.assessment, mpp=draft.mpp)
    data = draft.to_dict()
    files = list(OUTPUTS)
    buf = io.BytesIO()
    report_figure(draft, thumb).savefig(buf, format="pdf")
    page = report_html(draft, thumb)
    feats = geojson_features(draft)
    if with_margins:
        names = write_margin_outputs(out_dir, draft.assessment, slide=slide, mpp=draft.mpp,
                                     specimen_id=draft.specimen)
        files += list(names)
    data["files"] = files
    write_features(out_dir / "synoptic.geojson", feats,
                   properties={"specimen_id": draft.specimen, "generator": "wsi-pipeline report"})
    write_bytes_atomic(out_dir / "synoptic_report.pdf", buf.getvalue())
    write_text_atomic(out_dir / "synoptic_report.html", page)
    write_text_atomic(out_dir / "synoptic.json", json.dumps(data, indent=1))
    return data
