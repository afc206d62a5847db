"""Nuclei and mitotic figures of the synthetic slide: placement without overlap.

Each nucleus is an ellipse (centre, semi-axes, angle) with a stain strength and a type.
Candidates are drawn per region at a physical density (per mm^2), then thinned greedily
with a k-d tree so that no two ellipses overlap (their centres are at least the sum of
their semi-major axes plus a small gap apart): the ground truth is a clean instance map.
Mitoses are placed first and always kept.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely
from scipy.spatial import cKDTree
from shapely.geometry.base import BaseGeometry

DERMAL, LYMPHOCYTE, EPIDERMAL, TUMOR, MITOSIS, ENDOTHELIAL = range(6)
KIND_NAMES = ("dermal", "lymphocyte", "epidermal", "tumor", "mitosis", "endothelial")

# per kind: density per mm^2, semi-major axis range (um), aspect range (a/b), stain range
_KINDS = {
    DERMAL: (1400.0, (3.2, 5.2), (1.8, 3.2), (1.0, 1.35)),
    LYMPHOCYTE: (3500.0, (2.5, 3.2), (1.0, 1.15), (1.7, 2.1)),
    EPIDERMAL: (14000.0, (3.0, 4.0), (1.1, 1.5), (0.85, 1.15)),
    TUMOR: (16000.0, (4.3, 6.0), (1.15, 1.7), (1.6, 2.1)),
}
_GAP_UM = 0.5


@dataclass(frozen=True)
class Nuclei:
    """Equal-length columns, level-0 pixels: ``x, y`` centre, ``a >= b`` semi-axes, ``theta``
    (radians), ``stain`` (hematoxylin optical-density scale), ``kind`` (index into
    :data:`KIND_NAMES`), ``seed`` (per-nucleus texture/figure seed)."""

    x: np.ndarray
    y: np.ndarray
    a: np.ndarray
    b: np.ndarray
    theta: np.ndarray
    stain: np.ndarray
    kind: np.ndarray
    seed: np.ndarray

    def __len__(self) -> int:
        return len(self.x)

    def subset(self, index) -> Nuclei:
        return Nuclei(*(getattr(self, f)[index] for f in self.__dataclass_fields__))

    @staticmethod
    def concatenate(parts: list[Nuclei]) -> Nuclei:
        return Nuclei(*(np.concatenate([getattr(p, f) for p in parts]) for f in Nuclei.__dataclass_fields__))

    def polygons(self, *, vertices: int = 16) -> np.ndarray:
        """Ellipse outlines ``(N, vertices, 2)`` in level-0 pixels."""
        t = np.linspace(0.0, 2 * np.pi, vertices, endpoint=False)
        u = self.a[:, None] * np.cos(t)[None, :]
        v = self.b[:, None] * np.sin(t)[None, :]
        c, s = np.cos(self.theta)[:, None], np.sin(self.theta)[:, None]
        return np.stack([self.x[:, None] + u * c - v * s, self.y[:, None] + u * s + v * c], axis=-1)


def _sample_in(region: BaseGeometry, n: int, rng: np.random.Generator) -> np.ndarray:
    """``(<= n, 2)`` uniform points inside ``region`` (rejection from its bounding box)."""
    if region is None or region.is_empty or n <= 0:
        return np.zeros((0, 2))
    x0, y0, x1, y1 = region.bounds
    frac = region.area / max((x1 - x0) * (y1 - y0), 1e-9)
    shapely.prepare(region)
    out, need = [], n
    for _ in range(20):
        m = int(need / max(frac, 1e-3) * 1.2) + 16
        pts = np.column_stack([rng.uniform(x0, x1, m), rng.uniform(y0, y1, m)])
        pts = pts[shapely.contains_xy(region, pts[:, 0], pts[:, 1])]
        out.append(pts[:need])
        need -= len(out[-1])
        if need <= 0:
            break
    return np.concatenate(out)


def _make(kind: int, pts: np.ndarray, rng, px: float) -> Nuclei:
    _, (a0, a1), (r0, r1), (s0, s1) = _KINDS.get(kind, _KINDS[TUMOR])
    n = len(pts)
    a = rng.uniform(a0, a1, n) * px
    b = a / rng.uniform(r0, r1, n)
    return Nuclei(
        x=pts[:, 0].astype(np.float64),
        y=pts[:, 1].astype(np.float64),
        a=a,
        b=b,
        theta=rng.uniform(0, np.pi, n),
        stain=rng.uniform(s0, s1, n),
        kind=np.full(n, kind, np.int8),
        seed=rng.integers(0, 2**31, n),
    )


def _mitoses(rng, region, count, px) -> Nuclei:
    pts = _sample_in(region, count, rng)
    n = len(pts)
    bar = rng.random(n) < 0.6  # metaphase plate seen side-on, else a condensed clump
    a = np.where(bar, rng.uniform(5.0, 6.0, n), rng.uniform(4.0, 5.0, n)) * px
    b = np.where(bar, rng.uniform(1.8, 2.6, n) * px, a / rng.uniform(1.0, 1.3, n))
    return Nuclei(
        x=pts[:, 0],
        y=pts[:, 1],
        a=a,
        b=b,
        theta=rng.uniform(0, np.pi, n),
        stain=rng.uniform(2.4, 2.9, n),
        kind=np.full(n, MITOSIS, np.int8),
        seed=rng.integers(0, 2**31, n),
    )


def _palisade(nuc: Nuclei, tumor: BaseGeometry, px: float, *, depth_um: float = 14.0) -> Nuclei:
    """Peripheral palisading: nuclei near the nest's edge stand perpendicular to it and are
    more elongated (as in basal cell carcinoma)."""
    pts = shapely.points(nuc.x, nuc.y)
    boundary = tumor.boundary
    dist = shapely.distance(pts, boundary)
    near = dist < depth_um * px
    if not near.any():
        return nuc
    foot = shapely.get_coordinates(shapely.get_point(shapely.shortest_line(pts[near], boundary), 1))
    theta = nuc.theta.copy()
    theta[near] = np.mod(np.arctan2(foot[:, 1] - nuc.y[near], foot[:, 0] - nuc.x[near]), np.pi)
    b = nuc.b.copy()
    b[near] = nuc.a[near] / 2.0
    return Nuclei(nuc.x, nuc.y, nuc.a, b, theta, nuc.stain, nuc.kind, nuc.seed)


def _radius_towards(nuc: Nuclei, idx: np.ndarray, phi: np.ndarray) -> np.ndarray:
    """Centre-to-outline distance of ellipses ``idx`` in direction ``phi`` (radians)."""
    a, b, t = nuc.a[idx], nuc.b[idx], phi - nuc.theta[idx]
    return a * b / np.sqrt((b * np.cos(t)) ** 2 + (a * np.sin(t)) ** 2)


def _thin(nuc: Nuclei, gap_px: float) -> Nuclei:
    """Greedy non-overlap: earlier entries win. Two nuclei clash when their centres are
    closer than 1.1x the sum of their radii along the line joining them, plus a gap."""
    if len(nuc) < 2:
        return nuc
    xy = np.column_stack([nuc.x, nuc.y])
    pairs = cKDTree(xy).query_pairs(2 * float(nuc.a.max()) + gap_px, output_type="ndarray")
    if len(pairs) == 0:
        return nuc
    i, j = pairs[:, 0], pairs[:, 1]
    delta = xy[j] - xy[i]
    d = np.hypot(delta[:, 0], delta[:, 1])
    phi = np.arctan2(delta[:, 1], delta[:, 0])
    reach = _radius_towards(nuc, i, phi) + _radius_towards(nuc, j, phi)
    clash = pairs[d < 1.1 * reach + gap_px]
    clash = np.sort(clash, axis=1)
    clash = clash[np.lexsort((clash[:, 1], clash[:, 0]))]
    keep = np.ones(len(nuc), bool)
    for i, j in clash.tolist():
        if keep[i] and keep[j]:
            keep[j] = False
    return nuc.subset(keep)


def place_nuclei(
    rng: np.random.Generator,
    *,
    mpp: float,
    tissue: BaseGeometry,
    epidermis: BaseGeometry,
    tumor: BaseGeometry | None,
    keep_out: BaseGeometry | None,
    n_mitoses: int | None = None,
    density: float = 1.0,
    placed: Nuclei | None = None,
    palisade: bool = True,
) -> Nuclei:
    """Nuclei of every kind inside ``tissue``; ``density`` scales all densities.

    ``palisade``: tumour nuclei at the nest's edge stand perpendicular to it (basal cell
    carcinoma); off for a melanoma.

    ``placed``: nuclei already positioned (e.g. endothelium), kept before the sampled ones.
    """
    px = 1.0 / mpp
    mm2 = (mpp * 1e-3) ** 2  # mm^2 per pixel^2
    blocked = keep_out if keep_out is not None and not keep_out.is_empty else None

    def region_for(geom, inset_um):
        if geom is None or geom.is_empty:
            return None
        g = geom.buffer(-inset_um * px)
        return g.difference(blocked) if blocked is not None else g

    tumor_r = region_for(tumor, 6.0)
    epid_r = region_for(epidermis, 4.0)
    excl = [g for g in (epidermis, None if tumor is None else tumor.buffer(8 * px)) if g is not None]
    dermis_r = region_for(tissue.difference(shapely.union_all(excl)) if excl else tissue, 6.0)

    parts = []
    if n_mitoses is None:
        tumor_area = 0.0 if tumor is None else tumor.area * mm2
        n_mitoses = max(3, round(40 * tumor_area))
    if n_mitoses > 0:
        if tumor_r is not None and not tumor_r.is_empty:
            parts.append(_mitoses(rng, tumor_r, max(n_mitoses - 1, 1), px))
            if epid_r is not None and not epid_r.is_empty:
                parts.append(_mitoses(rng, epid_r, n_mitoses - len(parts[0]), px))
        elif epid_r is not None and not epid_r.is_empty:
            parts.append(_mitoses(rng, epid_r, n_mitoses, px))

    if placed is not None and len(placed):
        parts.append(placed)

    def add(kind, region):
        if region is None or region.is_empty:
            return
        count = rng.poisson(_KINDS[kind][0] * density * region.area * mm2)
        parts.append(_make(kind, _sample_in(region, count, rng), rng, px))

    add(TUMOR, tumor_r)
    if palisade and tumor is not None and len(parts) and parts[-1].kind[:1].tolist() == [TUMOR]:
        parts[-1] = _palisade(parts[-1], tumor, px)
    add(EPIDERMAL, epid_r)
    if tumor is not None and dermis_r is not None:
        add(LYMPHOCYTE, dermis_r.intersection(tumor.buffer(90 * px)))
    add(DERMAL, dermis_r)
    if not parts:
        return _make(DERMAL, np.zeros((0, 2)), rng, px)
    return _thin(Nuclei.concatenate(parts), _GAP_UM * px)
