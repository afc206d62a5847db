"""The detector contract.

A detector turns a batch of RGB tiles (all at the detector's declared resolution) into
:class:`Instances` in *tile pixels*. It never opens a slide file: reading, tiling and
merging belong to ``tiling``; orchestration to ``wsi_pipeline``.

Coordinates inside :class:`Instances` are shapely geometries in ``(x, y)`` tile pixels,
``(0, 0)`` being the top-left of the tile *including* its halo.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np
import shapely
import torch

from detectors.device import select_device

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DetectorSpec:
    """What a detector needs from the tiler.

    mpp : input resolution in micrometres per pixel.
    tile_size : side of the square tile in pixels, halo included.
    halo : pixels of context on each side; objects are kept only from the core.
    max_object_size : largest object diameter in pixels the detector may return.
    classes : class names it can emit.
    """

    name: str
    mpp: float
    tile_size: int
    halo: int
    max_object_size: int
    classes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.mpp <= 0:
            raise ValueError(f"{self.name}: mpp must be positive, got {self.mpp}")
        if self.halo < 0 or self.tile_size <= 2 * self.halo:
            raise ValueError(f"{self.name}: tile_size {self.tile_size} must exceed 2*halo ({2 * self.halo})")

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "mpp": self.mpp,
            "tile_size": self.tile_size,
            "halo": self.halo,
            "max_object_size": self.max_object_size,
            "classes": list(self.classes),
        }

    @classmethod
    def from_dict(cls, d: dict) -> "DetectorSpec":
        return cls(**{**d, "classes": tuple(d.get("classes", ()))})


@dataclass
class Instances:
    """Equal-length columns describing N detected objects in tile pixels.

    geometry : (N,) object array of shapely geometries (Polygon or Point), (x, y).
    score : (N,) float32 detection probability in [0, 1].
    label : (N,) object array of class names.
    measurements : name -> (N,) float array.
    origin : (x, y) of the tile's top-left in the working-resolution frame
        (set by the caller that knows the tile; detectors leave it at (0, 0)).
    """

    geometry: np.ndarray
    score: np.ndarray
    label: np.ndarray
    measurements: dict[str, np.ndarray] = field(default_factory=dict)
    origin: tuple[float, float] = (0.0, 0.0)

    def __post_init__(self) -> None:
        self.geometry = np.asarray(self.geometry, dtype=object).reshape(-1)
        self.score = np.asarray(self.score, dtype=np.float32).reshape(-1)
        self.label = np.asarray(self.label, dtype=object).reshape(-1)
        self.measurements = {k: np.asarray(v, dtype=np.float64).reshape(-1) for k, v in self.measurements.items()}
        n = len(self.geometry)
        lengths = {"score": len(self.score), "label": len(self.label)}
        lengths.update({f"measurements[{k}]": len(v) for k, v in self.measurements.items()})
        bad = {k: v for k, v in lengths.items() if v != n}
        if bad:
            raise ValueError(f"Instances columns differ in length from geometry ({n}): {bad}")

    def __len__(self) -> int:
        return len(self.geometry)

    @classmethod
    def empty(cls, measurement_names: tuple[str, ...] = ()) -> "Instances":
        return cls(
            np.empty(0, object), np.empty(0, np.float32), np.empty(0, object),
            {k: np.empty(0) for k in measurement_names},
        )

    def subset(self, index: np.ndarray) -> "Instances":
        """Rows selected by a boolean mask or integer index."""
        return Instances(
            self.geometry[index], self.score[index], self.label[index],
            {k: v[index] for k, v in self.measurements.items()}, self.origin,
        )

    def centroids(self) -> np.ndarray:
        """(N, 2) array of (x, y) centroids."""
        if len(self) == 0:
            return np.empty((0, 2))
        return shapely.get_coordinates(shapely.centroid(self.geometry))

    def translated(self, dx: float, dy: float, scale: float = 1.0) -> "Instances":
        """Geometries scaled by ``scale`` then shifted by ``(dx, dy)``."""
        geoms = shapely.transform(self.geometry, lambda c: c * scale + np.array([dx, dy]))
        return Instances(geoms, self.score, self.label, dict(self.measurements), (0.0, 0.0))

    @staticmethod
    def concatenate(parts: list["Instances"]) -> "Instances":
        parts = [p for p in parts if len(p)]
        if not parts:
            return Instances.empty()
        keys = set().union(*(p.measurements for p in parts))
        meas = {
            k: np.concatenate([p.measurements.get(k, np.full(len(p), np.nan)) for p in parts]) for k in sorted(keys)
        }
        return Instances(
            np.concatenate([p.geometry for p in parts]),
            np.concatenate([p.score for p in parts]),
            np.concatenate([p.label for p in parts]),
            meas,
        )


class Detector(ABC):
    """Base class: declare :attr:`spec`, implement :meth:`_predict_batch`.

    ``device`` is resolved once with :func:`detectors.device.select_device`.
    """

    spec: DetectorSpec

    def __init__(self, *, device: str | torch.device | None = "auto") -> None:
        self.device = device if isinstance(device, torch.device) else select_device(device)

    @property
    def description(self) -> str:
        """One line for logs and summaries (e.g. whether weights are validated)."""
        return self.spec.name

    def predict_batch(self, tiles: np.ndarray) -> list[Instances]:
        """Predict on ``tiles`` of shape ``(B, H, W, 3)`` uint8; one :class:`Instances` per tile."""
        tiles = np.asarray(tiles)
        if tiles.ndim != 4 or tiles.shape[-1] != 3 or tiles.dtype != np.uint8:
            raise ValueError(f"expected (B, H, W, 3) uint8 tiles, got {tiles.shape} {tiles.dtype}")
        out = self._predict_batch(tiles)
        if len(out) != len(tiles):
            raise RuntimeError(f"{type(self).__name__} returned {len(out)} results for {len(tiles)} tiles")
        return [self._within_max_size(r) for r in out]

    def _within_max_size(self, result: Instances) -> Instances:
        """Drop objects larger than ``spec.max_object_size``: the tile grid's halo is sized
        for it, so a larger object could be cut or counted twice at tile borders."""
        if len(result) == 0 or result.geometry[0].geom_type == "Point":
            return result
        b = shapely.bounds(result.geometry)
        ok = np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]) <= self.spec.max_object_size
        if not ok.all():
            log.debug("%s: dropped %d object(s) larger than %d px", self.spec.name, int((~ok).sum()), self.spec.max_object_size)
            return result.subset(ok)
        return result

    def predict(self, tile: np.ndarray) -> Instances:
        return self.predict_batch(np.asarray(tile)[None])[0]

    @abstractmethod
    def _predict_batch(self, tiles: np.ndarray) -> list[Instances]:
        """Implementations run under :func:`detectors.device.inference_context`."""
