"""Run configuration: YAML files in ``configs/`` validated with pydantic.

Unknown or mistyped keys are rejected with the key named (an :class:`InputError`).
The resolved config is written into every ``summary.json`` and hashed into the batch
done-markers, so a changed config re-runs the slides it affects.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from configs import CONFIG_DIR
from tiling.errors import InputError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TissueConfig(_Strict):
    mpp: float = Field(8.0, gt=0, description="resolution of tissue detection (µm/px)")
    min_tile_tissue_fraction: float = Field(0.05, ge=0, le=1)
    stain_check: bool = Field(True, description="a slide whose tissue shows no eosin (not H&E, e.g. IHC) gets tissue "
                              "and nuclei only: cell types, tissue map, mitoses and the report are not assessed; "
                              "false: treat every slide as H&E")


class NucleiConfig(_Strict):
    enabled: bool = True
    model: str = Field("auto", description="'auto' (StarDist if a model is installed, else weight-free), 'weightfree', 'weightfree-fast' (one threshold level, ~2x faster), a registry name or a model folder")
    batch_size: int = Field(8, ge=1)
    tile_size: int | None = Field(None, ge=64, description="override the detector's tile size (px at its mpp)")
    mpp: float | None = Field(None, gt=0, description="weight-free detector's working resolution (µm/px); none -> 0.5, "
                                                      "never finer than the slide (a slide is never upsampled)")


class CellsConfig(_Strict):
    enabled: bool = True
    model: str | None = Field(None, description="model folder from `train cells`; none -> the weight-free rules")


class RegionsConfig(_Strict):
    enabled: bool = True
    model: str | None = Field(None, description="model folder from `train tissue`; none -> the weight-free map")
    grid_um: float = Field(8.0, ge=2.0, le=64.0, description="label map pixel size (µm)")


class MitosisConfig(_Strict):
    enabled: bool = True
    model: str | None = Field(None, description="model folder from `train mitosis`; none -> heuristic, unvalidated")
    hotspot_area_mm2: float = Field(1.0, gt=0)
    batch_size: int = Field(32, ge=1)


class OutputConfig(_Strict):
    ome_zarr: bool = False
    overview_max_size: int = Field(1600, ge=128)
    deidentify: bool = False


class SlurmConfig(_Strict):
    queue: str | None = None
    account: str | None = None
    cores: int = Field(4, ge=1)
    memory: str = "16GB"
    walltime: str = "08:00:00"
    jobs: int = Field(2, ge=1)
    gpus_per_job: int = Field(0, ge=0)
    job_extra_directives: tuple[str, ...] = ()


class ClusterConfig(_Strict):
    kind: Literal["inprocess", "local", "scheduler", "slurm"] = "local"
    scheduler_address: str | None = None
    workers: int = Field(0, ge=0, description="worker processes of the embedded LocalCluster; 0: one per CPU core")
    threads_per_worker: int = Field(1, ge=1)
    memory_limit: str = "6GB"
    slurm: SlurmConfig = SlurmConfig()


class PipelineConfig(_Strict):
    device: str = "auto"
    tissue: TissueConfig = TissueConfig()
    nuclei: NucleiConfig = NucleiConfig()
    cells: CellsConfig = CellsConfig()
    regions: RegionsConfig = RegionsConfig()
    mitosis: MitosisConfig = MitosisConfig()
    output: OutputConfig = OutputConfig()
    cluster: ClusterConfig = ClusterConfig()

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def hash(self) -> str:
        """Stable hash of the settings that change results (not the cluster layout)."""
        d = self.to_dict()
        d.pop("cluster", None)
        blob = json.dumps(d, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def updated(self, **dotted: Any) -> "PipelineConfig":
        """A copy with ``section.key=value`` overrides (``None`` values ignored)."""
        d = self.to_dict()
        for key, value in dotted.items():
            if value is None:
                continue
            node = d
            *parents, leaf = key.split(".")
            for p in parents:
                node = node[p]
            node[leaf] = value
        return _validate(d, source="command line")


def _format_error(err: ValidationError, source: str) -> str:
    first = err.errors()[0]
    key = ".".join(str(p) for p in first["loc"]) or "(top level)"
    if first["type"] == "extra_forbidden":
        return f"unknown key '{key}' in {source}"
    return f"bad value for '{key}' in {source}: {first['msg']}"


def _validate(data: Any, *, source: str) -> PipelineConfig:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InputError(source, "a config must be a YAML mapping of sections")
    try:
        return PipelineConfig.model_validate(data)
    except ValidationError as err:
        raise InputError(None, _format_error(err, source)) from None


def load_config(path: str | Path | None = None) -> PipelineConfig:
    """Load a YAML config (a path, or a name in ``configs/`` like ``cpu-fast``); ``None`` -> default."""
    if path is None:
        path = CONFIG_DIR / "default.yaml"
    p = Path(path)
    if not p.exists() and (CONFIG_DIR / f"{p.name}.yaml").exists():
        p = CONFIG_DIR / f"{p.name}.yaml"
    if not p.is_file():
        raise InputError(p, "config file not found")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", None)
        where = f" (line {line + 1})" if line is not None else ""
        raise InputError(p, f"not valid YAML{where}") from None
    return _validate(data, source=str(p))
