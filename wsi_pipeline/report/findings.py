"""One line of the synoptic draft: :class:`Finding` (value, how it is shown, source, reason).

Every number a pathologist signs says where it came from (``source``: "drawn", "model",
"proposed", "summary.json", "user") and is ``assessed: false`` with a ``reason`` when the
evidence is missing, never a guess.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from wsi_pipeline.reasons import NOT_ASSESSED


@dataclass(frozen=True)
class Finding:
    """name : e.g. "Breslow thickness"; value : JSON-ready (``None`` when not assessed);
    display : the text on the report; source : where the evidence came from; reason : why it
    is not assessed (or a caveat); details : extra JSON-ready facts."""

    name: str
    value: object
    display: str
    source: str = ""
    reason: str | None = None
    details: dict = field(default_factory=dict)

    @property
    def assessed(self) -> bool:
        return self.value is not None

    def to_dict(self) -> dict:
        return {"name": self.name, "assessed": self.assessed, "value": self.value, "display": self.display,
                "source": self.source, "reason": self.reason, **({"details": self.details} if self.details else {})}

    @classmethod
    def from_dict(cls, d: dict) -> "Finding":
        return cls(d["name"], d.get("value"), d.get("display", ""), d.get("source", ""), d.get("reason"),
                   dict(d.get("details") or {}))


def not_assessed(name: str, reason: str, *, source: str = "", details: dict | None = None) -> Finding:
    """A finding without a value: shown as "not assessed" with its reason."""
    return Finding(name, None, NOT_ASSESSED, source, reason, dict(details or {}))


def weakest(*sources: str) -> str:
    """The least certain of several sources ("proposed" < "model" < "drawn")."""
    order = {"proposed": 0, "model": 1, "drawn": 2}
    known = [s for s in sources if s in order]
    return min(known, key=order.__getitem__) if known else (sources[0] if sources else "")
