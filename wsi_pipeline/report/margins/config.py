"""Margin configuration: ink colour -> named margin, thresholds (``configs/margins.yaml``).

Validated with pydantic; unknown keys are rejected and the error names the key, so a typo
never silently falls back to a default.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from tiling.errors import InputError

INK_COLOURS = ("black", "blue", "green", "red", "yellow", "orange", "purple")
"""Ink colours the tissue detector reports (``"Ink: <colour>"`` features)."""

UNINKED = "uninked"
SCAN_BORDER = "scan border"
"""Edge where the tissue is cut by the border of the scanned area: not a surgical margin."""
SURFACE = "epidermal surface"
"""Uninked edge with the epidermis right under it: the skin's surface, not a surgical margin."""


class ProposalConfig(BaseModel):
    """Thresholds for proposing a lesion from nuclei (see :mod:`.lesion`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    grid_um: float = Field(25.0, gt=0)
    smooth_cells: float = Field(1.0, ge=0)
    min_density_per_mm2: float = Field(3500.0, ge=0)
    min_mean_area_um2: float = Field(35.0, ge=0)
    min_region_mm2: float = Field(0.01, ge=0)
    enabled: bool = False


class MarginConfig(BaseModel):
    """Everything :func:`wsi_pipeline.report.margins.compute.compute_margins` needs to know."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    margins: dict[str, str] = Field(default_factory=lambda: {"black": "deep"})
    uninked_name: str = "uninked edge"
    surface_name: str = "epidermal surface"
    surface_is_margin: bool = False
    surface_distance_um: float = Field(80.0, ge=0)
    ulcer_depth_um: float = Field(100.0, ge=0)
    close_mm: float = Field(1.0, ge=0)
    ink_distance_um: float = Field(150.0, ge=0)
    profile_step_um: float = Field(50.0, gt=0)
    proposal: ProposalConfig = Field(default_factory=ProposalConfig)

    @field_validator("margins")
    @classmethod
    def _known_colours(cls, value: dict[str, str]) -> dict[str, str]:
        out = {}
        for colour, name in value.items():
            key = str(colour).strip().lower()
            if key not in INK_COLOURS:
                raise ValueError(f"unknown ink colour {colour!r} (known: {', '.join(INK_COLOURS)})")
            out[key] = str(name)
        return out

    def margin_name(self, colour: str) -> str:
        """The named margin for an ink colour (``"uninked"`` -> :attr:`uninked_name`)."""
        if colour == UNINKED:
            return self.uninked_name
        if colour == SURFACE:
            return self.surface_name
        return self.margins.get(colour, f"{colour} ink (not in config)")


def default_config_path() -> Path:
    from configs import CONFIG_DIR

    return CONFIG_DIR / "margins.yaml"


def load_margin_config(path: str | Path | None = None) -> MarginConfig:
    """Read and validate a margins YAML; ``None`` reads the packaged ``configs/margins.yaml``.

    Raises :class:`InputError` naming the file and the offending key.
    """
    path = Path(path) if path is not None else default_config_path()
    if not path.is_file():
        raise InputError(path, "no such config file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise InputError(path, f"not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise InputError(path, "expected a mapping of settings at the top level")
    try:
        return MarginConfig.model_validate(data)
    except ValidationError as exc:
        raise InputError(path, _describe(exc)) from None


def _describe(exc: ValidationError) -> str:
    err = exc.errors()[0]
    key = ".".join(str(p) for p in err["loc"]) or "(top level)"
    if err["type"] == "extra_forbidden":
        return f"unknown key {key!r}"
    return f"bad value for {key!r}: {err['msg']}"
