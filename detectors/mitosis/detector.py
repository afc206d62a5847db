"""Mitosis detector on tiles: weight-free nuclei -> candidates -> crop scorer -> points.

Candidates are the nuclei :func:`~detectors.mitosis.candidates.select_candidates` keeps plus
the compact dark hematoxylin blobs (:func:`~detectors.mitosis.candidates.blob_candidates`)
that lie farther than ``BlobRule.merge_radius_um`` from them: condensed chromatin the nuclei
detector split or missed is scored too.

For the detector conformance test and for tile-level use; the whole-slide stage
(:mod:`wsi_pipeline.mitosis_stage`) does the same from the slide's merged nuclei.
Output: shapely ``Point`` per figure at the nucleus centroid, class ``Mitosis`` (trained
model) or ``Mitosis candidate (unvalidated)`` (heuristic), measurement ``Probability``.
"""

from __future__ import annotations

import numpy as np
import shapely

from detectors.base import Detector, DetectorSpec, Instances
from detectors.mitosis.candidates import candidate_centres
from detectors.mitosis.scorer import MitosisScorer, load_mitosis_scorer
from detectors.nuclei.weightfree import WeightFreeNucleiDetector
from wsi_pipeline.mitosis_classes import UNVALIDATED_CLASS, VALIDATED_CLASS


def crops_around(tile: np.ndarray, centres_xy: np.ndarray, size: int) -> np.ndarray:
    """(N, size, size, 3) uint8 crops of ``tile`` (H, W, 3) centred on (N, 2) (x, y) points;
    parts outside the tile are filled by reflection."""
    half = size // 2
    padded = np.pad(tile, ((half, half), (half, half), (0, 0)), mode="reflect")
    out = np.empty((len(centres_xy), size, size, 3), np.uint8)
    h, w = tile.shape[:2]
    for i, (x, y) in enumerate(np.asarray(centres_xy, float).reshape(-1, 2)):
        cx, cy = int(np.clip(round(x), 0, w - 1)), int(np.clip(round(y), 0, h - 1))
        out[i] = padded[cy : cy + size, cx : cx + size]
    return out


class MitosisDetector(Detector):
    """Points where the scorer finds mitotic figures among the tile's nucleus candidates.

    ``model`` : a model folder from ``wsi-pipeline train mitosis``, ``"default"`` or
    ``None`` for the UNVALIDATED heuristic. ``nuclei`` : the nucleus detector (default:
    the weight-free one, per-tile threshold).
    """

    def __init__(self, *, model: str | None = None, device="auto", nuclei: Detector | None = None,
                 scorer: MitosisScorer | None = None, threshold: float | None = None) -> None:
        super().__init__(device=device)
        self.scorer = scorer or load_mitosis_scorer(model, device=self.device, threshold=threshold)
        self.nuclei = nuclei or WeightFreeNucleiDetector(device=self.device)
        if abs(self.nuclei.spec.mpp - self.scorer.mpp) > 1e-6:
            raise ValueError(f"nuclei detector works at {self.nuclei.spec.mpp} µm/px, scorer at {self.scorer.mpp}")
        self.label = VALIDATED_CLASS if self.scorer.validated else UNVALIDATED_CLASS
        self.spec = DetectorSpec(name="mitosis", mpp=self.scorer.mpp, tile_size=512,
                                 halo=max(self.scorer.crop_size // 2, self.nuclei.spec.max_object_size // 2),
                                 max_object_size=self.scorer.crop_size, classes=(self.label,))

    @property
    def description(self) -> str:
        return f"mitosis: {self.scorer.description}; nuclei: {self.nuclei.description}"

    def _predict_batch(self, tiles: np.ndarray) -> list[Instances]:
        return [self._one(tile, nuc) for tile, nuc in zip(tiles, self.nuclei.predict_batch(tiles))]

    def score_candidates(self, tile: np.ndarray, nuclei: Instances | None = None, *,
                         candidates: np.ndarray | None = None, blobs: bool = True,
                         reference: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(N, 2) (x, y) tile-pixel centres of the candidates and their (N,) float32
        probabilities (detections are those >= ``scorer.threshold``). ``tile`` (H, W, 3)
        uint8 at the scorer's mpp; ``nuclei`` found here when not given; ``candidates``:
        (len(nuclei),) bool mask (default :func:`select_candidates` on this tile's nuclei).
        With ``blobs``, the dark blobs of the tile not within ``BlobRule.merge_radius_um`` of
        a candidate nucleus follow them (also where no nucleus was found); their darkness is
        judged against ``reference`` (the median nucleus hematoxylin OD of the slide or crop
        set; default :func:`reference_od` of ``nuclei``, the fixed level with too few)."""
        if nuclei is None:
            nuclei = self.nuclei.predict(tile)
        centres = candidate_centres(tile, nuclei, mpp=self.scorer.mpp, mask=candidates, blobs=blobs, reference=reference)
        if not len(centres):
            return centres, np.empty(0, np.float32)
        return centres, np.asarray(self.scorer.score(crops_around(tile, centres, self.scorer.crop_size)), np.float32)

    def _one(self, tile: np.ndarray, nuclei: Instances) -> Instances:
        centres, probs = self.score_candidates(tile, nuclei)
        keep = probs >= self.scorer.threshold
        xy, p = centres[keep], np.asarray(probs, np.float32)[keep]
        geoms = shapely.points(xy) if len(xy) else np.empty(0, object)
        return Instances(geoms, p, np.full(len(p), self.label, dtype=object), {"Probability": p.astype(np.float64)})
