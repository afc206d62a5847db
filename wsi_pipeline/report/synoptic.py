"""The synoptic draft of one slide: margins, Breslow, ulceration, TILs, mitotic rate, pT.

:func:`build_draft` reads a results folder (``tissue.geojson`` required; ``regions.geojson``,
``annotations.geojson``, ``nuclei.parquet``, ``summary.json`` when present) and returns a
:class:`SynopticDraft`; :func:`write_synoptic` also writes ``synoptic.json``,
``synoptic.geojson`` (the measuring line, ulcer bases, tumour base), ``synoptic_report.pdf``
and ``.html`` (and, by default, the margin outputs). Everything is computed and rendered
before the first file is written, so bad input leaves no partial report.
"""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import shapely

from tiling.errors import InputError
from wsi_pipeline.report.breslow import Breslow, breslow_finding, measure_breslow, transected_at, ulceration_finding
from wsi_pipeline.report.config import SynopticConfig, load_synoptic_config
from wsi_pipeline.report.findings import Finding, not_assessed, weakest
from wsi_pipeline.report.margins import assess_margins
from wsi_pipeline.report.margins.compute import INVOLVED, MarginAssessment, format_mm
from wsi_pipeline.report.margins.config import SURFACE, UNINKED, MarginConfig, load_margin_config
from wsi_pipeline.report.margins.edges import polygons_of
from wsi_pipeline.report.margins.report import headline as margin_headline
from wsi_pipeline.report.mitotic_rate import count_invasive, field_mm2, mitotic_rate_finding, run_rate
from wsi_pipeline.report.skin_surface import SkinSurface, find_ulcers, granular_line, ulcers_seen_by_cells
from wsi_pipeline.report.staging import check_diagnosis, pt_finding
from wsi_pipeline.report.tils import TilResult, grade_tils, til_finding
from wsi_pipeline.reasons import no_map_reason
from wsi_pipeline.report.tissue_map import TissueMap, load_tissue_map

CAVEAT = "Computer-assisted draft, to be confirmed by the pathologist."
LYMPHOCYTE, TUMOUR_CELL = "Lymphocyte", "Tumor"
OUTPUTS = ("synoptic.json", "synoptic.geojson", "synoptic_report.pdf", "synoptic_report.html")


@dataclass(frozen=True)
class SynopticDraft:
    """Everything the draft shows (geometry in µm)."""

    assessment: MarginAssessment
    tissue_map: TissueMap | None
    surface: SkinSurface | None
    breslow: Breslow | None
    tils: TilResult | None
    findings: tuple[Finding, ...]
    diagnosis: str | None
    diagnosis_from: str | None
    specimen: str
    mpp: tuple[float, float]

    @property
    def lesion(self):
        return self.assessment.lesion

    def finding(self, name: str) -> Finding | None:
        return next((f for f in self.findings if f.name == name), None)

    @property
    def headline(self) -> str:
        return margin_headline(self.assessment)

    def summary(self) -> dict:
        """Flat values for tables (batch report columns)."""
        def value(name):
            f = self.finding(name)
            return None if f is None else f.value

        closest = self.assessment.closest
        return {
            "lesion_source": self.lesion.kind,
            "breslow_mm": value("Breslow thickness"),
            "breslow_at_least": bool(getattr(self.finding("Breslow thickness"), "details", {}).get("at_least")),
            "ulceration": value("Ulceration"),
            "til_grade": value("Tumour-infiltrating lymphocytes"),
            "mitoses_per_mm2": value("Mitotic rate"),
            "pT": value("pT (AJCC 8th)"),
            "closest_margin": None if closest is None else closest.name,
            "closest_margin_mm": None if closest is None else round(closest.clearance_mm, 3),
            "closest_margin_status": None if closest is None else closest.status,
        }

    def to_dict(self) -> dict:
        lesion = self.lesion
        return {
            "title": "Synoptic report: computer-assisted draft",
            "caveat": CAVEAT,
            "specimen_id": self.specimen,
            "generated": _dt.date.today().isoformat(),
            "headline": self.headline,
            "diagnosis": {"value": self.diagnosis, "stated_by": self.diagnosis_from},
            "lesion": {"found": lesion.found, "source": lesion.kind, "from": lesion.source,
                       "description": lesion.description, "review_required": lesion.proposed,
                       "area_mm2": round(sum(f.area for f in lesion.foci) / 1e6, 4), "foci": len(lesion.foci),
                       "searched": list(lesion.searched)},
            "tissue_map": None if self.tissue_map is None else {"source": self.tissue_map.source,
                                                                "description": self.tissue_map.description},
            "findings": [f.to_dict() for f in self.findings],
            "summary": self.summary(),
            "breslow_line_px": None if self.breslow is None else _px(self.breslow.line, self.mpp),
            "ulcers_px": [] if self.surface is None else [_px(u.base, self.mpp) for u in self.surface.ulcers],
            "margins": self.assessment.to_dict(self.mpp),
        }


def _px(line, mpp) -> list[list[float]]:
    return [[round(x / mpp[0], 2), round(y / mpp[1], 2)] for x, y in line.coords]


def build_draft(
    results_dir: str | Path,
    *,
    mpp: tuple[float, float],
    frame_px=None,
    diagnosis: str | None = None,
    lesion_file: str | Path | None = None,
    config: SynopticConfig | None = None,
    margin_config: MarginConfig | None = None,
    summary: dict | None = None,
    specimen_id: str | None = None,
) -> SynopticDraft:
    """Compute the draft for a results folder (µm inside; see module docstring)."""
    results = Path(results_dir)
    _check_results(results)
    config = config or load_synoptic_config()
    margin_config = margin_config or load_margin_config()
    summary = _summary(results) if summary is None else summary
    stated, stated_by = _diagnosis(diagnosis, summary, results)
    tissue_map = load_tissue_map(results, mpp=mpp)
    assessment = assess_margins(results, mpp=mpp, config=margin_config, lesion_file=lesion_file,
                                frame_px=frame_px, tissue_map=tissue_map)
    lesion = assessment.lesion
    nuclei = _typed_nuclei(results, mpp) if lesion.found else None  # once: TILs and the ulcer check
    map_source = "none" if tissue_map is None else tissue_map.source
    source = weakest(lesion.kind, map_source) if tissue_map is not None else lesion.kind
    surface = breslow = tils = None
    no_lesion = _no_lesion(lesion, summary)
    findings = [Finding("Diagnosis (stated)", stated, stated or "not stated", stated_by or "",
                        None if stated else "the software does not diagnose")]
    findings.append(Finding("Lesion", lesion.kind if lesion.found else None,
                            _lesion_display(assessment), lesion.kind, None if lesion.found else no_lesion))
    epidermis = None if tissue_map is None else tissue_map.epidermis
    invasive = _invasive(assessment, tissue_map) if lesion.found else None
    if not lesion.found:
        why = no_lesion
        findings += [not_assessed(n, why) for n in ("Breslow thickness", "Ulceration", "Tumour-infiltrating lymphocytes")]
    elif epidermis is None:
        why = "no tissue map (regions.geojson)" if tissue_map is None else "the tissue map holds no epidermis"
        findings += [breslow_finding(None, source=source, reason=f"{why}: the skin surface is unknown"),
                     ulceration_finding(None, source=source, reason=why)]
        tils = _tils(nuclei, invasive, None, config)
        findings.append(til_finding(tils, source=source, reason=_til_reason(results)))
    else:
        pieces = list(assessment.pieces)
        lesion_geom = shapely.union_all(list(lesion.foci))
        below = tissue_map.below_epidermis(shapely.union_all(pieces))
        edge = shapely.union_all([p.exterior for p in pieces])
        from wsi_pipeline.report.margins.edges import load_tissue

        _, inks = load_tissue(results / "tissue.geojson", mpp=mpp)
        ink = shapely.union_all(list(inks.values())) if inks else None
        ulcers = find_ulcers(pieces, epidermis, lesion_geom, inks, surface_um=margin_config.surface_distance_um,
                             ulcer_depth_um=margin_config.ulcer_depth_um, ink_distance_um=margin_config.ink_distance_um,
                             min_ulcer_um=config.min_ulcer_um)
        typed = _typed_xy(nuclei)
        if typed is not None:  # epidermal nuclei at the surface: the epidermis is there, whatever the map says
            ulcers = ulcers_seen_by_cells(ulcers, *typed, within_um=config.ulcer_cells_um,
                                          min_ulcer_um=config.min_ulcer_um)
        surface = SkinSurface(
            granular_line(epidermis, below, edge, surface_um=margin_config.surface_distance_um, ink=ink,
                          ink_distance_um=margin_config.ink_distance_um,
                          surface_edges=shapely.union_all([seg.line for seg in assessment.surface])),
            ulcers)
        try:
            breslow = measure_breslow(pieces, lesion.foci, surface, surface_um=margin_config.surface_distance_um)
            if breslow is not None:
                names = {m.colour: m.name for m in assessment.margins}
                breslow = replace(breslow, transected=transected_at(breslow, assessment.segments, names))
            findings.append(breslow_finding(breslow, source=source))
        except ValueError as exc:
            findings.append(breslow_finding(None, source=source, reason=str(exc)))
        if breslow is None and not surface.ulcers:  # no skin over the tumour: its ulceration is unknown
            findings.append(ulceration_finding(None, source=source,
                                               reason="no epidermal surface found over the tumour"))
        else:
            findings.append(ulceration_finding(surface, source=source))
        tils = _tils(nuclei, invasive, surface, config)
        findings.append(til_finding(tils, source=source, reason=_til_reason(results)))
    missing = no_lesion if not lesion.found else "no invasive tumour (the lesion lies in the epidermis)"
    findings.append(_mitotic_rate(results, summary, invasive, mpp, missing=missing,
                                  epidermis_excluded=epidermis is not None))
    findings += _margin_findings(assessment, no_lesion)
    by_name = {f.name: f for f in findings}
    findings.append(pt_finding(stated, by_name["Breslow thickness"], by_name["Ulceration"], lesion_found=lesion.found))
    specimen = specimen_id or (summary or {}).get("specimen_id") or "not recorded"
    return SynopticDraft(assessment, tissue_map, surface, breslow, tils, tuple(findings), stated, stated_by,
                         specimen, tuple(mpp))


def _check_results(results: Path) -> None:
    if not results.is_dir():
        raise InputError(results, "results folder not found")
    if not (results / "tissue.geojson").is_file():
        raise InputError(results / "tissue.geojson", "missing (run `wsi-pipeline run` on the slide first)")


def _summary(results: Path) -> dict | None:
    path = results / "summary.json"
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise InputError(path, f"not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise InputError(path, "expected a JSON object")
    return data


def _diagnosis(given: str | None, summary: dict | None, results: Path) -> tuple[str | None, str | None]:
    stated = check_diagnosis(given)
    if stated:
        return stated, "user"
    meta = ((summary or {}).get("metadata") or {}).get("diagnosis")
    stated = check_diagnosis(meta, where=f"{results / 'summary.json'} (metadata.diagnosis)")
    return (stated, "manifest") if stated else (None, None)


def _no_lesion(lesion, summary: dict | None = None) -> str:
    if any(s.startswith("regions.geojson") for s in lesion.searched):
        return "no tumour found"
    why = no_map_reason((summary or {}).get("counts") or {})  # the run made no tissue map, and says why
    return f"no tumour outline (no Tumor annotation; no tissue map: {why})" if why else \
        "no tumour outline (no Tumor annotation, no tissue map)"


def _lesion_display(a: MarginAssessment) -> str:
    if not a.lesion.found:
        return "no tumour found" if _no_lesion(a.lesion) == "no tumour found" else "no tumour outline"
    area = sum(f.area for f in a.lesion.foci) / 1e6
    return f"{a.lesion.description}; {area:.2f} mm²"


def _typed_nuclei(results: Path, mpp) -> tuple[np.ndarray, np.ndarray] | None:
    """``(centroids in µm, class names)`` of the nuclei in ``nuclei.parquet``; ``None`` when
    the file or its ``class`` column is missing."""
    path = results / "nuclei.parquet"
    if not path.is_file():
        return None
    from wsi_pipeline.tables import read_table

    df = read_table(path)
    if "class" not in df:
        return None
    xy = np.stack([df["centroid_x"].to_numpy(float) * mpp[0], df["centroid_y"].to_numpy(float) * mpp[1]], axis=1)
    return xy, df["class"].to_numpy()


def _cells(nuclei) -> tuple[np.ndarray, np.ndarray] | None:
    """(lymphocyte, other) centroids in µm; ``None`` without cell types."""
    if nuclei is None:
        return None
    xy, cls = nuclei
    lym = cls == LYMPHOCYTE
    if not lym.any() and not (cls == TUMOUR_CELL).any():
        return None
    return xy[lym], xy[~lym]


def _typed_xy(nuclei) -> tuple[np.ndarray, np.ndarray] | None:
    """(Epithelial, Tumor) nucleus centroids in µm; ``None`` without Epithelial nuclei."""
    if nuclei is None:
        return None
    xy, cls = nuclei
    if not (cls == "Epithelial").any():
        return None
    return xy[cls == "Epithelial"], xy[cls == TUMOUR_CELL]


def _til_reason(results: Path) -> str:
    if not (results / "nuclei.parquet").is_file():
        return "nuclei.parquet missing"
    return "no cell types in nuclei.parquet (no Lymphocyte or Tumor class)"


def _invasive(assessment: MarginAssessment, tissue_map: TissueMap | None) -> shapely.MultiPolygon | None:
    """The invasive (dermal) component (µm): the lesion minus the mapped epidermis; ``None``
    when nothing is left (an in-situ lesion)."""
    invasive = shapely.union_all(list(assessment.lesion.foci))
    if tissue_map is not None and tissue_map.epidermis is not None:
        invasive = invasive.difference(tissue_map.epidermis)
    invasive = shapely.MultiPolygon(polygons_of(invasive))
    return None if invasive.is_empty else invasive


def _mitotic_rate(results: Path, summary: dict | None, invasive, mpp, *, missing: str,
                  epidermis_excluded: bool) -> Finding:
    """The validated mitoses of ``mitoses.geojson`` counted in the ``invasive`` component
    (:mod:`wsi_pipeline.report.mitotic_rate`); "not assessed" with the reason otherwise."""
    if run_rate(summary)[1] is not None or invasive is None:
        return mitotic_rate_finding(summary, missing=missing)
    path = results / "mitoses.geojson"
    if not path.is_file():
        return mitotic_rate_finding(summary, missing="mitoses.geojson missing")
    from wsi_pipeline.evaluation.points import read_points
    from wsi_pipeline.mitosis_classes import VALIDATED_CLASS

    xy = read_points(path, classes=(VALIDATED_CLASS,)) * np.asarray(mpp, float)
    return mitotic_rate_finding(summary, counted=count_invasive(xy, invasive, field_mm2(summary)),
                                epidermis_excluded=epidermis_excluded)


def _tils(nuclei, invasive, surface, config: SynopticConfig) -> TilResult | None:
    cells = _cells(nuclei)
    if cells is None or invasive is None:
        return None
    reference = None if surface is None else surface.reference
    return grade_tils(invasive, cells[0], cells[1], reference=reference, config=config.tils)


def _margin_findings(a: MarginAssessment, no_lesion: str) -> list[Finding]:
    """Closest peripheral and deep margins (by the names in margins.yaml), and uninked edges."""
    source = a.lesion.kind
    if not a.lesion.found:
        return [not_assessed("Margins", no_lesion)]
    groups = {"Peripheral margin": [], "Deep margin": [], "Uninked edge (margin?)": []}
    for m in a.margins:
        if m.approach is None or m.colour == SURFACE:
            continue
        key = ("Uninked edge (margin?)" if m.colour == UNINKED else
               "Deep margin" if "deep" in m.name.lower() else "Peripheral margin")
        groups[key].append(m)
    out = []
    for name, found in groups.items():
        if not found:
            if name != "Uninked edge (margin?)":
                out.append(not_assessed(name, f"no ink named '{name.split()[0].lower()}' beside the lesion's piece "
                                              "(configs/margins.yaml)", source=source))
            continue
        m = min(found, key=lambda r: r.approach.distance_um)
        where = m.name if m.colour == UNINKED else f"{m.colour} ink, {m.name}"
        text = "involved" if m.status == INVOLVED else f"{format_mm(m.clearance_mm)} ({m.status})"
        out.append(Finding(name, round(m.clearance_mm, 3), f"{text}: {where}", source,
                           None if a.surface_known or m.colour != UNINKED else "may be the epidermal surface "
                           f"({a.surface_from})", details={"status": m.status, "colour": m.colour}))
    return out


def write_synoptic(slide, results_dir, *, diagnosis: str | None = None, lesion_file=None,
                   config: SynopticConfig | str | Path | None = None, margin_config: MarginConfig | None = None,
                   specimen_id: str | None = None, with_margins: bool = True, summary: dict | None = None) -> dict:
    """Draft the synoptic report of one slide and write it into ``results_dir``.

    slide : an open :class:`tiling` slide, or its path (opened here; for the overview picture,
    its mpp and bounds). Writes :data:`OUTPUTS` (and ``margins.json``, ``margins.geojson``,
    ``margin_report.pdf/.html`` when ``with_margins``). ``summary``: the ``summary.json``
    content when the run has not written the file yet (its counts give the mitotic rate, its
    metadata the manifest's diagnosis). Returns the ``synoptic.json`` content plus ``"files"``
    (the names written; ``"summary"`` holds flat values for the batch report). Raises :class:`InputError` (one line, naming the
    file) for bad input, before anything is written.
    """
    from tiling.open import open_slide
    from wsi_pipeline.report.synoptic_render import write_draft

    if isinstance(config, (str, Path)):
        config = load_synoptic_config(config)
    if isinstance(slide, (str, Path)):
        with open_slide(slide) as opened:
            return write_synoptic(opened, results_dir, diagnosis=diagnosis, lesion_file=lesion_file, config=config,
                                  margin_config=margin_config, specimen_id=specimen_id, with_margins=with_margins,
                                  summary=summary)
    mpp = tuple(slide.mpp)
    draft = build_draft(results_dir, mpp=mpp, frame_px=slide.bounds, diagnosis=diagnosis, lesion_file=lesion_file,
                        config=config, margin_config=margin_config, specimen_id=specimen_id, summary=summary)
    return write_draft(Path(results_dir), draft, slide=slide, with_margins=with_margins)
