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

import numpy as np
import pytest
import shapely

from detectors.base import Detector, DetectorSpec, Instances


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
