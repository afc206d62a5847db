"""An inflammation focus: a dense lymphoid aggregate in the dermis (the Inflammation truth).

The focus is a wobbly ellipse (long axis roughly parallel to the skin surface, as
superficial and perivascular dermal aggregates lie) placed in the dermis away from the
epidermis, the tumour and the tissue edge. Inside it lymphocytes are packed as in a real
aggregate (small round dark nuclei almost touching, about 10,000-13,000 per mm^2 after the
non-overlap thinning); a thin halo around it holds scattered lymphocytes so the focus fades
into the dermis. Everything here draws from its own random generator (seeded from the
scene's seed), so switching the focus on or off leaves the rest of the scene unchanged
except for the dermal nuclei it displaces.
"""

from __future__ import annotations

import math

import numpy as np
from shapely.geometry import Polygon
from shapely.geometry.base import BaseGeometry

from wsi_pipeline.synthetic.nuclei import LYMPHOCYTE, Nuclei, _make, _sample_in

#: candidate lymphocytes per mm^2 inside the focus (the greedy non-overlap thinning keeps
#: a jammed packing of 6-um nuclei, about 14,000 per mm^2)
FOCUS_CANDIDATES_PER_MM2 = 150000.0
HALO_PER_MM2 = 2500.0  # scattered lymphocytes in the halo around the focus
HALO_UM = 30.0
DEFAULT_SIZE_UM = 220.0  # long axis of the focus
MIN_SIZE_UM = 100.0
EPIDERMIS_CLEARANCE_UM = 80.0
TUMOR_CLEARANCE_UM = 150.0
EDGE_CLEARANCE_UM = 120.0


def rng_for(seed: int) -> np.random.Generator:
    """The focus' own generator (independent of the scene's main stream)."""
    return np.random.default_rng([int(seed), 0x1F1A])


def _outline(cx, cy, a, b, angle, rng, n=128) -> Polygon:
    t = np.linspace(0.0, 2 * np.pi, n, endpoint=False)
    r = 1 + 0.06 * np.cos(3 * t + rng.uniform(0, 6.3)) + 0.04 * np.cos(5 * t + rng.uniform(0, 6.3))
    u, v = a * r * np.cos(t), b * r * np.sin(t)
    ca, sa = math.cos(angle), math.sin(angle)
    return Polygon(np.stack([cx + u * ca - v * sa, cy + u * sa + v * ca], axis=1))


def place_focus(
    tissue: BaseGeometry,
    *,
    epidermis: BaseGeometry,
    tumor: BaseGeometry | None,
    px: float,
    rng: np.random.Generator,
    size_um: float = DEFAULT_SIZE_UM,
) -> Polygon | None:
    """The focus outline (level-0 px) inside ``tissue`` clear of ``epidermis`` (with keratin),
    ``tumor`` and the tissue edge; ``size_um`` is the long axis, shrunk (down to
    :data:`MIN_SIZE_UM`) until it fits; None when even that does not fit."""
    room = tissue.buffer(-EDGE_CLEARANCE_UM * px).difference(epidermis.buffer(EPIDERMIS_CLEARANCE_UM * px))
    if tumor is not None and not tumor.is_empty:
        room = room.difference(tumor.buffer(TUMOR_CLEARANCE_UM * px))
    aspect = rng.uniform(0.55, 0.75)
    angle = rng.uniform(-0.35, 0.35)
    size = float(size_um)
    while size >= MIN_SIZE_UM:
        a = 0.5 * size * px
        centres = room.buffer(-1.08 * a)  # the whole (wobbly) ellipse fits in the room
        if not centres.is_empty and centres.area > 1.0:
            (cx, cy), = _sample_in(centres, 1, rng)
            return _outline(cx, cy, a, a * aspect, angle, rng)
        size *= 0.8
    return None


def focus_lymphocytes(
    focus: BaseGeometry, *, px: float, rng: np.random.Generator, keep_out: BaseGeometry | None
) -> Nuclei:
    """Lymphocyte candidates: packed inside ``focus``, sparse in its halo (before thinning;
    the densest first so the thinning keeps them)."""
    mm2 = (1e-3 / px) ** 2
    inside = focus.buffer(-2.0 * px)
    halo = focus.buffer(HALO_UM * px).difference(focus)
    if keep_out is not None and not keep_out.is_empty:
        inside, halo = inside.difference(keep_out), halo.difference(keep_out)
    parts = []
    for region, density in ((inside, FOCUS_CANDIDATES_PER_MM2), (halo, HALO_PER_MM2)):
        n = int(rng.poisson(density * region.area * mm2)) if not region.is_empty else 0
        parts.append(_make(LYMPHOCYTE, _sample_in(region, n, rng), rng, px))
    return Nuclei.concatenate(parts)
