"""Mitotic rate per mm² for the draft, read from ``summary.json`` (never recomputed here).

The run gives a rate only from a validated mitosis model (``counts.mitotic_rate`` with
``assessed: true``); otherwise the draft says "not assessed" with the run's reason.
"""

from __future__ import annotations

from wsi_pipeline.report.findings import Finding, not_assessed

MITOTIC_RATE = "Mitotic rate"


def mitotic_rate_finding(summary: dict | None) -> Finding:
    """The mitotic-rate line from a ``summary.json`` dict (``None``: the file is missing)."""
    if summary is None:
        return not_assessed(MITOTIC_RATE, "summary.json missing (mitoses not run)")
    counts = summary.get("counts") or {}
    rate = counts.get("mitotic_rate") if isinstance(counts.get("mitotic_rate"), dict) else {}
    value = counts.get("mitoses_per_mm2", rate.get("value"))
    validated = counts.get("mitoses_validated") is True and rate.get("assessed", True) is not False
    model = counts.get("mitosis_model") or "mitosis model"
    if value is None or not validated:
        reason = rate.get("reason") or ("no validated mitosis model" if counts.get("mitoses_validated") is False
                                        else "no mitotic rate in summary.json")
        if reason.startswith("not assessed: "):
            reason = reason[len("not assessed: "):]
        return not_assessed(MITOTIC_RATE, reason, source="summary.json")
    area = rate.get("area_mm2") or counts.get("hotspot_area_mm2") or 1.0
    return Finding(MITOTIC_RATE, round(float(value), 1), f"{float(value):.0f} per mm² (hotspot, {area:g} mm²)",
                   "model", details={"model": model, "hotspot_area_mm2": area,
                                     "mitoses_in_hotspot": counts.get("mitoses_in_hotspot")})
