"""Known models as data (``detectors/models.yaml``) and their download cache.

Nothing here touches the network unless :func:`fetch_model` is called (``wsi-pipeline
models fetch NAME``). A download is written to a temporary name, its sha256 compared with
the pinned one, and only then unpacked into the cache. An entry whose ``sha256`` is null
is verified on first download: the hash it had is recorded next to it
(``<name>.sha256``) and shown, so the user can pin it in ``models.yaml``.

Cache: ``$WSI_PIPELINE_MODELS`` or ``~/.cache/wsi-pipeline/models``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

import yaml

from tiling.errors import InputError

REGISTRY = Path(__file__).with_name("models.yaml")


@dataclass(frozen=True)
class ModelEntry:
    """One downloadable model."""

    name: str
    kind: str
    url: str
    sha256: str | None
    mpp: float | None
    description: str = ""
    licence: str = ""
    source: str = ""

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, name: str, d: dict) -> "ModelEntry":
        fields = {k: d.get(k) for k in cls.__dataclass_fields__ if k != "name" and k in d}
        return cls(name=name, **fields)


def load_registry(path: str | Path = REGISTRY) -> dict[str, ModelEntry]:
    """name -> :class:`ModelEntry` from a models YAML file."""
    data = yaml.safe_load(Path(path).read_text()) or {}
    return {name: ModelEntry.from_dict(name, d) for name, d in (data.get("models") or {}).items()}


def cache_dir() -> Path:
    env = os.environ.get("WSI_PIPELINE_MODELS")
    return Path(env) if env else Path.home() / ".cache" / "wsi-pipeline" / "models"


def _model_root(folder: Path) -> Path | None:
    """The folder holding config.json: ``folder`` itself or its only sub-folder that has one."""
    if (folder / "config.json").is_file():
        return folder
    found = sorted(p.parent for p in folder.glob("*/config.json"))
    return found[0] if len(found) == 1 else None


def cached_model(name: str, *, cache: Path | None = None) -> Path | None:
    """The unpacked model folder of a fetched model, or None."""
    folder = (cache or cache_dir()) / name
    return _model_root(folder) if folder.is_dir() else None


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _download(url: str, dest: Path, *, timeout: float) -> None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(dest, "wb") as out:
            shutil.copyfileobj(response, out, 1 << 20)
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        reason = getattr(exc, "reason", exc)
        raise InputError(url, f"cannot download (offline or unreachable: {reason}); download it elsewhere "
                              "and pass the unpacked folder with --nuclei-model PATH") from None


def fetch_model(
    name: str,
    *,
    registry: dict[str, ModelEntry] | None = None,
    cache: Path | None = None,
    timeout: float = 60.0,
    force: bool = False,
) -> Path:
    """Download, verify and unpack model ``name``; returns its model folder (cached)."""
    registry = load_registry() if registry is None else registry
    if name not in registry:
        raise InputError(None, f"unknown model {name!r}; known: {', '.join(sorted(registry)) or 'none'}")
    entry = registry[name]
    cache = cache or cache_dir()
    existing = cached_model(name, cache=cache)
    if existing is not None and not force:
        return existing
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache, prefix=f".{name}-") as tmp:
        archive = Path(tmp) / "download.zip"
        _download(entry.url, archive, timeout=timeout)
        digest = sha256_of(archive)
        if entry.sha256 and digest != entry.sha256.lower():
            raise InputError(entry.url, f"sha256 mismatch: got {digest}, expected {entry.sha256}; not installed")
        unpacked = Path(tmp) / "unpacked"
        try:
            with zipfile.ZipFile(archive) as zf:
                zf.extractall(unpacked)
        except zipfile.BadZipFile:
            raise InputError(entry.url, "download is not a zip archive") from None
        if _model_root(unpacked) is None:
            raise InputError(entry.url, "archive holds no config.json (not a stardist model folder)")
        (unpacked / ".sha256").write_text(digest + "\n")
        target = cache / name
        if target.exists():
            shutil.rmtree(target)
        unpacked.rename(target)
    return _model_root(target)
