"""Device choice in one place: ``cuda`` > ``mps`` > ``cpu``, overridable."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from tiling.errors import InputError

VALID = ("auto", "cpu", "cuda", "mps")


def select_device(preference: str | None = "auto") -> torch.device:
    """Return the torch device to run on.

    ``preference`` is ``"auto"`` (or ``None``), ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or
    ``"mps"``. Asking for a device that is not present is an :class:`InputError`.
    """
    pref = (preference or "auto").lower()
    if pref == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    kind = pref.split(":")[0]
    if kind not in VALID:
        raise InputError(None, f"unknown device {preference!r}; use one of auto, cpu, cuda, cuda:N, mps")
    if kind == "cuda" and not torch.cuda.is_available():
        raise InputError(None, "device 'cuda' requested but no CUDA GPU is available; use --device cpu")
    if kind == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise InputError(None, "device 'mps' requested but MPS is not available; use --device cpu")
    return torch.device(pref)


@contextlib.contextmanager
def inference_context(device: torch.device) -> Iterator[None]:
    """``torch.inference_mode`` plus fp16 autocast on CUDA."""
    with torch.inference_mode():
        if device.type == "cuda":
            with torch.autocast("cuda", dtype=torch.float16):
                yield
        else:
            yield
