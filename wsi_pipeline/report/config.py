"""Settings of the synoptic draft (``configs/synoptic.yaml``): ulcer detection and TIL grading.

Margin settings stay in ``configs/margins.yaml`` (:mod:`wsi_pipeline.report.margins.config`).
Validated with pydantic; an unknown key is refused with the key named.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tiling.errors import InputError
from wsi_pipeline.report.margins.config import _describe
from wsi_pipeline.report.tils import TilConfig


class SynopticConfig(BaseModel):
    """min_ulcer_um : shorter gaps in the epidermis over tumour are not reported as ulceration
    (map noise; what makes a gap an ulcer is the margin config's ``ulcer_depth_um``);
    ulcer_cells_um : an ulcer base point whose nearest Epithelial/Tumor nucleus within this
    distance is Epithelial is covered by epidermis (the map missed it), not ulcerated;
    tils : :class:`~wsi_pipeline.report.tils.TilConfig`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_ulcer_um: float = Field(30.0, ge=0)
    ulcer_cells_um: float = Field(20.0, gt=0)
    tils: TilConfig = Field(default_factory=TilConfig)


def default_synoptic_path() -> Path:
    from configs import CONFIG_DIR

    return CONFIG_DIR / "synoptic.yaml"


def load_synoptic_config(path: str | Path | None = None) -> SynopticConfig:
    """Read and validate a synoptic YAML (``None``: the packaged ``configs/synoptic.yaml``)."""
    path = Path(path) if path is not None else default_synoptic_path()
    if not path.is_file():
        raise InputError(path, "no such config file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise InputError(path, f"not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise InputError(path, "expected a mapping of settings at the top level")
    try:
        return SynopticConfig.model_validate(data)
    except ValidationError as exc:
        raise InputError(path, _describe(exc)) from None
