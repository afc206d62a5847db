"""Mitosis candidates: the nuclei dark, condensed and irregular enough to be worth a crop.

The rule reads the per-nucleus measurements of :mod:`detectors.nuclei.measurements`
(``Hematoxylin OD mean``, ``Hematoxylin OD std dev``, ``Area µm^2``, ``Circularity``,
``Solidity``). Darkness is judged *relative to the median nucleus of the same set* (a
slide, or a tile), so one rule works across stain intensities and scanners. A missing
measurement simply does not constrain: nuclei without any measurements (e.g. StarDist run
without them) are all kept.

The rule is deliberately permissive (it is a filter before the classifier, which decides,
and candidate recall is the ceiling of any classifier). Measured with
``bench/bench_mitosis_candidates.py`` on the MIDOG 2021 crops (darkness judged against the
pooled nuclei of each scanner): it keeps a candidate within 7.5 µm of ~93-96% of the
figures per scanner, and 40-50% of the nuclei of ordinary tissue (MoNuSeg, normal skin;
the rule before ``min_darkness``: 86-91% of the figures, 23-38% of the nuclei) -- the
price of that recall. ``CandidateRule(min_darkness=float("inf"))`` is the earlier rule.

:func:`blob_candidates` adds what the nuclei detector misses: compact, very dark
hematoxylin blobs (condensed chromatin split into fragments, or lost in a dark field), darker
than the median nucleus (:func:`reference_od`) by ``BlobRule.min_relative_od``;
:func:`merge_candidates` keeps one candidate per figure. A tile detector calls::

    mask = select_candidates(nuclei)
    xy = nuclei.subset(mask).centroids()
    xy = merge_candidates(xy, blob_candidates(tile, mpp=mpp, reference=reference_od(nuclei)),
                          radius=BlobRule().merge_radius_um / mpp)

The blobs are as good at 0.5 µm/px as at 0.25 (same recall on those crops, ~0.4 s per mm²
of tissue on one CPU thread at 0.5), so they can run on the nuclei stage's tiles.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from detectors.base import Instances

OD_MEAN = "Hematoxylin OD mean"
OD_STD = "Hematoxylin OD std dev"
AREA = "Area µm^2"
CIRCULARITY = "Circularity"
SOLIDITY = "Solidity"


@dataclass(frozen=True)
class CandidateRule:
    """Thresholds of :func:`select_candidates`.

    min_relative_od : hematoxylin OD mean / the set's median, at least this ...
    min_relative_std : ... or the OD std dev / the set's median std dev at least this
        (condensed, clumped chromatin is both dark and uneven).
    min_area_um2, max_area_um2 : plausible size of a mitotic figure (one chromosome clump
        of a split anaphase included; giant nuclei excluded).
    irregular_relative_od : a nucleus that is only mildly dark passes if its outline is
        irregular: circularity below ``max_circularity`` or solidity below ``max_solidity``.
    min_set_size : below this many nuclei the median is not trusted: darkness is then
        judged against fixed OD levels ``fallback_od`` / ``fallback_std``.
    std_weight, min_darkness : a nucleus also passes when the weighted mean of its relative
        OD and relative OD std dev, ``(rel_od + std_weight * rel_std) / (1 + std_weight)``,
        is at least ``min_darkness`` (a median nucleus scores 1.0). Either measure alone
        misses the figures that are only a little darker *and* a little more uneven than
        the median; together they separate them from ordinary nuclei better. Chosen on the
        MIDOG 2021 Hamamatsu XR and Aperio CS2 crops for ~95% recall of the figures the
        nuclei detector finds (``bench/bench_mitosis_candidates.py``); ``inf`` turns the
        clause off (the rule before it).
    """

    min_relative_od: float = 1.15
    min_relative_std: float = 1.35
    min_area_um2: float = 5.0
    max_area_um2: float = 120.0
    irregular_relative_od: float = 1.0
    max_circularity: float = 0.6
    max_solidity: float = 0.85
    min_set_size: int = 20
    fallback_od: float = 0.55
    fallback_std: float = 0.16
    std_weight: float = 0.75
    min_darkness: float = 1.05


def _column(nuclei: Instances, name: str) -> np.ndarray | None:
    v = nuclei.measurements.get(name)
    if v is None or not np.isfinite(v).any():
        return None
    return v


def _relative(v: np.ndarray, *, fallback: float, trust: bool) -> np.ndarray:
    ref = float(np.nanmedian(v)) if trust else fallback
    return v / max(ref, 1e-6)


def select_candidates(nuclei: Instances, *, rule: CandidateRule = CandidateRule()) -> np.ndarray:
    """(N,) bool mask of the nuclei to score as possible mitotic figures.

    ``nuclei`` : :class:`Instances` with (some of) the measurements named in this module.
    Missing measurements keep everything they would have tested; NaN values pass too.
    """
    n = len(nuclei)
    keep = np.ones(n, bool)
    if n == 0:
        return keep
    trust = n >= rule.min_set_size
    od, std = _column(nuclei, OD_MEAN), _column(nuclei, OD_STD)
    area = _column(nuclei, AREA)
    if area is not None:
        keep &= ~((area < rule.min_area_um2) | (area > rule.max_area_um2))
    if od is None and std is None:
        return keep
    with np.errstate(invalid="ignore"):
        dark = np.zeros(n, bool)
        unknown = np.ones(n, bool)
        if od is not None:
            rel = _relative(od, fallback=rule.fallback_od, trust=trust)
            dark |= rel >= rule.min_relative_od
            unknown &= ~np.isfinite(rel)
            irregular = np.zeros(n, bool)
            for name, limit in ((CIRCULARITY, rule.max_circularity), (SOLIDITY, rule.max_solidity)):
                col = _column(nuclei, name)
                if col is not None:
                    irregular |= col < limit
            dark |= irregular & (rel >= rule.irregular_relative_od)
        if std is not None:
            rel_s = _relative(std, fallback=rule.fallback_std, trust=trust)
            dark |= rel_s >= rule.min_relative_std
            unknown &= ~np.isfinite(rel_s)
            if od is not None:
                w = rule.std_weight
                dark |= (rel + w * rel_s) / (1.0 + w) >= rule.min_darkness
    return keep & (dark | unknown)


# -- blob candidates: condensed chromatin the nuclei detector missed -----------------------
@dataclass(frozen=True)
class BlobRule:
    """Thresholds of :func:`blob_candidates` (lengths in µm, so any working resolution).

    sigma_um : Gaussian smoothing of the hematoxylin OD before thresholding.
    min_relative_od : a pixel is condensed chromatin when its smoothed hematoxylin OD is at
        least this x the reference (the median nucleus ``Hematoxylin OD mean`` of the set)...
    fallback_od : ... or this absolute OD when no reference is given.
    group_um : dark pixels closer than this form one blob (the chromosome arms of a
        metaphase plate, the fragments of a clump).
    min_area_um2, max_area_um2 : dark area of a blob (fragments below, sheets of dark
        nuclei above are not one figure).
    merge_radius_um : a blob this close to an existing candidate adds nothing
        (:func:`merge_candidates`).
    """

    sigma_um: float = 0.5
    min_relative_od: float = 1.5
    fallback_od: float = 0.9
    group_um: float = 1.0
    min_area_um2: float = 2.0
    max_area_um2: float = 80.0
    merge_radius_um: float = 5.0


def reference_od(nuclei: Instances, *, rule: CandidateRule = CandidateRule()) -> float | None:
    """The median nucleus ``Hematoxylin OD mean`` of ``nuclei`` (a slide, a tile, pooled
    crops), or None when there are fewer than ``rule.min_set_size`` or no such measurement."""
    od = _column(nuclei, OD_MEAN) if len(nuclei) >= rule.min_set_size else None
    return None if od is None else float(np.nanmedian(od))


def blob_candidates(rgb: np.ndarray, *, mpp: float, reference: float | None = None,
                    rule: BlobRule = BlobRule()) -> np.ndarray:
    """(K, 2) (x, y) pixel centres of the compact, very dark hematoxylin blobs of ``rgb``
    ((H, W, 3) uint8 at ``mpp`` µm/px): condensed chromatin, which a nucleus detector may
    miss (clumps split into fragments, or merged into the cell around them).

    ``reference`` : the median nucleus hematoxylin OD of the slide (:func:`reference_od`);
    darkness is relative to it as in :func:`select_candidates`. Without it the fixed
    ``rule.fallback_od`` is used. Pure black pixels (0, 0, 0) are taken as no data (the
    padding some readers and crop sets put outside the image), never as a blob."""
    from scipy import ndimage as ndi

    from detectors.nuclei.stain import hematoxylin_eosin_np

    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[-1] < 3 or not rgb.size:
        raise ValueError(f"expected an (H, W, 3) image, got shape {rgb.shape}")
    if not mpp > 0:
        raise ValueError(f"mpp must be positive, got {mpp!r}")
    h = hematoxylin_eosin_np(rgb[..., :3])[0]
    h[rgb[..., :3].max(-1) == 0] = 0.0  # pure black is no data (padding outside an image), not chromatin
    h = ndi.gaussian_filter(h, rule.sigma_um / mpp, mode="nearest")
    level = rule.fallback_od if reference is None or not np.isfinite(reference) else rule.min_relative_od * reference
    dark = h >= level
    if not dark.any():
        return np.empty((0, 2))
    r = max(0, round(rule.group_um / mpp / 2))
    grouped = ndi.binary_dilation(dark, ndi.generate_binary_structure(2, 1), iterations=r) if r else dark
    labels, n = ndi.label(grouped)
    labels = np.where(dark, labels, 0)
    idx = np.arange(1, n + 1)
    area = ndi.sum_labels(dark, labels, idx) * mpp * mpp
    ok = (area >= rule.min_area_um2) & (area <= rule.max_area_um2)
    if not ok.any():
        return np.empty((0, 2))
    cy_cx = np.asarray(ndi.center_of_mass(dark, labels, idx[ok]), float).reshape(-1, 2)
    return cy_cx[:, ::-1] + 0.5  # pixel centres, pixel-edge convention as the polygons


def candidate_centres(image: np.ndarray, nuclei: Instances, *, mpp: float, mask: np.ndarray | None = None,
                      blobs: bool = True, reference: float | None = None) -> np.ndarray:
    """(K, 2) (x, y) pixel centres of the mitosis candidates of ``image`` ((H, W, 3) uint8 at
    ``mpp``): the centroids of the candidate nuclei (``mask``, default
    :func:`select_candidates` of ``nuclei``) and, with ``blobs``, the dark hematoxylin blobs
    farther than ``BlobRule.merge_radius_um`` from them (:func:`blob_candidates`, darkness
    judged against ``reference``, default :func:`reference_od` of ``nuclei``)."""
    if len(nuclei):
        xy = np.asarray(nuclei.subset(select_candidates(nuclei) if mask is None else mask).centroids(), float)
    else:
        xy = np.empty((0, 2))
    xy = xy.reshape(-1, 2)
    if not blobs:
        return xy
    ref = reference_od(nuclei) if reference is None else reference
    return merge_candidates(xy, blob_candidates(image, mpp=mpp, reference=ref),
                            radius=BlobRule().merge_radius_um / mpp)


def pooled_candidates(nuclei: list[Instances]) -> tuple[list[np.ndarray], float | None]:
    """Candidate masks per image and the blob reference (:func:`reference_od`) for a set of
    small images (crops) whose darkness is judged against all their nuclei together, as a
    slide's nuclei are in a run, not against each image's handful."""
    pooled = Instances.concatenate(list(nuclei))
    masks = np.split(select_candidates(pooled), np.cumsum([len(n) for n in nuclei])[:-1]) if len(pooled) else \
        [np.zeros(len(n), bool) for n in nuclei]
    return masks, reference_od(pooled)


def merge_candidates(xy: np.ndarray, extra_xy: np.ndarray, *, radius: float) -> np.ndarray:
    """``xy`` (N, 2) followed by the points of ``extra_xy`` (M, 2) farther than ``radius``
    (pixels) from every point of ``xy``: one candidate per figure."""
    xy = np.asarray(xy, float).reshape(-1, 2)
    extra = np.asarray(extra_xy, float).reshape(-1, 2)
    if not len(extra):
        return xy
    if len(xy):
        from scipy.spatial import cKDTree

        d, _ = cKDTree(xy).query(extra, k=1, distance_upper_bound=radius)
        extra = extra[~(d <= radius)]
    return np.concatenate([xy, extra])
