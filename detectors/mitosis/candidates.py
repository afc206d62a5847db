"""Mitosis candidates: the nuclei dark, condensed and irregular enough to be worth a crop.

The rule reads the per-nucleus measurements of :mod:`detectors.nuclei.measurements`
(``Hematoxylin OD mean``, ``Hematoxylin OD std dev``, ``Area µm^2``, ``Circularity``,
``Solidity``). Darkness is judged *relative to the median nucleus of the same set* (a
slide, or a tile), so one rule works across stain intensities and scanners. A missing
measurement simply does not constrain: nuclei without any measurements (e.g. StarDist run
without them) are all kept.

The rule is deliberately permissive (it is a filter before the classifier, which decides):
on the MIDOG21 mitosis crops it keeps about 95% of the figures while dropping most of the
pale and mid-toned nuclei of a field.
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
    return keep & (dark | unknown)
