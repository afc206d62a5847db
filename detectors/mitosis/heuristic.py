"""A weight-free mitotic-figure scorer: hand-set rules on crop features, in torch.

UNVALIDATED. It exists so a run without a trained model still points at the most
mitosis-like nuclei (dark, condensed, clumped chromatin with a sharp edge and a clear halo);
its output must be reviewed and is labelled ``Mitosis candidate (unvalidated)``.

Per crop ``(S, S, 3)`` uint8 at 0.25 µm/px (the figure at the centre):

* ``peak`` : 95th percentile of hematoxylin OD within ``core_um`` of the centre;
* ``relative`` : ``peak`` over the crop's 75th percentile (darker than its neighbours);
* ``condensed`` : the figure mask (OD above ``mask_fraction`` x ``peak`` inside the core)
  is small compared with the core (a clump, not a large vesicular nucleus);
* ``halo`` : contrast between the figure and a ring just outside it (sharp edge, clear
  cytoplasm around; no nucleolus-in-a-nucleus pattern);
* ``irregular`` : boundary pixels per sqrt(area) of the mask (spiky, ragged outlines);
* ``clumped`` : coefficient of variation of OD inside the mask (chromosome clumps).

The score is a logistic of a fixed linear combination of these (weights set by eye on
synthetic figures and MIDOG21 training crops, not fitted, not validated).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from detectors.device import inference_context
from detectors.nuclei.stain import RUIFROK_HE, rgb_to_od, unmix
from detectors.nuclei.watershed import gaussian_blur

FEATURES = ("peak", "relative", "condensed", "halo", "irregular", "clumped")
#: (centre, scale, weight) per feature: z = (f - centre) / scale, score = sigmoid(bias + sum w z)
_WEIGHTS = {
    "peak": (0.6, 0.2, 0.5),
    "relative": (2.4, 0.6, 1.0),
    "condensed": (0.65, 0.15, 0.3),
    "halo": (0.5, 0.1, 0.5),
    "irregular": (5.0, 0.8, 0.8),
    "clumped": (0.14, 0.03, 1.0),
}
_BIAS = -3.0


def _kth(x: torch.Tensor, q: float) -> torch.Tensor:
    """(B,) q-quantile (nearest rank) of x (B, N) along its last dimension."""
    k = min(x.shape[1], max(1, int(round(q * (x.shape[1] - 1))) + 1))
    return torch.kthvalue(x, k, dim=1).values


def _masked_mean(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    m = m.float()
    return (x * m).sum((1, 2, 3)) / m.sum((1, 2, 3)).clamp(min=1.0)


def crop_features(crops: np.ndarray | torch.Tensor, *, mpp: float = 0.25, core_um: float = 5.0,
                  mask_fraction: float = 0.6, device: torch.device | str = "cpu") -> torch.Tensor:
    """(B, S, S, 3) uint8 crops -> (B, len(FEATURES)) float32 features (see module doc)."""
    x = torch.as_tensor(np.ascontiguousarray(crops)).to(device)
    b, s = x.shape[0], x.shape[1]
    h = gaussian_blur(unmix(rgb_to_od(x), RUIFROK_HE)[:, :1].float(), 1.0).clamp(min=0)  # (B,1,S,S)
    yy, xx = torch.meshgrid(torch.arange(s, device=x.device), torch.arange(s, device=x.device), indexing="ij")
    r = torch.hypot(yy - (s - 1) / 2, xx - (s - 1) / 2) * mpp
    core = (r <= core_um)[None, None].expand_as(h)
    flat = h.reshape(b, -1)
    inside = flat[:, core[0, 0].reshape(-1)]  # the core is the same disk in every crop
    peak = _kth(inside, 0.95)
    bg = _kth(flat, 0.75)
    relative = peak / bg.clamp(min=0.05)
    fig = core & (h >= (mask_fraction * peak).view(-1, 1, 1, 1)) & (h > 0.1)
    area = fig.float().sum((1, 2, 3))
    condensed = 1.0 - area / core.float().sum((1, 2, 3))
    grown = F.max_pool2d(fig.float(), 7, stride=1, padding=3) > 0.5
    ring = grown & ~fig
    inner, outer = _masked_mean(h, fig), _masked_mean(h, ring)
    halo = (inner - outer) / inner.clamp(min=1e-3)
    eroded = -F.max_pool2d(-fig.float(), 3, stride=1, padding=1) > 0.5
    boundary = (fig & ~eroded).float().sum((1, 2, 3))
    irregular = boundary / area.clamp(min=1.0).sqrt()
    sq = _masked_mean(h * h, fig)
    clumped = (sq - inner**2).clamp(min=0).sqrt() / inner.clamp(min=1e-3)
    feats = torch.stack([peak, relative, condensed, halo, irregular, clumped], 1)
    feats[area < 4] = 0.0  # nothing dark at the centre
    return torch.nan_to_num(feats.float(), nan=0.0)


def heuristic_probability(feats: torch.Tensor) -> torch.Tensor:
    """(B, len(FEATURES)) features -> (B,) pseudo-probability in (0, 1)."""
    c, sc, w = (torch.tensor([_WEIGHTS[k][i] for k in FEATURES], device=feats.device) for i in range(3))
    z = ((feats - c) / sc).clamp(-2, 2)
    p = torch.sigmoid(_BIAS + (z * w).sum(1))
    return torch.where(feats[:, 0] > 0, p, torch.zeros_like(p))


class HeuristicScorer:
    """The weight-free :class:`~detectors.mitosis.scorer.MitosisScorer` (``validated`` False)."""

    validated = False
    crop_size = 64
    mpp = 0.25

    def __init__(self, *, device: torch.device | str = "cpu", threshold: float = 0.5) -> None:
        self.device = torch.device(device)
        self.threshold = float(threshold)
        self.description = (
            "heuristic mitosis scorer (dark condensed irregular chromatin; no trained weights) - "
            "UNVALIDATED candidates, review them"
        )

    def score(self, crops: np.ndarray) -> np.ndarray:
        """(B, S, S, 3) uint8 -> (B,) float32 pseudo-probability of a mitotic figure."""
        crops = np.asarray(crops)
        if crops.ndim != 4 or crops.shape[-1] != 3 or crops.dtype != np.uint8:
            raise ValueError(f"expected (B, S, S, 3) uint8 crops, got {crops.shape} {crops.dtype}")
        if len(crops) == 0:
            return np.empty(0, np.float32)
        with inference_context(self.device), torch.autocast(self.device.type, enabled=False):
            p = heuristic_probability(crop_features(crops, mpp=self.mpp, device=self.device))
        return p.float().cpu().numpy()
