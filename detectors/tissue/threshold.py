"""A threshold learned from an image's own histogram (Otsu's method), in torch."""

from __future__ import annotations

import torch


def otsu_threshold(values: torch.Tensor, *, bins: int = 256, value_range: tuple[float, float] = (0.0, 1.0)) -> float:
    """Otsu's threshold of ``values`` (any shape) binned over ``value_range``.

    Maximises the between-class variance ``w0 * w1 * (mu0 - mu1)^2`` over the bin edges.
    Returns the upper edge of the last bin of the low class (the middle of the gap when
    empty bins separate the classes). A constant input returns its value.
    """
    lo, hi = value_range
    v = values.detach().float().reshape(-1)
    hist = torch.histc(v.clamp(lo, hi), bins=bins, min=lo, max=hi).double()
    total = hist.sum()
    if total == 0:
        return float(lo)
    width = (hi - lo) / bins
    centres = lo + width * (torch.arange(bins, dtype=torch.float64, device=hist.device) + 0.5)
    w0 = torch.cumsum(hist, 0)
    m0 = torch.cumsum(hist * centres, 0)
    w1 = total - w0
    mu0 = m0 / w0.clamp_min(1e-12)
    mu1 = (m0[-1] - m0) / w1.clamp_min(1e-12)
    between = w0 * w1 * (mu0 - mu1) ** 2
    between[(w0 == 0) | (w1 == 0)] = -1.0
    if float(between.max()) <= 0:
        return float(v.mean())
    best = torch.nonzero(between >= between.max() * (1 - 1e-9)).reshape(-1).double()
    k = float(best.mean())  # the middle of a plateau (empty bins between two modes)
    return float(lo + width * (k + 1))


def tissue_threshold(
    score: torch.Tensor, *, floor: float = 0.06, ceiling: float = 0.16, bins: int = 256
) -> float:
    """Tissue/glass threshold for a ``tissue_score`` map, learned from its histogram.

    Otsu's split of the scores, kept within ``[floor, ceiling]``: the floor keeps a slide
    that is nearly all glass (whose histogram has only glass noise to split) from turning
    noise into tissue; the ceiling keeps a slide that is nearly all dark tissue from putting
    its pale tissue on the glass side.
    """
    t = otsu_threshold(score, bins=bins, value_range=(0.0, 1.0))
    return float(min(max(t, floor), ceiling))
