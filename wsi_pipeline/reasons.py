"""Why a run did not assess something, read back from its counts (``summary.json`` "counts").

The run records each "not assessed" where it decides it (:mod:`wsi_pipeline.run`); the
reports (batch report, overview, synoptic draft) read the reasons here, so each is worded in
one place.
"""

from __future__ import annotations

NOT_ASSESSED = "not assessed"


def not_he_slide(counts: dict) -> str:
    """Why a slide got tissue and nuclei only ('' for an H&E slide, or when the check was off)."""
    stain = counts.get("stain")
    if not isinstance(stain, dict) or stain.get("he") is not False or not stain.get("checked"):
        return ""
    pct = stain.get("pink_fraction")
    share = "" if pct is None else f"{100 * pct:.1f}% of tissue pixels pink-purple; "
    return (f"no eosin ({share}not H&E, e.g. immunohistochemistry): cell types, tissue map, mitoses and the "
            "synoptic report not assessed")


def rate_reason(counts: dict) -> str:
    """Why the mitotic rate is not given ('' when it is, or when mitoses were not run)."""
    rate = counts.get("mitotic_rate")
    if isinstance(rate, dict) and rate.get("reason"):
        return str(rate["reason"])
    if counts.get("mitoses_validated") is False:
        return f"{NOT_ASSESSED}: no validated mitosis model"
    return ""


def no_map(why: str, detail: str = "") -> str:
    """``counts["tissue_map"]`` for a run that made no tissue map: ``why`` in a few words (no
    parentheses: the reports put it in theirs), then ``detail``."""
    return f"{NOT_ASSESSED}: {why}" + (f"; {detail}" if detail else "")


def no_map_reason(counts: dict) -> str:
    """Why the run made no tissue map, in a few words ('' when it made one, or its summary
    does not say: a run from before the reason was recorded)."""
    said = str(counts.get("tissue_map") or "")
    if said.startswith(f"{NOT_ASSESSED}: "):
        return said[len(NOT_ASSESSED) + 2:].split(";")[0]
    return "not an H&E slide, stain check" if not_he_slide(counts) else ""
