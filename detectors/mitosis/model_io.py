"""Mitosis model folders: ``weights.pt`` + ``config.json`` + ``model_card.json``/``.md``.

``config.json`` : ``{"format": "wsi-pipeline-mitosis", "version": 1, "classes": [...],
"crop_size": S, "mpp": 0.25, "threshold": t, "width": w, "weights_sha256": ...,
"validated": false, "validation": "..."}``. ``validated`` says whether the model's
detections may be counted as mitoses and give a mitotic rate; it is ``true`` only with the
evidence written in ``validation`` (e.g. leave-one-scanner-out recall and false detections
per mm² on negative tissue, or a lab's own check with ``wsi-pipeline evaluate --points``).
Without it (and in every folder ``train mitosis`` writes) the model's detections are
unvalidated candidates and the rate is "not assessed".
``model_card.json`` : data sources, split (which slides/images went where), metrics;
``model_card.md`` : the same for people.

A folder is written under a temporary name and renamed into place (never half written).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from detectors.mitosis.classifier import MitosisNet
from tiling.errors import InputError

FORMAT = "wsi-pipeline-mitosis"
FILES = ("weights.pt", "config.json", "model_card.json", "model_card.md")


@dataclass(frozen=True)
class MitosisModelConfig:
    classes: tuple[str, ...]
    crop_size: int = 64
    mpp: float = 0.25
    threshold: float = 0.5
    width: int = 12
    weights_sha256: str = ""
    validated: bool = False
    validation: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.validated, bool):
            raise ValueError(f"validated must be true or false, got {self.validated!r}")
        if self.validated and not self.validation.strip():
            raise ValueError("validated is true but validation (the evidence) is empty")
        if len(self.classes) < 2 or self.classes[0] != "imposter":
            raise ValueError(f"classes must start with 'imposter' and have a mitotic class: {self.classes}")
        if not 32 <= self.crop_size <= 256 or self.crop_size % 16:
            raise ValueError(f"crop_size must be a multiple of 16 in 32..256, got {self.crop_size}")

    def to_dict(self) -> dict:
        return {"format": FORMAT, "version": 1, **asdict(self), "classes": list(self.classes)}

    @classmethod
    def from_dict(cls, d: dict) -> "MitosisModelConfig":
        fields = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        return cls(**{**fields, "classes": tuple(d["classes"])})


def save_model_folder(out: str | Path, net: MitosisNet, config: MitosisModelConfig, card: dict,
                      card_md: str) -> Path:
    """Write the folder atomically (temporary sibling, then rename); returns its path."""
    out = Path(out)
    if out.exists() and not (out / "config.json").exists() and any(out.iterdir()):
        raise InputError(out, "exists and is not a mitosis model folder; refusing to overwrite it")
    out.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in net.state_dict().items()}, buf)
    data = buf.getvalue()
    cfg = MitosisModelConfig(**{**asdict(config), "weights_sha256": hashlib.sha256(data).hexdigest()})
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    tmp.chmod(0o755)
    try:
        (tmp / "weights.pt").write_bytes(data)
        (tmp / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
        (tmp / "model_card.json").write_text(json.dumps(card, indent=2, default=float))
        (tmp / "model_card.md").write_text(card_md)
        if out.exists():
            old = out.with_name(f".{out.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def load_model_folder(folder: str | Path, *, device: torch.device | str = "cpu") -> tuple[MitosisNet, MitosisModelConfig, dict]:
    """(network in eval mode on ``device``, its config, its model card dict)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(folder, "mitosis model folder not found")
    for name in ("weights.pt", "config.json"):
        if not (folder / name).is_file():
            raise InputError(folder, f"not a mitosis model folder (no {name}); make one with `wsi-pipeline train mitosis`")
    try:
        raw = json.loads((folder / "config.json").read_text())
        if raw.get("format") != FORMAT:
            raise InputError(folder / "config.json", f"not a {FORMAT} config (format {raw.get('format')!r})")
        cfg = MitosisModelConfig.from_dict(raw)
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(folder / "config.json", f"invalid mitosis model config ({exc})") from None
    data = (folder / "weights.pt").read_bytes()
    if cfg.weights_sha256 and hashlib.sha256(data).hexdigest() != cfg.weights_sha256:
        raise InputError(folder / "weights.pt", "sha256 differs from config.json: damaged or replaced weights")
    net = MitosisNet(len(cfg.classes), width=cfg.width)
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        net.load_state_dict(state)
    except Exception as exc:  # noqa: BLE001 - any unpickling/shape failure is a bad file
        raise InputError(folder / "weights.pt", f"cannot load weights ({type(exc).__name__}: {exc})") from None
    card_path = folder / "model_card.json"
    card = json.loads(card_path.read_text()) if card_path.is_file() else {}
    return net.to(device).eval(), cfg, card
