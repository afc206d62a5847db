"""The stated diagnosis and the pT category (AJCC 8th edition, cutaneous melanoma).

The software does not diagnose: pT is drafted only when the user states the diagnosis
(``--diagnosis melanoma`` or a manifest column ``diagnosis``). Only the values in
:data:`DIAGNOSES` are accepted (a free-text column is where patient data ends up).
"""

from __future__ import annotations

from tiling.errors import InputError
from wsi_pipeline.report.findings import Finding, not_assessed

MELANOMA = "melanoma"
DIAGNOSES = (MELANOMA, "melanoma in situ", "naevus", "basal cell carcinoma", "squamous cell carcinoma", "other")
PT = "pT (AJCC 8th)"


def check_diagnosis(value: str | None, *, where: str = "--diagnosis") -> str | None:
    """The diagnosis in its canonical spelling (``None``/empty -> ``None``); raises a one-line
    :class:`InputError` naming ``where`` for any other value."""
    if value is None or not str(value).strip():
        return None
    key = " ".join(str(value).strip().lower().replace("_", " ").replace("nevus", "naevus").split())
    if key not in DIAGNOSES:
        raise InputError(where, f"unknown diagnosis {value!r}; known: {', '.join(DIAGNOSES)}")
    return key


def pt_category(thickness_mm: float, ulcerated: bool | None) -> str:
    """AJCC 8 pT from the thickness (already rounded to 0.1 mm) and ulceration.

    T1a < 0.8 mm without ulceration; T1b < 0.8 mm with ulceration, or 0.8-1.0 mm; T2 > 1.0-2.0;
    T3 > 2.0-4.0; T4 > 4.0 mm; ``a`` without, ``b`` with ulceration (no letter when
    ulceration is unknown)."""
    t = round(float(thickness_mm), 1)
    if t <= 1.0 and (t >= 0.8 or ulcerated):
        return "pT1b"
    suffix = "" if ulcerated is None else ("b" if ulcerated else "a")
    if t < 0.8:
        return f"pT1{suffix}"
    stage = 2 if t <= 2.0 else 3 if t <= 4.0 else 4
    return f"pT{stage}{suffix}"


def pt_finding(diagnosis: str | None, breslow: Finding, ulceration: Finding, *, lesion_found: bool) -> Finding:
    """The pT line of the draft: only for a stated melanoma with a measured thickness."""
    if diagnosis is None:
        return not_assessed(PT, "no diagnosis stated (give --diagnosis melanoma; the software does not diagnose)")
    if diagnosis == "melanoma in situ":
        return Finding(PT, "pTis", "pTis", "user", "diagnosis stated as melanoma in situ")
    if diagnosis != MELANOMA:
        return not_assessed(PT, f"drafted for melanoma only (diagnosis stated: {diagnosis})", source="user")
    if not lesion_found:
        return not_assessed(PT, "no tumour found", source="user")
    if not breslow.assessed:
        return not_assessed(PT, f"Breslow thickness not assessed ({breslow.reason})", source=breslow.source)
    ulcerated = ulceration.value if ulceration.assessed else None
    value = pt_category(breslow.value, ulcerated)
    if breslow.details.get("at_least"):
        return not_assessed(PT, f"the tumour is transected at {breslow.details.get('transected_at')}: Breslow is at "
                                f"least {breslow.value:.1f} mm, so pT is at least {value}", source=breslow.source,
                            details={"at_least": value, "edition": "AJCC 8th"})
    reason = None if ulcerated is not None else f"ulceration not assessed ({ulceration.reason}): a/b left open"
    return Finding(PT, value, value, breslow.source, reason,
                   details={"thickness_mm": breslow.value, "ulceration": ulcerated, "edition": "AJCC 8th"})
