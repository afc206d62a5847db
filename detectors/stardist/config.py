"""StarDist2D configuration as stardist writes it (``config.json`` + ``thresholds.json``).

Only the fields that shape the network and its post-processing are typed here; every other
key of ``config.json`` (training settings) is kept verbatim in :attr:`StarDistConfig.extra`
so a folder we write can still be opened by stardist itself.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from detectors.registry import sha256_of
from tiling.errors import InputError

#: The architecture of the published ``2D_versatile_he`` model (stardist's Config2D defaults
#: with 3 input channels, 32 rays and a (2, 2) grid).
VERSATILE_HE = {
    "n_rays": 32,
    "grid": (2, 2),
    "n_channel_in": 3,
    "unet_n_depth": 3,
    "unet_kernel_size": (3, 3),
    "unet_n_filter_base": 32,
    "unet_n_conv_per_depth": 2,
    "unet_pool": (2, 2),
    "unet_expansion": 2,
    "net_conv_after_unet": 128,
}


@dataclass(frozen=True)
class StarDistConfig:
    """Architecture of a StarDist2D U-Net (stardist's ``Config2D`` names).

    ``grid`` is the (y, x) subsampling of the output maps relative to the input.
    """

    n_rays: int = 32
    grid: tuple[int, int] = (1, 1)
    n_channel_in: int = 1
    unet_n_depth: int = 3
    unet_kernel_size: tuple[int, int] = (3, 3)
    unet_n_filter_base: int = 32
    unet_n_conv_per_depth: int = 2
    unet_pool: tuple[int, int] = (2, 2)
    unet_expansion: int = 2
    unet_activation: str = "relu"
    unet_last_activation: str = "relu"
    unet_batch_norm: bool = False
    unet_prefix: str = ""
    net_conv_after_unet: int = 128
    n_classes: int | None = None
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        for name in ("grid", "unet_kernel_size", "unet_pool"):
            object.__setattr__(self, name, tuple(int(v) for v in getattr(self, name)))
        if any(g & (g - 1) or g < 1 for g in self.grid):
            raise ValueError(f"grid must be powers of two, got {self.grid}")
        if self.unet_activation != "relu" or self.unet_last_activation != "relu":
            raise ValueError("only relu activations are supported")
        if self.unet_batch_norm:
            raise ValueError("unet_batch_norm=True is not supported")
        if self.n_classes is not None:
            raise ValueError("multi-class StarDist (n_classes) is not supported")

    @property
    def div_by(self) -> tuple[int, int]:
        """Input sides must be multiples of this (pooling depth times grid)."""
        return tuple(p**self.unet_n_depth * g for p, g in zip(self.unet_pool, self.grid))

    def to_dict(self) -> dict:
        d = dict(self.extra)
        d.update({
            "n_dim": 2,
            "axes": "YXC",
            "n_channel_out": 1 + self.n_rays,
            "backbone": "unet",
            "n_rays": self.n_rays,
            "grid": list(self.grid),
            "n_channel_in": self.n_channel_in,
            "unet_n_depth": self.unet_n_depth,
            "unet_kernel_size": list(self.unet_kernel_size),
            "unet_n_filter_base": self.unet_n_filter_base,
            "unet_n_conv_per_depth": self.unet_n_conv_per_depth,
            "unet_pool": list(self.unet_pool),
            "unet_expansion": self.unet_expansion,
            "unet_activation": self.unet_activation,
            "unet_last_activation": self.unet_last_activation,
            "unet_batch_norm": self.unet_batch_norm,
            "unet_dropout": 0.0,
            "unet_prefix": self.unet_prefix,
            "net_conv_after_unet": self.net_conv_after_unet,
            "n_classes": self.n_classes,
            "net_input_shape": [None, None, self.n_channel_in],
            "net_mask_shape": [None, None, 1],
        })
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "StarDistConfig":
        typed = {k for k in cls.__dataclass_fields__ if k != "extra"}
        kwargs = {k: d[k] for k in typed if k in d}
        extra = {k: v for k, v in d.items() if k not in typed}
        if d.get("backbone", "unet") != "unet":
            raise ValueError(f"backbone {d.get('backbone')!r} is not supported (only unet)")
        return cls(**kwargs, extra=extra)


@dataclass(frozen=True)
class Thresholds:
    """Post-processing thresholds (stardist's ``thresholds.json``)."""

    prob: float = 0.5
    nms: float = 0.4

    def to_dict(self) -> dict:
        return {"prob": float(self.prob), "nms": float(self.nms)}

    @classmethod
    def from_dict(cls, d: dict) -> "Thresholds":
        return cls(prob=float(d["prob"]), nms=float(d["nms"]))


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(path, "missing (a StarDist model folder needs config.json and weights)") from None
    except (OSError, ValueError) as exc:
        raise InputError(path, f"cannot read JSON: {exc}") from None


def read_model_folder(path: str | Path) -> tuple[StarDistConfig, Thresholds, Path]:
    """Config, thresholds and weights file of a StarDist model folder.

    The folder holds ``config.json``, ``thresholds.json`` (optional: stardist's defaults
    prob 0.5 / nms 0.4) and weights (``weights_best.h5``, else ``weights_last.h5``,
    else ``weights.pt``).
    """
    folder = Path(path)
    if not folder.is_dir():
        raise InputError(folder, "not a folder (a StarDist model folder: config.json, thresholds.json, weights_best.h5)")
    try:
        config = StarDistConfig.from_dict(_read_json(folder / "config.json"))
    except (TypeError, ValueError) as exc:
        raise InputError(folder / "config.json", f"unsupported StarDist config: {exc}") from None
    thr_path = folder / "thresholds.json"
    thresholds = Thresholds.from_dict(_read_json(thr_path)) if thr_path.exists() else Thresholds()
    for name in ("weights_best.h5", "weights_last.h5", "weights.pt"):
        if (folder / name).is_file():
            check_weights_hash(folder / name, config.extra)
            return config, thresholds, folder / name
    raise InputError(folder, "no weights (expected weights_best.h5, weights_last.h5 or weights.pt)")


def check_weights_hash(weights: Path, extra: dict) -> None:
    """A shipped folder records its weights' sha256 (``"wsi_pipeline"."weights_sha256"`` in
    config.json); weights that do not match are a corrupt or mismatched folder."""
    meta = extra.get("wsi_pipeline")
    expected = meta.get("weights_sha256") if isinstance(meta, dict) else None
    if expected and sha256_of(weights) != expected:
        raise InputError(weights, "sha256 differs from the one config.json records: the model folder is corrupt or "
                                  "its files come from different models")


def write_model_folder(folder: str | Path, config: StarDistConfig, thresholds: Thresholds) -> None:
    """Write ``config.json`` and ``thresholds.json`` (weights are written separately)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config.to_dict(), indent=2))
    (folder / "thresholds.json").write_text(json.dumps(thresholds.to_dict(), indent=2))
