"""Mitotic figures: candidates from nuclei measurements, crop scorers (trained CNN or an
UNVALIDATED heuristic), model folders and a tile :class:`~detectors.base.Detector`."""

from detectors.mitosis.candidates import CandidateRule, select_candidates
from detectors.mitosis.scorer import CNNScorer, MitosisScorer, load_mitosis_scorer

__all__ = ["CandidateRule", "CNNScorer", "MitosisScorer", "load_mitosis_scorer", "select_candidates"]
