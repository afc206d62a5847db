"""Nucleus segmentation evaluation: metrics on label images and loaders for GT/prediction files."""

from wsi_pipeline.evaluation.io import load_labels, load_pair, pair_files
from wsi_pipeline.evaluation.metrics import ImageScores, match, overlaps, score_labels

__all__ = ["ImageScores", "load_labels", "load_pair", "match", "overlaps", "pair_files", "score_labels"]
