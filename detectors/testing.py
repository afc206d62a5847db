"""Shared conformance tests every :class:`~detectors.base.Detector` must pass.

Use it like zarr's ``StoreTests``: subclass in a test module and provide the
``detector`` and ``sample_tile`` fixtures::

    class TestMyDetector(DetectorConformance):
        @pytest.fixture
        def detector(self):
            return MyDetector(device="cpu")

        @pytest.fixture
        def sample_tile(self, detector):
            return make_tile(detector.spec.tile_size)  # (H, W, 3) uint8 with objects in it
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import shapely
from skimage.measure import find_contours, label, regionprops

from detectors.base import Detector, DetectorSpec, Instances
from tiling.grid import Tile, tile_grid


class DetectorConformance:
    """Subclass and provide ``detector`` and ``sample_tile`` fixtures."""

    expect_objects_in_sample = True

    def test_spec_is_consistent(self, detector: Detector) -> None:
        spec = detector.spec
        assert isinstance(spec, DetectorSpec)
        assert spec.mpp > 0
        assert spec.halo >= 0
        assert spec.tile_size > 2 * spec.halo
        assert spec.max_object_size > 0
        assert DetectorSpec.from_dict(spec.to_dict()) == spec

    def test_batch_returns_one_result_per_tile(self, detector: Detector, sample_tile: np.ndarray) -> None:
        blank = np.full_like(sample_tile, 255)
        out = detector.predict_batch(np.stack([sample_tile, blank]))
        assert len(out) == 2
        assert all(isinstance(r, Instances) for r in out)

    def test_columns_have_equal_length_and_types(self, detector: Detector, sample_tile: np.ndarray) -> None:
        res = detector.predict(sample_tile)
        n = len(res)
        if self.expect_objects_in_sample:
            assert n > 0, "detector found nothing in its sample tile"
        assert res.score.shape == (n,) and res.label.shape == (n,)
        assert all(v.shape == (n,) for v in res.measurements.values())
        assert np.all((res.score >= 0) & (res.score <= 1))
        assert all(isinstance(g, shapely.Geometry) and g.is_valid and not g.is_empty for g in res.geometry)
        if detector.spec.classes:
            assert set(res.label) <= set(detector.spec.classes)

    def test_geometry_inside_tile_and_within_max_size(self, detector: Detector, sample_tile: np.ndarray) -> None:
        res = detector.predict(sample_tile)
        h, w = sample_tile.shape[:2]
        if len(res) == 0:
            return
        bounds = shapely.bounds(res.geometry)
        assert bounds[:, 0].min() >= -1 and bounds[:, 1].min() >= -1
        assert bounds[:, 2].max() <= w + 1 and bounds[:, 3].max() <= h + 1
        extent = np.maximum(bounds[:, 2] - bounds[:, 0], bounds[:, 3] - bounds[:, 1])
        assert extent.max() <= detector.spec.max_object_size

    def test_blank_glass_gives_nothing(self, detector: Detector, sample_tile: np.ndarray) -> None:
        res = detector.predict(np.full_like(sample_tile, 255))
        assert len(res) == 0

    def test_deterministic_and_batch_equals_single(self, detector: Detector, sample_tile: np.ndarray) -> None:
        single = detector.predict(sample_tile)
        batch = detector.predict_batch(np.stack([sample_tile, sample_tile]))
        for other in batch:
            assert len(other) == len(single)
            np.testing.assert_allclose(other.score, single.score, atol=1e-4)

    def test_rejects_wrong_input(self, detector: Detector, sample_tile: np.ndarray) -> None:
        with pytest.raises(ValueError):
            detector.predict_batch(sample_tile.astype(np.float32)[None])

    def test_runs_on_cpu(self, detector: Detector) -> None:
        assert detector.device.type in {"cpu", "cuda", "mps"}


# -- a simple scene and detector for pipeline tests ---------------------------------


def blob_image(width: int, height: int, *, n: int, radius: int = 6, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """White RGB image with ``n`` non-touching dark discs; returns (image, centres (n, 2) x, y)."""
    rng = np.random.default_rng(seed)
    img = np.full((height, width, 3), 245, np.uint8)
    centres: list[tuple[int, int]] = []
    yy, xx = np.mgrid[0:height, 0:width]
    tries = 0
    while len(centres) < n and tries < n * 50:
        tries += 1
        x, y = rng.integers(0, width), rng.integers(0, height)
        if any((x - cx) ** 2 + (y - cy) ** 2 < (3 * radius) ** 2 for cx, cy in centres):
            continue
        centres.append((int(x), int(y)))
        img[(xx - x) ** 2 + (yy - y) ** 2 <= radius**2] = (60, 40, 120)
    return img, np.array(centres, float)


class BlobDetector(Detector):
    """Dark connected components fully inside the tile -> polygons (for pipeline tests).

    ``delay`` seconds of sleep per batch make runs slow enough to interrupt; ``oom_above``
    raises a CUDA-style out-of-memory error for larger batches.
    """

    def __init__(self, *, tile_size: int = 128, halo: int = 16, mpp: float = 0.5, device: str = "cpu",
                 oom_above: int | None = None, delay: float = 0.0) -> None:
        super().__init__(device=device)
        self.spec = DetectorSpec("blobs", mpp, tile_size, halo, max_object_size=halo, classes=("Blob",))
        self.oom_above = oom_above
        self.delay = delay
        self.calls: list[int] = []

    def _predict_batch(self, tiles: np.ndarray) -> list[Instances]:
        self.calls.append(len(tiles))
        if self.delay:
            time.sleep(self.delay)
        if self.oom_above is not None and len(tiles) > self.oom_above:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return [self._one(t) for t in tiles]

    def _one(self, tile: np.ndarray) -> Instances:
        mask = tile.mean(axis=2) < 128
        lab = label(mask)
        h, w = mask.shape
        geoms, scores = [], []
        for r in regionprops(lab):
            y0, x0, y1, x1 = r.bbox
            if y0 == 0 or x0 == 0 or y1 == h or x1 == w:
                continue  # cut by the tile border: not seen whole
            contour = find_contours(np.pad(r.image, 1), 0.5)[0]
            poly = shapely.Polygon(contour[:, ::-1] - 1 + [x0, y0]).buffer(0)
            geoms.append(poly)
            scores.append(1.0)
        return Instances(np.array(geoms, dtype=object), scores, ["Blob"] * len(geoms))


def simple_tasks(width: int, height: int, spec: DetectorSpec, *, slide_mpp: float) -> list[Tile]:
    """The whole-image grid for a detector spec (no tissue mask)."""
    return tile_grid((width, height), slide_mpp=slide_mpp, working_mpp=spec.mpp, tile_size=spec.tile_size,
                     halo=spec.halo, max_object=spec.max_object_size)
