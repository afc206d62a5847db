"""Is this an H&E slide? A check on the tissue's colours, before anything H&E-specific runs.

Everything after the nuclei outlines (cell types, the tissue map, mitoses, Breslow, margins,
pT) reads H&E morphology: eosin-pink stroma and cytoplasm, hematoxylin-purple nuclei. An
immunohistochemistry slide (a Melan-A or SOX10 in a melanoma work-up: brown DAB on a blue
hematoxylin counterstain) has no eosin, and a tissue map or a "tumour" drawn on it would be a
guess. The check: the share of tissue pixels (ink excluded) whose colour is pink-purple,
red and blue both above green (``R > G + 20`` and ``B > G + 10`` in 8-bit RGB), as both
H&E dyes are and neither DAB (brown: R > G > B) nor a blue counterstain (B > R) is.

Measured on the data beside this project: every H&E image had at least 46% of its tissue
pixels pink-purple (20 MoNuSeg tiles, 5 organs, min 57%; 400 MIDOG 2021 crops, 4 scanners,
min 46%; CMU-1-Small-Region 93%; the synthetic demo 93%); the sparse IHC slide 0.2%.
:data:`MIN_PINK_FRACTION` (10%) sits far from both. Special stains that are pink-purple too
(PAS) pass as H&E: the check stops the common mistake, it does not name the stain.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

#: below this share of pink-purple tissue pixels a slide is not taken as H&E
MIN_PINK_FRACTION = 0.10
#: fewer tissue pixels than this (at the tissue stage's resolution) and the check abstains
MIN_PIXELS = 400
#: a pixel counts as tissue for the check when its mean optical density exceeds this
MIN_OD = 0.1


@dataclass(frozen=True)
class StainCheck:
    """``he``: True (H&E-like), False (not H&E) or None (too little tissue to tell);
    ``pink_fraction``: share of the tissue pixels that are pink-purple; ``pixels``: tissue
    pixels looked at."""

    he: bool | None
    pink_fraction: float | None
    pixels: int

    def to_dict(self) -> dict:
        d = asdict(self)
        d["pink_fraction"] = None if self.pink_fraction is None else round(self.pink_fraction, 4)
        d["min_pink_fraction"] = MIN_PINK_FRACTION
        return d

    @property
    def reason(self) -> str:
        """One line for the notes: why the slide is (not) taken as H&E."""
        if self.he is None:
            return f"stain check: too little tissue to tell ({self.pixels} px); taken as H&E"
        pct = f"{100 * self.pink_fraction:.1f}% of tissue pixels pink-purple"
        if self.he:
            return f"stain check: H&E ({pct})"
        return (f"stain check: not an H&E slide ({pct}; H&E slides have >= 46%, the threshold is "
                f"{100 * MIN_PINK_FRACTION:.0f}%): no eosin, e.g. immunohistochemistry")


def check_he(rgb: np.ndarray, tissue: np.ndarray | None = None) -> StainCheck:
    """:class:`StainCheck` of ``rgb`` ``(h, w, 3)`` uint8 (a whole-slide thumbnail) over the
    pixels of ``tissue`` ``(h, w)`` bool (default: all) that are not glass (mean optical
    density above :data:`MIN_OD`)."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[-1] < 3:
        raise ValueError(f"expected an (h, w, 3) image, got shape {rgb.shape}")
    px = rgb[..., :3].astype(np.int16)
    od = -np.log10(np.clip(px, 1, 255) / 255.0).mean(-1)
    sel = od > MIN_OD
    if tissue is not None:
        sel &= np.asarray(tissue, bool)
    n = int(sel.sum())
    if n < MIN_PIXELS:
        return StainCheck(None, None, n)
    r, g, b = px[sel].T
    pink = float(((r > g + 20) & (b > g + 10)).mean())
    return StainCheck(pink >= MIN_PINK_FRACTION, pink, n)
