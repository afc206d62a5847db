"""Torch StarDist against stardist-TF references (tests/fixtures/stardist, made by
scripts/make_stardist_fixtures.py), weight I/O, normalisation, tiling, the detector contract,
the models registry and the ``models`` command."""

from __future__ import annotations

import hashlib
import json
import shutil
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from stardist.matching import matching

from detectors.registry import ModelEntry, cached_model, fetch_model, load_registry
from detectors.stardist import (
    StarDistConfig,
    StarDistNet,
    compute_percentiles,
    load_stardist_model,
    load_stardist_net,
    slide_percentiles,
)
from detectors.stardist.keras_h5 import load_keras_h5, read_keras_h5, save_keras_h5
from detectors.stardist.normalize import normalize_numpy, normalize_torch
from detectors.stardist.predict import predict_instances, predict_prob_dist, predict_prob_dist_tiled
from detectors.testing import DetectorConformance
from tiling._array import ArraySlide
from tiling.errors import InputError
from wsi_pipeline.cli import main as cli
from wsi_pipeline.training.synthetic import synthetic_nuclei

FIXTURES = Path(__file__).parent / "fixtures" / "stardist"
REFERENCES = ["versatile_he", "small"]


@pytest.fixture(scope="module", params=REFERENCES)
def reference(request):
    folder = FIXTURES / request.param
    net, thresholds, _ = load_stardist_net(folder)
    return request.param, net, thresholds, dict(np.load(folder / "reference.npz"))


def test_prob_dist_match_stardist_tf(reference):
    name, net, _, ref = reference
    prob, dist = predict_prob_dist(net, ref["x"])
    h, w = ref["prob"].shape
    assert prob.shape[0] >= h and prob.shape[1] >= w
    assert np.abs(prob[:h, :w] - ref["prob"]).max() < 1e-4
    assert np.abs(dist[:h, :w] - ref["dist"]).max() < 1e-4
    assert ref["prob"].std() > 0.01 and ref["dist"].std() > 0.05, "reference outputs are degenerate"


def test_instances_match_stardist_tf(reference):
    name, net, thresholds, ref = reference
    labels, details = predict_instances(net, ref["x"], thresholds=thresholds)
    assert ref["labels"].max() >= 10, "reference has too few instances to be a test"
    m = matching(ref["labels"], labels, thresh=0.5)
    assert m.f1 == 1.0
    assert m.n_true == m.n_pred == len(ref["scores"]) == len(details["prob"])
    np.testing.assert_allclose(np.sort(details["prob"]), np.sort(ref["scores"]), atol=1e-4)
    assert matching(ref["labels"], labels, thresh=0.9).f1 == 1.0


def test_versatile_fixture_has_the_published_architecture():
    cfg = json.loads((FIXTURES / "versatile_he" / "config.json").read_text())
    assert (cfg["n_rays"], cfg["grid"], cfg["n_channel_in"]) == (32, [2, 2], 3)
    assert (cfg["unet_n_depth"], cfg["unet_n_filter_base"], cfg["net_conv_after_unet"]) == (3, 32, 128)
    net, _, _ = load_stardist_net(FIXTURES / "versatile_he")
    assert sum(p.numel() for p in net.parameters()) == sum(
        w.size for _, ws in read_keras_h5(FIXTURES / "versatile_he" / "weights_best.h5") for w in ws)


def test_tiled_prediction_equals_whole(reference):
    name, net, _, ref = reference
    x = np.concatenate([ref["x"], ref["x"][::-1]], axis=0)  # taller than one tile
    whole = predict_prob_dist(net, x)
    tiled = predict_prob_dist_tiled(net, x, tile=128, context=128)
    assert np.abs(whole[0] - tiled[0]).max() < 1e-5
    assert np.abs(whole[1] - tiled[1]).max() < 1e-4


def test_written_weights_have_keras_layout_and_reload(tmp_path):
    src = FIXTURES / "small" / "weights_best.h5"
    net, _, _ = load_stardist_net(FIXTURES / "small")
    save_keras_h5(net, tmp_path / "w.h5")
    ours, keras = read_keras_h5(tmp_path / "w.h5"), read_keras_h5(src)
    # same named layers in the same order, stem convs (auto-named by Keras) in the same place
    strip = lambda n: "conv2d" if n.startswith("conv2d") else n  # noqa: E731
    assert [strip(n) for n, _ in ours] == [strip(n) for n, _ in keras]
    for (_, a), (_, b) in zip(ours, keras):
        assert [w.shape for w in a] == [w.shape for w in b]
        np.testing.assert_array_equal(a[0], b[0])
    with h5py.File(tmp_path / "w.h5") as f:
        names = [n.decode() if isinstance(n, bytes) else n for n in f["down_level_0_no_0"].attrs["weight_names"]]
        assert names == ["down_level_0_no_0/kernel:0", "down_level_0_no_0/bias:0"]
    other = load_keras_h5(StarDistNet(net.config), tmp_path / "w.h5")
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(net(x), other(x))


def test_mismatched_weights_are_an_input_error(tmp_path):
    wrong = StarDistNet(StarDistConfig(n_rays=32, grid=(2, 2), n_channel_in=3, unet_n_depth=2, unet_n_filter_base=16))
    with pytest.raises(InputError, match="shape|missing"):
        load_keras_h5(wrong, FIXTURES / "small" / "weights_best.h5")
    (tmp_path / "not.h5").write_bytes(b"not hdf5")
    with pytest.raises(InputError, match="not.h5"):
        read_keras_h5(tmp_path / "not.h5")
    with pytest.raises(InputError, match="config.json"):
        load_stardist_model(tmp_path, device="cpu")


def test_normalisation_matches_csbdeep_and_per_slide_percentiles_are_shared():
    from csbdeep.utils import normalize

    img, _ = synthetic_nuclei((200, 300), seed=3)
    np.testing.assert_allclose(normalize_numpy(img, compute_percentiles(img)), normalize(img, 1, 99.8), atol=1e-6)
    t = torch.from_numpy(img.transpose(2, 0, 1))[None]
    pct = compute_percentiles(img, per_channel=True)
    np.testing.assert_allclose(normalize_torch(t, pct)[0].numpy().transpose(1, 2, 0),
                               normalize(img, 1, 99.8, axis=(0, 1)), atol=1e-5)
    slide = ArraySlide(img, mpp=0.5)
    whole = slide_percentiles(slide, max_side=4096)
    assert whole == compute_percentiles(img)
    # two tiles normalised with the slide's percentiles agree where they overlap; per-tile ones do not
    a, b = img[:, :180], img[:, 120:]
    shared = normalize_numpy(a, whole)[:, 120:], normalize_numpy(b, whole)[:, :60]
    np.testing.assert_array_equal(*shared)
    own = normalize_numpy(a, compute_percentiles(a))[:, 120:], normalize_numpy(b, compute_percentiles(b))[:, :60]
    assert np.abs(own[0] - own[1]).max() > 1e-3
    small = slide_percentiles(slide, max_side=100)  # read at a coarser mpp: close, not identical
    assert abs(small.low[0] - whole.low[0]) < 25 and abs(small.high[0] - whole.high[0]) < 10


TRAINED = FIXTURES / "trained_synthetic"


@pytest.fixture(scope="module")
def trained_detector():
    return load_stardist_model(TRAINED, device="cpu", tile_size=256, halo=32, max_object_size=64)


@pytest.mark.skipif(not (TRAINED / "weights_best.h5").is_file(),
                    reason="trained_synthetic fixture absent: run scripts/make_stardist_fixtures.py --trained")
class TestStarDistDetector(DetectorConformance):
    """Conformance with a model trained by ``wsi-pipeline train nuclei`` on synthetic nuclei
    (tests/fixtures/stardist/trained_synthetic, made by make_stardist_fixtures.py --trained)."""

    @pytest.fixture
    def detector(self, trained_detector):
        return trained_detector

    @pytest.fixture
    def sample_tile(self, detector):
        img, _ = synthetic_nuclei((256, 256), seed=101)
        return img

    def test_finds_the_synthetic_nuclei(self, detector, sample_tile):
        _, labels = synthetic_nuclei((256, 256), seed=101)
        res = detector.predict(sample_tile)
        from wsi_pipeline.evaluation.io import polygons_to_labels

        pred = polygons_to_labels(list(res.geometry), labels.shape)
        assert matching(labels, pred, thresh=0.5).f1 > 0.8

    def test_polygons_cover_the_pixels_stardist_labels(self, detector, sample_tile):
        """Pixel (r, c) is inside a polygon exactly when stardist's own label image has it
        (stardist's vertex (r, c) is a pixel centre; ours are pixel-edge coordinates)."""
        from detectors.nuclei.polygons import rasterise

        labels, _ = predict_instances(detector.net, normalize_numpy(sample_tile, compute_percentiles(sample_tile)),
                                      thresholds=detector.thresholds)
        ours = rasterise(np.asarray(detector.predict(sample_tile).geometry), labels.shape)
        assert labels.max() > 10
        assert np.array_equal(ours > 0, labels > 0)

    def test_outline_refinement_keeps_the_nuclei_and_redraws_them(self, detector, sample_tile):
        from detectors.nuclei.outlines import OutlineRefinement
        from wsi_pipeline.evaluation.io import polygons_to_labels

        _, truth = synthetic_nuclei((256, 256), seed=101)
        plain = detector.predict(sample_tile)
        refined_det = detector.with_refinement(OutlineRefinement())
        assert detector.refinement is None and "redrawn" in refined_det.description
        refined = refined_det.predict(sample_tile)
        assert abs(len(refined) - len(plain)) <= 0.05 * len(plain)
        assert set(np.round(refined.score, 6)) <= set(np.round(plain.score, 6))
        assert all(g.is_valid and g.area > 0 for g in refined.geometry)
        pred = polygons_to_labels(list(refined.geometry), truth.shape)
        assert matching(truth, pred, thresh=0.5).f1 > 0.8
        moved = [a.symmetric_difference(b).area for a, b in zip(plain.geometry, refined.geometry)]
        assert np.median(moved) > 1.0  # the outlines really are redrawn

    def test_flat_tiles_are_widened_not_blown_up(self, detector, sample_tile):
        from detectors.stardist.detector import widen_flat

        pct = compute_percentiles(sample_tile)
        assert widen_flat(pct) is pct  # a real tile keeps stardist's normalisation
        flat = widen_flat(compute_percentiles(np.full_like(sample_tile, 200)))
        assert flat.high == (200.0,) and flat.low == (192.0,)
        # faint noise on glass (range just above the floor) is normalised as stardist does, and is empty
        rng = np.random.default_rng(0)
        glass = np.clip(250 + rng.normal(0, 2, sample_tile.shape), 0, 255).astype(np.uint8)
        assert widen_flat(compute_percentiles(glass)) == compute_percentiles(glass)
        assert len(detector.predict(glass)) == 0

    def test_fixed_percentiles_change_normalisation_only(self, detector, sample_tile):
        pct = compute_percentiles(sample_tile)
        fixed = detector.with_percentiles(pct).predict(sample_tile)
        own = detector.predict(sample_tile)
        assert len(fixed) == len(own)
        np.testing.assert_allclose(fixed.score, own.score, atol=1e-5)
        assert "per-slide" in detector.with_percentiles(pct).description


def test_models_list_and_offline_fetch(capsys, tmp_path):
    registry = load_registry()
    he = registry["stardist-he"]
    assert he.url.endswith("python_2D_versatile_he.zip") and len(he.sha256) == 64 and he.mpp == 0.25
    assert cli(["models", "--cache", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "stardist-he" in out
    # the opt-in folders shipped under models/ are listed with their licence or validation
    assert "use: --nuclei-model stardist-monuseg" in out and "CC BY-NC-SA 4.0" in out
    assert "mitosis-midog21-cnn  mitosis" in out and "NOT validated" in out
    offline = {"x": ModelEntry("x", "stardist2d", "http://127.0.0.1:9/x.zip", None, 0.25)}
    with pytest.raises(InputError, match="cannot download"):
        fetch_model("x", registry=offline, cache=tmp_path, timeout=5)
    assert not any(tmp_path.iterdir())


def test_fetch_checks_the_hash_and_unpacks(tmp_path):
    archive = tmp_path / "m.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for f in ("config.json", "thresholds.json", "weights_best.h5"):
            zf.write(FIXTURES / "small" / f, f"small_model/{f}")
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    cache = tmp_path / "cache"
    bad = {"m": ModelEntry("m", "stardist2d", archive.as_uri(), "0" * 64, 0.25)}
    with pytest.raises(InputError, match="sha256 mismatch"):
        fetch_model("m", registry=bad, cache=cache)
    assert cached_model("m", cache=cache) is None
    good = {"m": ModelEntry("m", "stardist2d", archive.as_uri(), digest, 0.25)}
    folder = fetch_model("m", registry=good, cache=cache)
    assert folder == cached_model("m", cache=cache)
    det = load_stardist_model(folder, device="cpu")
    assert det.config.n_rays == 16 and det.spec.mpp == 0.25
    shutil.rmtree(cache)


def test_nms_runs_stardist_openmp_serially():
    from threadpoolctl import threadpool_info

    from detectors.stardist.predict import serial_openmp

    def stardist_omp():
        return [i["num_threads"] for i in threadpool_info() if "stardist" in i["filepath"] and i["user_api"] == "openmp"]

    before = stardist_omp()
    assert before, "stardist's OpenMP runtime not found"
    with serial_openmp():
        assert stardist_omp() == [1] * len(before)
    assert stardist_omp() == before
