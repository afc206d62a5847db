"""Training augmentation for the mitosis crop classifier, in torch (CPU-cheap).

Two families, both random per sample:

* **stain**: hematoxylin and eosin concentrations scaled and shifted (colour deconvolution
  with the Ruifrok vectors, then remixed), brightness;
* **scanner** (``scanner=True``): what differs between scanners and sites besides stain:
  resolution (scale 0.92-1.08, i.e. 0.23-0.27 µm/px read as 0.25), focus (Gaussian blur,
  or the scanner's sharpening: an unsharp mask), contrast and gamma, JPEG compression (quality 30-95), any rotation.

Geometry (shift up to the patch margin, rotation, scale, flip) is one affine resampling of
the patch, so the output crop never shows the patch's edge for shifts within the margin.
"""

from __future__ import annotations

import io
import math

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from detectors.nuclei.stain import RUIFROK_HE, stain_matrix

_MIX = torch.as_tensor(stain_matrix(RUIFROK_HE), dtype=torch.float32)
_UNMIX = torch.linalg.inv(_MIX)
SCALE_RANGE = (0.92, 1.08)
JPEG_QUALITY = (30, 95)


def _u(gen: torch.Generator, shape, lo: float, hi: float) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(shape, generator=gen)


def stain_jitter(x: torch.Tensor, gen: torch.Generator, *, strength: float = 1.0) -> torch.Tensor:
    """(B, 3, H, W) float RGB in [0, 1] -> the same with H&E concentrations jittered."""
    b = x.shape[0]
    od = -torch.log10(x.clamp(min=1.0 / 255.0))
    conc = torch.einsum("bchw,cs->bshw", od, _UNMIX)  # hematoxylin, eosin, residual
    amp = torch.tensor([0.5, 0.5, 0.2]).view(1, 3, 1, 1) * strength
    scale = 1.0 + (torch.rand(b, 3, 1, 1, generator=gen) - 0.5) * amp
    shift = (torch.rand(b, 3, 1, 1, generator=gen) - 0.5) * torch.tensor([0.1, 0.1, 0.02]).view(1, 3, 1, 1) * strength
    od = torch.einsum("bshw,sc->bchw", conc * scale + shift, _MIX).clamp(min=0)
    return (10.0 ** (-od)).clamp(0, 1)


def _geometry(x: torch.Tensor, size: int, gen: torch.Generator, *, scanner: bool) -> torch.Tensor:
    """(B, 3, P, P) -> (B, 3, size, size): random shift within the margin, flip, rotation
    (any angle with ``scanner``, else multiples of 90°) and scale (``scanner`` only)."""
    b, p = x.shape[0], x.shape[-1]
    z = _u(gen, b, *SCALE_RANGE) if scanner else torch.ones(b)
    if scanner:
        ang = _u(gen, b, 0.0, 2 * math.pi)
    else:
        ang = torch.randint(0, 4, (b,), generator=gen).float() * (math.pi / 2)
    # the largest shift that keeps the rotated, scaled crop inside the patch
    half_extent = size * z / 2 * (torch.cos(ang).abs() + torch.sin(ang).abs())
    room = (p / 2 - half_extent).clamp(min=0)
    t = (torch.rand(b, 2, generator=gen) * 2 - 1) * room[:, None]
    flip = torch.where(torch.rand(b, generator=gen) < 0.5, -1.0, 1.0)
    s = size * z / p  # output [-1, 1] covers size * z input px
    cos, sin = torch.cos(ang) * s, torch.sin(ang) * s
    theta = torch.stack([torch.stack([cos * flip, -sin, t[:, 0] * 2 / p], 1),
                         torch.stack([sin * flip, cos, t[:, 1] * 2 / p], 1)], 1)
    grid = F.affine_grid(theta, (b, 3, size, size), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def _blur(x: torch.Tensor, gen: torch.Generator, p: float = 0.5, p_sharpen: float = 0.25) -> torch.Tensor:
    """Gaussian blur, sigma 0.3-1.2 px, on a random ``p`` of the batch; on another random
    ``p_sharpen`` the opposite, an unsharp mask (amount 0.3-1.2 at the same sigmas): scanners
    differ as much in sharpening as in focus, and a model trained on soft scans alone
    misses the figures of a sharp one."""
    b = x.shape[0]
    sigma = _u(gen, b, 0.3, 1.2)
    r = torch.rand(b, generator=gen)
    use = r < p + p_sharpen
    if not use.any():
        return x
    amount = torch.where(r < p, torch.full((b,), -1.0), _u(gen, b, 0.3, 1.2)).view(b, 1, 1, 1)
    blurred = _blur_all(x, sigma, use)
    # amount -1: the blurred image; amount a > 0: x + a * (x - blurred)
    return torch.where(amount < 0, blurred, (x + amount * (x - blurred)).clamp(0, 1))


def _blur_all(x: torch.Tensor, sigma: torch.Tensor, use: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian blur of the samples where ``use``, sigma per sample."""
    b = x.shape[0]
    r = torch.arange(-2, 3, dtype=torch.float32)
    k = torch.exp(-(r[None] ** 2) / (2 * sigma[:, None] ** 2))
    k = k / k.sum(1, keepdim=True)  # (B, 5)
    k = torch.where(use[:, None], k, torch.tensor([0.0, 0.0, 1.0, 0.0, 0.0]))
    w = k.repeat_interleave(3, 0)  # (B*3, 5)
    y = x.reshape(1, -1, *x.shape[2:])
    y = F.conv2d(F.pad(y, (2, 2, 0, 0), mode="reflect"), w[:, None, None, :], groups=w.shape[0])
    y = F.conv2d(F.pad(y, (0, 0, 2, 2), mode="reflect"), w[:, None, :, None], groups=w.shape[0])
    return y.reshape(x.shape)


def _tone(x: torch.Tensor, gen: torch.Generator, *, scanner: bool) -> torch.Tensor:
    """Brightness (both), contrast and gamma (``scanner``)."""
    b = x.shape[0]
    x = x * _u(gen, (b, 1, 1, 1), 0.9, 1.1)
    if scanner:
        mean = x.mean((1, 2, 3), keepdim=True)
        x = (x - mean) * _u(gen, (b, 1, 1, 1), 0.85, 1.15) + mean
        x = x.clamp(0, 1) ** _u(gen, (b, 1, 1, 1), 0.85, 1.15)
    return x.clamp(0, 1)


def _jpeg(x: torch.Tensor, gen: torch.Generator, p: float = 0.3) -> torch.Tensor:
    """JPEG round trip at quality 30-95 on a random ``p`` of the batch (PIL)."""
    use = (torch.rand(x.shape[0], generator=gen) < p).tolist()
    q = torch.randint(JPEG_QUALITY[0], JPEG_QUALITY[1] + 1, (x.shape[0],), generator=gen).tolist()
    out = x.clone()
    for i in (i for i, u in enumerate(use) if u):
        arr = (x[i].permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, "JPEG", quality=q[i])
        with Image.open(buf) as im:
            out[i] = torch.from_numpy(np.asarray(im.convert("RGB"), np.float32) / 255.0).permute(2, 0, 1)
    return out


def augment(patches: torch.Tensor, size: int, gen: torch.Generator, *, scanner: bool = True) -> torch.Tensor:
    """(B, P, P, 3) uint8 patches centred on the object -> (B, 3, size, size) float in [0, 1]."""
    x = patches.permute(0, 3, 1, 2).float().div_(255.0)
    x = _geometry(x, size, gen, scanner=scanner)
    x = stain_jitter(x, gen, strength=1.3 if scanner else 1.0)
    if scanner:
        x = _blur(x, gen)
    x = _tone(x, gen, scanner=scanner)
    if scanner:
        x = _jpeg(x, gen)
    return x
