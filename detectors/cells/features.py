"""Per-nucleus feature table for cell typing: the run's measurements plus neighbourhood context.

Inputs are the measurements :mod:`detectors.nuclei.measurements` computes (names as in the
GeoJSON and Parquet outputs) and nucleus centroids in µm. Everything is vectorised numpy
plus one :class:`scipy.spatial.cKDTree` query, so a million nuclei take seconds.

Own features (:data:`OWN`): area, circularity, solidity, eccentricity, max / min caliper,
elongation (max / min caliper), equivalent diameter, hematoxylin OD mean and std dev, eosin
OD mean, and the hematoxylin OD relative to the slide's pale nuclei (``h_rel`` = OD mean over
the ``H_REF_PERCENTILE`` = 5th percentile of all nuclei: stains differ between labs, so
"dark" is relative; a low percentile is the keratinocyte / fibroblast population of a skin
slide even when that is only a tenth of the nuclei, where the median, or a 15th percentile,
moves with the share of dark tumour nuclei or lymphocytes); ``h_std_rel``, the hematoxylin OD std dev over the same reference (chromatin
texture without the stain's scale).

Neighbourhood (:class:`Neighbourhood`): the ``K_NEIGHBOURS`` nearest other nuclei within
``NEIGHBOUR_RADIUS_UM``; features (:data:`CONTEXT`): the number of nuclei within
``SHEET_RADIUS_UM`` (a cohesive sheet has many, stroma few), distances to the 1st, 3rd and
8th nearest nucleus (capped at the radius), and the neighbours' mean area, elongation and
``H rel`` and the coefficient of variation of their areas (pleomorphism).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

AREA, PERIMETER, CIRC, SOLIDITY, ECC = "Area µm^2", "Perimeter µm", "Circularity", "Solidity", "Eccentricity"
MAX_CAL, MIN_CAL = "Max caliper µm", "Min caliper µm"
H_MEAN, H_STD, E_MEAN = "Hematoxylin OD mean", "Hematoxylin OD std dev", "Eosin OD mean"
#: measurements a nucleus must carry (as the run writes them)
REQUIRED = (AREA, CIRC, SOLIDITY, ECC, MAX_CAL, MIN_CAL, H_MEAN, H_STD, E_MEAN)

K_NEIGHBOURS = 16
NEIGHBOUR_RADIUS_UM = 40.0
SHEET_RADIUS_UM = 20.0
MEAN_RADIUS_UM = 25.0
H_REF_PERCENTILE = 5.0

OWN = ("area", "circularity", "solidity", "eccentricity", "max_caliper", "min_caliper", "elongation",
       "diameter", "h_mean", "h_std", "e_mean", "h_rel", "h_std_rel")
CONTEXT = ("n_within_20um", "d1", "d3", "d8", "nb_area", "nb_elongation", "nb_h_rel", "nb_area_cv")
NAMES = OWN + CONTEXT


def missing_measurements(measurements: dict) -> list[str]:
    """Names in :data:`REQUIRED` that ``measurements`` lacks."""
    return [k for k in REQUIRED if k not in measurements]


def _filled(v: np.ndarray, default: float) -> np.ndarray:
    """NaN / inf replaced by the column's median (``default`` when all are missing)."""
    v = np.asarray(v, np.float64).copy()
    bad = ~np.isfinite(v)
    if bad.any():
        v[bad] = np.median(v[~bad]) if (~bad).any() else default
    return v


def own_features(measurements: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """name -> (N,) float64 per-nucleus features (see the module docstring)."""
    m = {k: _filled(measurements[k], d) for k, d in
         ((AREA, 30.0), (CIRC, 0.8), (SOLIDITY, 0.95), (ECC, 0.6), (MAX_CAL, 7.0), (MIN_CAL, 5.0),
          (H_MEAN, 0.5), (H_STD, 0.1), (E_MEAN, 0.2))}
    h_ref = float(np.percentile(m[H_MEAN], H_REF_PERCENTILE)) if len(m[H_MEAN]) else 1.0
    return {
        "area": m[AREA], "circularity": m[CIRC], "solidity": m[SOLIDITY], "eccentricity": m[ECC],
        "max_caliper": m[MAX_CAL], "min_caliper": m[MIN_CAL],
        "elongation": m[MAX_CAL] / np.maximum(m[MIN_CAL], 0.5),
        "diameter": 2 * np.sqrt(np.maximum(m[AREA], 0) / np.pi),
        "h_mean": m[H_MEAN], "h_std": m[H_STD], "e_mean": m[E_MEAN],
        "h_rel": m[H_MEAN] / max(h_ref, 1e-3),
        "h_std_rel": m[H_STD] / max(h_ref, 1e-3),
    }


@dataclass(frozen=True)
class Neighbourhood:
    """The ``k`` nearest other nuclei of each nucleus within ``radius`` µm.

    index : (N, k) int64 neighbour rows (N where there is none).
    dist : (N, k) float64 distances in µm (inf where there is none).
    """

    index: np.ndarray
    dist: np.ndarray

    @classmethod
    def of(cls, xy_um: np.ndarray, *, k: int = K_NEIGHBOURS, radius: float = NEIGHBOUR_RADIUS_UM) -> "Neighbourhood":
        """From ``(N, 2)`` centroids in µm."""
        n = len(xy_um)
        if n < 2:
            return cls(np.full((n, k), n, np.int64), np.full((n, k), np.inf))
        tree = cKDTree(xy_um)
        d, idx = tree.query(xy_um, k=min(k + 1, n), distance_upper_bound=radius, workers=-1)
        d, idx = np.atleast_2d(d), np.atleast_2d(idx)
        not_self = idx != np.arange(n)[:, None]
        # drop the point itself (the first hit, or a later one when centroids coincide)
        order = np.argsort(~not_self, axis=1, kind="stable")[:, : d.shape[1] - 1]
        d, idx = np.take_along_axis(d, order, 1), np.take_along_axis(idx, order, 1)
        if d.shape[1] < k:
            pad = k - d.shape[1]
            d = np.pad(d, ((0, 0), (0, pad)), constant_values=np.inf)
            idx = np.pad(idx, ((0, 0), (0, pad)), constant_values=n)
        return cls(idx.astype(np.int64), d)

    def within(self, radius: float) -> np.ndarray:
        """(N, k) bool: neighbour present and closer than ``radius`` µm."""
        return self.dist <= radius

    def mean(self, values: np.ndarray, *, radius: float = MEAN_RADIUS_UM,
             fill: np.ndarray | float | None = None) -> np.ndarray:
        """Mean of ``values`` ((N,) or (N, C)) over each nucleus' neighbours within ``radius``;
        ``fill`` (default: the nucleus' own value) where it has none."""
        values = np.asarray(values, np.float64)
        padded = np.concatenate([values, np.zeros((1,) + values.shape[1:])])
        w = self.within(radius).astype(np.float64)
        got = padded[self.index]  # (N, k[, C])
        if values.ndim == 2:
            w = w[..., None]
        total = (got * w).sum(1)
        count = w.sum(1)
        own = values if fill is None else np.broadcast_to(np.asarray(fill, np.float64), values.shape)
        return np.where(count > 0, total / np.maximum(count, 1), own)


def context_features(own: dict[str, np.ndarray], nb: Neighbourhood) -> dict[str, np.ndarray]:
    """name -> (N,) neighbourhood features (see the module docstring)."""
    cap = NEIGHBOUR_RADIUS_UM
    d = np.minimum(nb.dist, cap)
    area = own["area"]
    nb_area = nb.mean(area)
    nb_sq = nb.mean(area**2)
    cv = np.sqrt(np.maximum(nb_sq - nb_area**2, 0)) / np.maximum(nb_area, 1e-6)
    return {
        "n_within_20um": nb.within(SHEET_RADIUS_UM).sum(1).astype(np.float64),
        "d1": d[:, 0], "d3": d[:, 2], "d8": d[:, 7],
        "nb_area": nb_area, "nb_elongation": nb.mean(own["elongation"]), "nb_h_rel": nb.mean(own["h_rel"]),
        "nb_area_cv": cv,
    }


def feature_table(measurements: dict[str, np.ndarray], xy_um: np.ndarray
                  ) -> tuple[dict[str, np.ndarray], Neighbourhood]:
    """(name -> (N,) features for :data:`NAMES`, the neighbourhood) of N nuclei with
    ``measurements`` and ``(N, 2)`` centroids in µm."""
    own = own_features(measurements)
    nb = Neighbourhood.of(np.asarray(xy_um, np.float64).reshape(-1, 2))
    return {**own, **context_features(own, nb)}, nb


def as_matrix(features: dict[str, np.ndarray], names: tuple[str, ...] = NAMES) -> np.ndarray:
    """(N, F) float32 matrix of ``names`` columns."""
    return np.column_stack([features[k] for k in names]).astype(np.float32)
