"""Mitosis detection: candidates, heuristic scorer, tile detector (conformance), the
whole-slide stage on the synthetic slide, point evaluation."""

from __future__ import annotations

import json

import numpy as np
import pytest
import shapely

from detectors.base import Instances
from detectors.mitosis import load_mitosis_scorer, select_candidates
from detectors.mitosis.detector import UNVALIDATED_CLASS, MitosisDetector, crops_around
from detectors.testing import DetectorConformance
from wsi_pipeline.evaluation.points import evaluate_point_paths, match_points, score_points


def _mitoses(slide) -> np.ndarray:
    from wsi_pipeline.annotations import read_geojson

    feats = read_geojson(slide.truth_dir / "mitoses.geojson").features
    return np.array([f.geometry.coords[0] for f in feats])


@pytest.fixture(scope="module")
def synth(synthetic_slide):
    from tiling.open import open_slide

    return synthetic_slide, open_slide(synthetic_slide.path), _mitoses(synthetic_slide)


# -- candidates -----------------------------------------------------------------------
def _nuclei(od, std=None, area=None, circ=None) -> Instances:
    n = len(od)
    meas = {"Hematoxylin OD mean": od}
    for k, v in (("Hematoxylin OD std dev", std), ("Area µm^2", area), ("Circularity", circ)):
        if v is not None:
            meas[k] = v
    return Instances(shapely.points(np.arange(2 * n, dtype=float).reshape(n, 2)), np.ones(n), ["Nucleus"] * n, meas)


def test_candidates_are_the_dark_plausibly_sized_nuclei():
    od = np.r_[np.full(40, 0.5), 0.9, 0.9, 0.9, 0.52]
    area = np.r_[np.full(40, 30.0), 30.0, 2.0, 400.0, 30.0]
    keep = select_candidates(_nuclei(od, area=area))
    assert keep.tolist() == [False] * 40 + [True, False, False, False]  # tiny and giant dark ones dropped


def test_candidates_irregular_outline_or_clumped_chromatin_pass():
    od = np.r_[np.full(40, 0.5), 0.52, 0.52]
    std = np.r_[np.full(40, 0.1), 0.2, 0.1]
    circ = np.r_[np.full(40, 0.85), 0.85, 0.4]
    keep = select_candidates(_nuclei(od, std=std, circ=circ))
    assert keep[40] and keep[41] and not keep[:40].any()


def test_candidates_degrade_gracefully():
    geoms = shapely.points(np.zeros((5, 2)))
    assert select_candidates(Instances(geoms, np.ones(5), ["Nucleus"] * 5)).all()  # no measurements: keep all
    assert select_candidates(Instances.empty()).shape == (0,)
    few = select_candidates(_nuclei(np.array([0.3, 0.8])))  # too few for a median: fixed OD levels
    assert few.tolist() == [False, True]


# -- heuristic scorer -----------------------------------------------------------------
def test_heuristic_scorer_is_honest_and_scores_figures_above_plain_nuclei(synth):
    scorer = load_mitosis_scorer(None, device="cpu")
    assert scorer.validated is False
    assert "heuristic" in scorer.description and "UNVALIDATED" in scorer.description
    assert 64 <= scorer.crop_size <= 128 and scorer.mpp == 0.25
    _, slide, mit = synth
    half = scorer.crop_size // 2
    figs = np.stack([slide.read_region((int(x) - half, int(y) - half), (2 * half, 2 * half), level=0) for x, y in mit])
    blank = np.full((1, 2 * half, 2 * half, 3), 240, np.uint8)
    pale = blank.copy()
    yy, xx = np.mgrid[: 2 * half, : 2 * half]
    pale[0][(yy - half) ** 2 + (xx - half) ** 2 < 14**2] = (150, 120, 190)  # a pale round interphase nucleus
    p = scorer.score(np.concatenate([figs, pale, blank]))
    assert p.dtype == np.float32 and p.shape == (len(mit) + 2,)
    assert (p[: len(mit)] >= scorer.threshold).all()
    assert p[-2] < scorer.threshold and p[-1] == 0.0
    with pytest.raises(ValueError):
        scorer.score(figs.astype(np.float32))


def test_crops_around_fills_outside_by_reflection():
    tile = np.arange(10 * 10 * 3, dtype=np.uint8).reshape(10, 10, 3)
    c = crops_around(tile, np.array([[5.0, 5.0], [0.0, 0.0]]), 4)
    assert c.shape == (2, 4, 4, 3)
    np.testing.assert_array_equal(c[0], tile[3:7, 3:7])
    np.testing.assert_array_equal(c[1][2:, 2:], tile[:2, :2])


# -- tile detector ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def mitosis_detector():
    return MitosisDetector(device="cpu")


@pytest.fixture(scope="module")
def mitosis_tile(synth, mitosis_detector):
    """A detector-sized tile centred on the synthetic slide's lone mitosis."""
    _, slide, mit = synth
    s = mitosis_detector.spec.tile_size
    x, y = mit[-1]
    return slide.read_region((int(x) - s // 2, int(y) - s // 2), (s, s), level=0)


class TestMitosisDetector(DetectorConformance):
    @pytest.fixture
    def detector(self, mitosis_detector):
        return mitosis_detector

    @pytest.fixture
    def sample_tile(self, mitosis_tile):
        return mitosis_tile

    def test_finds_the_known_mitosis_and_labels_it_unvalidated(self, detector, sample_tile):
        res = detector.predict(sample_tile)
        s = detector.spec.tile_size
        assert set(res.label) == {UNVALIDATED_CLASS}
        assert len(match_points(res.centroids(), [[s / 2, s / 2]], radius=30)[0]) == 1
        assert "UNVALIDATED" in detector.description


# -- whole-slide stage ------------------------------------------------------------------
class _MarkedValidated:
    """Test double: the heuristic scorer marked validated, to drive the validated path."""

    validated = True
    description = "test double: heuristic marked validated"

    def __init__(self, inner) -> None:
        self.crop_size, self.mpp, self.threshold = inner.crop_size, inner.mpp, inner.threshold
        self.score = inner.score


@pytest.fixture(scope="module")
def stage_inputs(synth):
    """(synthetic, slide, mitoses, real nuclei around each known mitosis, tissue)."""
    from detectors.nuclei.weightfree import WeightFreeNucleiDetector
    from detectors.tissue import detect_tissue

    synthetic, slide, mit = synth
    nuc_det = WeightFreeNucleiDetector(device="cpu")
    # real nuclei from 384 px windows around each known mitosis (level 0 = 0.25 µm/px)
    origins = [(int(x) - 192, int(y) - 192) for x, y in mit]
    tiles = np.stack([slide.read_region(o, (384, 384), level=0) for o in origins])
    parts = [r.translated(*o) for r, o in zip(nuc_det.predict_batch(tiles), origins)]
    nuclei = Instances.concatenate(parts)
    centres = nuclei.centroids()
    keep = np.ones(len(nuclei), bool)  # windows overlap: keep one copy of each nucleus
    for i in range(len(centres)):
        if keep[i]:
            dup = np.hypot(*(centres[i + 1 :] - centres[i]).T) < 3
            keep[i + 1 :][dup] = False
    return synthetic, slide, mit, nuclei.subset(keep), detect_tissue(slide, mpp=16.0, device="cpu")


def _stage(stage_inputs, out, scorer=None):
    from wsi_pipeline.batch.manifest import SlideJob
    from wsi_pipeline.config import PipelineConfig
    from wsi_pipeline.mitosis_stage import run_mitosis_stage

    synthetic, slide, _, nuclei, tissue = stage_inputs
    cfg = PipelineConfig().updated(**{"device": "cpu", "mitosis.hotspot_area_mm2": 0.04})
    return run_mitosis_stage(slide, job=SlideJob(path=synthetic.path, slide_id="synth"), cfg=cfg, nuclei=nuclei,
                             tissue=tissue, out_dir=out, properties={}, scorer=scorer)


def test_stage_without_validated_model_gives_candidates_but_no_rate(stage_inputs, tmp_path):
    from wsi_pipeline.annotations import read_geojson
    from wsi_pipeline.mitosis_classes import UNVALIDATED_CLASS as STAGE_UNVALIDATED

    mit = stage_inputs[2]
    res = _stage(stage_inputs, tmp_path)  # config default: the heuristic
    assert score_points(res.points.centroids(), mit, radius=30).recall == 1.0  # candidates still found
    c = res.counts
    assert c["mitoses_validated"] is False and "UNVALIDATED" in c["mitosis_model"]
    assert c["mitosis_candidates"] == len(res.points) >= len(mit)
    assert c["mitosis_nuclei_screened"] >= c["mitosis_candidates"]
    assert c["mitoses"] is None and c["mitoses_per_mm2"] is None and c["mitoses_in_hotspot"] is None
    assert c["mitotic_rate"]["value"] is None and c["mitotic_rate"]["assessed"] is False
    assert c["mitotic_rate"]["reason"].startswith("not assessed: no validated mitosis model")
    assert any("not assessed" in n for n in res.notes)
    assert res.validated is False and res.hotspot is None
    feats = read_geojson(tmp_path / "mitoses.geojson").features
    assert {f.classification for f in feats} == {STAGE_UNVALIDATED}  # candidates for review, no hotspot
    assert len(feats) == c["mitosis_candidates"]
    assert not (tmp_path / "mitosis_density.npy").exists()


def test_stage_with_validated_scorer_gives_hotspot_and_rate(stage_inputs, tmp_path):
    from wsi_pipeline.annotations import read_geojson

    mit = stage_inputs[2]
    res = _stage(stage_inputs, tmp_path, scorer=_MarkedValidated(load_mitosis_scorer(None, device="cpu")))
    c = res.counts
    assert c["mitoses_validated"] is True and c["mitoses"] == c["mitosis_candidates"] == len(res.points)
    feats = read_geojson(tmp_path / "mitoses.geojson").features
    assert {f.classification for f in feats} == {"Mitosis", "Mitotic hotspot"}
    # the hotspot (0.04 mm² = 800 px square) holds the two mitoses that lie close together
    d = np.hypot(*(mit[:, None] - mit[None]).transpose(2, 0, 1))
    i, j = np.unravel_index(np.argmin(d + np.eye(len(mit)) * 1e9), d.shape)
    x0, y0, x1, y1 = res.hotspot.bounds
    for x, y in mit[[i, j]]:
        assert x0 <= x <= x1 and y0 <= y <= y1
    assert c["mitoses_in_hotspot"] >= 2
    assert c["mitoses_per_mm2"] == pytest.approx(c["mitoses_in_hotspot"] / 0.04, abs=1e-3)
    assert c["mitotic_rate"] == {"value": c["mitoses_per_mm2"], "area_mm2": 0.04, "assessed": True, "reason": None}
    assert (tmp_path / "mitosis_density.npy").is_file()


def test_overview_draws_only_validated_mitoses(stage_inputs, tmp_path, monkeypatch):
    from PIL import Image

    import wsi_pipeline.mitosis_stage as stage
    from wsi_pipeline.batch.manifest import SlideJob
    from wsi_pipeline.config import PipelineConfig
    from wsi_pipeline.run import SlideRun
    from wsi_pipeline.run_stages import HOTSPOT_RGB, MITOSIS_RGB, detect_mitoses, write_overview

    synthetic, slide, _, nuclei, tissue = stage_inputs
    cfg = PipelineConfig().updated(**{"device": "cpu", "mitosis.hotspot_area_mm2": 0.04,
                                      "output.overview_max_size": 800})
    job = SlideJob(path=synthetic.path, slide_id="s")

    def drawn(out):
        out.mkdir()
        run = SlideRun("s", out)
        detect_mitoses(slide, job, cfg, nuclei, tissue, out, {}, run)
        write_overview(slide, tissue, Instances.empty(), out, run, cfg)
        img = np.asarray(Image.open(out / "overview.png").convert("RGB"))
        return run, [int((img == np.array(rgb, np.uint8)).all(-1).sum()) for rgb in (MITOSIS_RGB, HOTSPOT_RGB)]

    run, (red, orange) = drawn(tmp_path / "heuristic")
    assert run.counts["mitosis_candidates"] > 0  # there were candidates to draw...
    assert run.mitoses == [] and run.hotspot is None and red == 0 and orange == 0  # ...none drawn
    plain = stage.run_mitosis_stage
    monkeypatch.setattr(stage, "run_mitosis_stage", lambda *a, **k: plain(
        *a, **k, scorer=_MarkedValidated(load_mitosis_scorer(None, device="cpu"))))
    run, (red, orange) = drawn(tmp_path / "validated")
    assert len(run.mitoses) == run.counts["mitoses"] > 0 and red > 0 and orange > 0


# -- point evaluation -------------------------------------------------------------------
def test_point_scores_trivial_cases():
    gt = np.array([[0.0, 0.0], [100.0, 0.0]])
    perfect = score_points(gt, gt, radius=30)
    assert (perfect.tp, perfect.fp, perfect.fn, perfect.f1) == (2, 0, 0, 1.0)
    none = score_points(np.empty((0, 2)), gt, radius=30)
    assert (none.recall, none.precision, none.f1) == (0.0, 0.0, 0.0)
    assert score_points(np.empty((0, 2)), np.empty((0, 2)), radius=30).f1 == 1.0
    far = score_points([[0.0, 31.0]], [[0.0, 0.0]], radius=30)
    assert (far.tp, far.fp, far.fn) == (0, 1, 1)


def test_point_matching_is_one_to_one_and_optimal():
    # greedy nearest-first would pair p0 with g1 and leave g0 unmatched; optimal pairs both
    pred = np.array([[0.0, 0.0], [25.0, 0.0]])
    gt = np.array([[-20.0, 0.0], [10.0, 0.0]])
    s = score_points(pred, gt, radius=21)
    assert (s.tp, s.fp, s.fn) == (2, 0, 0)
    two_on_one = score_points([[0.0, 0.0], [1.0, 0.0]], [[0.0, 0.0]], radius=30)
    assert (two_on_one.tp, two_on_one.fp, two_on_one.fn) == (1, 1, 0)


def test_evaluate_point_files_and_cli(tmp_path):
    from shapely.geometry import Point, box

    from wsi_pipeline.annotations import Feature, write_geojson
    from wsi_pipeline.cli import main

    write_geojson(tmp_path / "gt.geojson", [Feature(Point(10, 10), "detection", "Mitosis"),
                                            Feature(Point(500, 500), "detection", "Mitosis")])
    write_geojson(tmp_path / "pred.geojson", [Feature(Point(20, 12), "detection", "Mitosis"),
                                              Feature(Point(900, 900), "detection", "Mitosis"),
                                              Feature(box(0, 0, 1000, 1000), "annotation", "Mitotic hotspot")])
    r = evaluate_point_paths(tmp_path / "pred.geojson", tmp_path / "gt.geojson", radius=30)
    assert (r["total"]["tp"], r["total"]["fp"], r["total"]["fn"]) == (1, 1, 1)
    rc = main(["evaluate", str(tmp_path / "pred.geojson"), str(tmp_path / "gt.geojson"), "--points",
               "--radius", "30", "--json", str(tmp_path / "s.json")])
    assert rc == 0
    assert json.loads((tmp_path / "s.json").read_text())["total"]["f1"] == pytest.approx(0.5)


# -- recall on crops centred on figures (a lab's own scanner) --------------------------------
def test_figure_crops_recall_and_cli(synth, mitosis_detector, tmp_path, capsys):
    from PIL import Image

    from wsi_pipeline.cli import main
    from wsi_pipeline.evaluation.points import evaluate_figure_crops

    _, slide, mit = synth
    for sub in ("normal", "blank"):
        (tmp_path / "crops" / sub).mkdir(parents=True)
        (tmp_path / "half" / sub).mkdir(parents=True)
    for i, (x, y) in enumerate(mit):
        crop = slide.read_region((int(x) - 64, int(y) - 64), (128, 128), level=0)
        Image.fromarray(crop).save(tmp_path / "crops" / "normal" / f"fig_{i}.png")
        Image.fromarray(crop).resize((64, 64), Image.Resampling.BILINEAR).save(tmp_path / "half" / "normal" / f"fig_{i}.png")
    blank = np.full((128, 128, 3), 235, np.uint8)  # glass: nothing to find
    Image.fromarray(blank).save(tmp_path / "crops" / "blank" / "glass.png")
    Image.fromarray(blank[:64, :64]).save(tmp_path / "half" / "blank" / "glass.png")

    r = evaluate_figure_crops(tmp_path / "crops", detector=mitosis_detector, mpp=0.25, radius_um=7.5)
    assert r["by_class"]["normal"]["crops"] == len(mit) and r["by_class"]["normal"]["recall"] == 1.0
    assert r["by_class"]["normal"]["candidate_recall"] == 1.0
    assert r["by_class"]["blank"] == {"crops": 1, "found": 0, "recall": 0.0, "candidates_found": 0,
                                      "candidate_recall": 0.0, "other_detections": 0, "other_detections_per_crop": 0.0}
    assert r["total"]["crops"] == len(mit) + 1 and r["validated"] is False
    assert r["images"]["blank/glass.png"]["found"] is False
    # crops scanned at 0.5 µm/px are resampled to the model's 0.25: the same figures are found
    half = evaluate_figure_crops(tmp_path / "half", detector=mitosis_detector, mpp=0.5, radius_um=7.5)
    assert half["by_class"]["normal"]["found"] == len(mit)

    rc = main(["evaluate", "heuristic", str(tmp_path / "half"), "--points", "--crops", "--mpp", "0.5",
               "--radius", "15", "--json", str(tmp_path / "r.json")])
    out = capsys.readouterr().out
    assert rc == 0 and "within 7.5 µm" in out and "TOTAL" in out
    assert json.loads((tmp_path / "r.json").read_text())["total"]["found"] == len(mit)
    rc = main(["evaluate", "heuristic", str(tmp_path / "crops"), "--points", "--crops"])
    assert rc == 2 and "--mpp" in capsys.readouterr().err
    rc = main(["evaluate", "heuristic", str(tmp_path / "nothing"), "--points", "--crops", "--mpp", "0.25"])
    err = capsys.readouterr().err
    assert rc == 2 and "nothing" in err and len(err.strip().splitlines()) == 1
