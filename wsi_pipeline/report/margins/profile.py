"""Clearance profile: distance from the lesion to points sampled along each edge segment."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely

from wsi_pipeline.report.margins.edges import EdgeSegment


@dataclass(frozen=True)
class ProfileSegment:
    """Samples along one edge segment.

    position_um : ``(K,)`` perimeter position of each sample (µm from the ring start);
    clearance_um : ``(K,)`` distance from that edge point to the lesion in the piece.
    """

    piece: int
    colour: str
    position_um: np.ndarray
    clearance_um: np.ndarray

    def to_dict(self) -> dict:
        return {
            "piece": self.piece + 1,
            "colour": self.colour,
            "position_um": np.round(self.position_um, 1).tolist(),
            "clearance_um": np.round(self.clearance_um, 1).tolist(),
        }


def clearance_profile(
    segments: list[EdgeSegment],
    lesion_by_piece: dict[int, object],
    *,
    step_um: float,
    perimeters: dict[int, float],
) -> list[ProfileSegment]:
    """Sample every segment of a piece with lesion every ``step_um`` (both ends included).

    lesion_by_piece : piece index -> the lesion inside that piece (µm geometry);
    perimeters : piece index -> perimeter length (to wrap positions).
    """
    out = []
    for seg in segments:
        lesion = lesion_by_piece.get(seg.piece)
        if lesion is None or lesion.is_empty:
            continue
        n = max(2, int(np.ceil(seg.line.length / step_um)) + 1)
        t = np.linspace(0.0, seg.line.length, n)
        d = shapely.distance(shapely.line_interpolate_point(seg.line, t), lesion)
        pos = (seg.start_um + t) % perimeters[seg.piece]
        out.append(ProfileSegment(seg.piece, seg.colour, pos, np.asarray(d, dtype=float)))
    return out
