"""``wsi-pipeline train mitosis`` end to end on a tiny synthetic set (seconds)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from wsi_pipeline.training.mitosis_data import SampleSet, split_groups


def _figure_crop(rng, size=96) -> np.ndarray:
    """A pale field with a dark, clumped, bar-shaped 'metaphase' at the centre."""
    img = np.full((size, size, 3), (225, 190, 215), np.float32) + rng.normal(0, 4, (size, size, 3))
    yy, xx = np.mgrid[:size, :size] - size / 2
    a = rng.uniform(0, np.pi)
    u, v = xx * np.cos(a) + yy * np.sin(a), -xx * np.sin(a) + yy * np.cos(a)
    bar = (np.abs(u) < 14) & (np.abs(v) < 4 + rng.integers(0, 3))
    img[bar] = (60, 30, 110)
    return np.clip(img, 0, 255).astype(np.uint8)


def _field(rng, size=256) -> np.ndarray:
    """Round, evenly stained nuclei on pink stroma, pale and dark (lymphocyte-like): no mitoses."""
    img = np.full((size, size, 3), (235, 180, 205), np.float32) + rng.normal(0, 4, (size, size, 3))
    yy, xx = np.mgrid[:size, :size]
    for k, (cx, cy) in enumerate(rng.uniform(24, size - 24, (14, 2))):
        colour = (70, 40, 120) if k % 2 else (140, 100, 175)
        img[(xx - cx) ** 2 + (yy - cy) ** 2 < rng.uniform(7, 11) ** 2] = colour
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny_mitosis")
    rng = np.random.default_rng(0)
    (root / "crops" / "normal").mkdir(parents=True)
    rows = ["uid,slide"]
    for uid in range(12):
        Image.fromarray(_figure_crop(rng)).save(root / "crops" / "normal" / f"X_{uid}.png")
        rows.append(f"{uid},slide{uid % 4}")
    (root / "crops" / "labels.csv").write_text("\n".join(rows) + "\n")
    (root / "neg").mkdir()
    for i in range(4):
        Image.fromarray(_field(rng)).save(root / "neg" / f"field{i}.png")
    return root


def test_split_is_by_group_and_covers_every_split():
    groups = np.array([f"s{i % 5}" for i in range(50)], dtype=object)
    table = split_groups(groups, val_fraction=0.2, test_fraction=0.2, seed=1)
    assert set(table) == set(groups) and set(table.values()) == {"train", "val", "test"}
    assert split_groups(groups, val_fraction=0.2, test_fraction=0.2, seed=1) == table


def test_crop_folders_group_by_slide_csv(tiny):
    from wsi_pipeline.training.mitosis_data import load_crop_folders

    s = load_crop_folders(tiny / "crops", mpp=0.25, patch=80)
    assert isinstance(s, SampleSet) and s.patches.shape == (12, 80, 80, 3)
    assert set(s.group) == {"slide0", "slide1", "slide2", "slide3"} and set(s.label) == {"normal"}
    half = load_crop_folders(tiny / "crops", mpp=0.5, patch=80)  # 0.5 µm/px crops are upsampled 2x
    assert half.patches.shape == (12, 80, 80, 3)


def test_train_mitosis_end_to_end_and_load(tiny, tmp_path):
    from detectors.mitosis import load_mitosis_scorer
    from detectors.mitosis.detector import MitosisDetector
    from wsi_pipeline.cli import main

    out = tmp_path / "model"
    rc = main(["train", "mitosis", "--crops", str(tiny / "crops"), "--negatives", str(tiny / "neg"),
               "--mpp", "0.25", "--out", str(out), "--epochs", "2", "--steps-per-epoch", "4",
               "--batch-size", "16", "--device", "cpu", "--no-crop-neighbours"])
    assert rc == 0
    assert {p.name for p in out.iterdir()} == {"weights.pt", "config.json", "model_card.json", "model_card.md"}
    assert (out / "weights.pt").stat().st_size < 2_000_000
    card = json.loads((out / "model_card.json").read_text())
    train_groups = set(card["split"]["train"]["groups"])
    for other in ("val", "test"):
        assert not train_groups & set(card["split"][other]["groups"])  # split by slide/image
    assert card["split"]["test"]["by_class"]["normal"] > 0 and "recall" in card["metrics"]["test"]
    assert card["metrics"]["test"]["field_images"] >= 1 and card["metrics"]["test"]["fp_per_mm2"] is not None
    md = (out / "model_card.md").read_text()
    assert "Metrics" in md and "Validated for a mitotic rate: no" in md
    # data named relative to the dataset, never by the training machine's paths
    assert set(card["data"]) == {"crops crops", "negatives neg"}
    for text in ((out / "model_card.json").read_text(), md, (out / "config.json").read_text()):
        assert str(tiny) not in text and str(tmp_path) not in text

    # a freshly trained model is not validated: its detections are candidates, no rate
    scorer = load_mitosis_scorer(str(out), device="cpu")
    assert scorer.validated is False and "trained" in scorer.description and "NOT VALIDATED" in scorer.description
    assert scorer.crop_size == 64 and scorer.mpp == 0.25 and 0 < scorer.threshold < 1
    crops = np.stack([_figure_crop(np.random.default_rng(9))[16:80, 16:80], np.full((64, 64, 3), 230, np.uint8)])
    p = scorer.score(crops)
    assert p.shape == (2,) and p.dtype == np.float32 and ((p >= 0) & (p <= 1)).all()
    assert MitosisDetector(model=str(out), device="cpu").spec.classes == ("Mitosis candidate (unvalidated)",)

    # recording evidence in config.json (as a lab would after its own check) makes it validated
    cfg = json.loads((out / "config.json").read_text())
    (out / "config.json").write_text(json.dumps({**cfg, "validated": True, "validation": "lab check: 95/100"}))
    assert load_mitosis_scorer(str(out), device="cpu").validated is True
    assert MitosisDetector(model=str(out), device="cpu").spec.classes == ("Mitosis",)


def test_train_refuses_bad_input(tiny, tmp_path, capsys):
    from wsi_pipeline.cli import main

    (tmp_path / "notmodel").mkdir()
    (tmp_path / "notmodel" / "keep.txt").write_text("x")
    rc = main(["train", "mitosis", "--crops", str(tiny / "crops"), "--mpp", "0.25", "--out", str(tmp_path / "notmodel")])
    assert rc == 2 and "refusing to overwrite" in capsys.readouterr().err
    rc = main(["train", "mitosis", "--crops", str(tmp_path / "missing"), "--negatives", str(tiny / "neg"),
               "--mpp", "0.25", "--out", str(tmp_path / "m")])
    assert rc == 2 and not (tmp_path / "m").exists()


def test_loading_a_damaged_model_folder_is_an_input_error(tmp_path):
    from detectors.mitosis import load_mitosis_scorer
    from tiling.errors import InputError

    with pytest.raises(InputError, match="not found"):
        load_mitosis_scorer(str(tmp_path / "nothing"), device="cpu")
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "weights.pt").write_bytes(b"junk")
    (tmp_path / "m" / "config.json").write_text(json.dumps({"format": "wsi-pipeline-mitosis", "classes": ["imposter", "normal"],
                                                            "weights_sha256": "0" * 64}))
    with pytest.raises(InputError, match="sha256"):
        load_mitosis_scorer(str(tmp_path / "m"), device="cpu")


def test_validated_needs_evidence_and_the_shipped_model_is_not_validated(tmp_path):
    import shutil

    from detectors.mitosis import load_mitosis_scorer
    from detectors.mitosis.scorer import DEFAULT_MODEL
    from tiling.errors import InputError

    if not DEFAULT_MODEL.is_dir():
        pytest.skip("packaged mitosis model absent")
    shipped = load_mitosis_scorer("default", device="cpu")
    assert shipped.validated is False and "NOT VALIDATED" in shipped.description
    assert "1 of 100" in shipped.config.validation  # the evidence against it is recorded
    m = tmp_path / "m"
    shutil.copytree(DEFAULT_MODEL, m)
    cfg = json.loads((m / "config.json").read_text())
    for bad in ({"validated": True, "validation": "  "}, {"validated": "yes"}):
        (m / "config.json").write_text(json.dumps({**cfg, **bad}))
        with pytest.raises(InputError, match="validat"):
            load_mitosis_scorer(str(m), device="cpu")


def test_model_cards_name_no_machine_paths():
    from detectors.mitosis.scorer import DEFAULT_MODEL
    from wsi_pipeline.training.mitosis import check_portable, dataset_name

    assert dataset_name("/srv/data/mitosis/ami-br-midog21/") == "ami-br-midog21"
    for bad in ({"data": {"crops /work/shared/x": "1"}}, {"k": ["C:\\data\\crops"]}, {"k": "see ~/data"}):
        with pytest.raises(ValueError, match="machine path"):
            check_portable(bad)
    check_portable({"groups": ["monuseg-dev/TCGA-1"], "input": "64 px at 0.25 µm/px", "fp": "FP/mm²"})
    if DEFAULT_MODEL.is_dir():  # the shipped card and config
        for name in ("model_card.json", "config.json"):
            check_portable(json.loads((DEFAULT_MODEL / name).read_text()))
        md = (DEFAULT_MODEL / "model_card.md").read_text()
        assert "/work/" not in md and "/home/" not in md and "research use" in md


# -- scanner augmentation and leave-one-scanner-out ------------------------------------------
def test_augment_shapes_ranges_and_seed():
    import torch

    from wsi_pipeline.training.mitosis_augment import augment

    rng = np.random.default_rng(0)
    patches = np.stack([_figure_crop(rng)[:96, :96] for _ in range(8)])
    a = augment(torch.from_numpy(patches), 64, torch.Generator().manual_seed(3))
    b = augment(torch.from_numpy(patches), 64, torch.Generator().manual_seed(3))
    assert a.shape == (8, 3, 64, 64) and a.dtype == torch.float32
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0
    assert torch.equal(a, b)  # same seed, same batch
    c = augment(torch.from_numpy(patches), 64, torch.Generator().manual_seed(4))
    assert not torch.equal(a, c)
    # the dark figure at the patch centre stays inside the crop (shift bounded by the margin)
    plain = augment(torch.from_numpy(patches), 64, torch.Generator().manual_seed(5), scanner=False)
    centre = plain[:, :, 24:40, 24:40].mean((1, 2, 3))
    border = torch.cat([plain[:, :, :6].flatten(1), plain[:, :, -6:].flatten(1)], 1).mean(1)
    assert (centre < border).all()


def test_sample_pack_round_trip(tiny, tmp_path):
    from wsi_pipeline.training.mitosis_data import load_crop_folders

    s = load_crop_folders(tiny / "crops", mpp=0.25, patch=80)
    s.field_area_mm2["neg/a"] = 0.0625
    s.save(tmp_path / "pack.npz")
    back = SampleSet.load(tmp_path / "pack.npz")
    np.testing.assert_array_equal(back.patches, s.patches)
    assert back.label.tolist() == s.label.tolist() and back.group.tolist() == s.group.tolist()
    assert back.source.tolist() == s.source.tolist() and back.field_area_mm2 == {"neg/a": 0.0625}


def test_leave_one_scanner_out_split_and_summary():
    from wsi_pipeline.training.mitosis_loso import fold_report, loso_split, midog21_scanner, summarise

    assert [midog21_scanner(s) for s in ("001.tiff", "050.tiff", "051.tiff", "150.tiff", "x.tiff")] == \
        ["Hamamatsu XR", "Hamamatsu XR", "Hamamatsu S360", "Aperio CS2", None]
    groups = ["002.tiff"] * 2 + ["003.tiff", "004.tiff", "005.tiff", "060.tiff", "120.tiff",
                                 "monuseg-train/a", "monuseg-dev/b", "cmu1/c"]
    source = ["crops", "crop-neighbours"] + ["crops"] * 5 + ["fields"] * 3
    label = ["normal", "imposter"] + ["normal"] * 5 + ["imposter"] * 3
    n = len(groups)
    data = SampleSet(np.zeros((n, 8, 8, 3), np.uint8), np.array(label, object), np.array(groups, object),
                     np.array(source, object), {"monuseg-dev/b": 0.5, "cmu1/c": 0.25})
    split = loso_split(data, "Hamamatsu XR", train_fields={"monuseg-train"}, test_fields={"monuseg-dev", "cmu1"})
    assert split[:5].tolist() == ["test"] * 5  # the XR slides' crops and the neighbour
    assert set(split[5:7].tolist()) <= {"train", "val"}  # the other scanners, split by slide
    assert split[7:].tolist() == ["train", "test", "test"]  # fields by folder

    test = data.subset(split == "test")
    # test = 4 XR figures (0.9, 0.3, 0.6, 0.2) + 1 neighbour (0.8) + monuseg-dev (0.1) + cmu1 (0.95)
    scores = np.array([0.9, 0.8, 0.3, 0.6, 0.2, 0.1, 0.95])
    r = fold_report(test, scores, val_threshold=0.5)
    assert r["figures"] == 4 and r["crop_imposters"] == 1
    assert r["recall_at_val_threshold"] == 0.5 and r["recall_by_threshold"]["0.25"] == 0.75
    assert r["fields"]["cmu1"]["per_mm2_by_threshold"]["0.50"] == 4.0  # 1 detection in 0.25 mm²
    assert r["fields"]["monuseg-dev"]["per_mm2_by_threshold"]["0.50"] == 0.0
    s = summarise({"XR": r, "other": {**r, "recall_by_threshold": {k: 1.0 for k in r["recall_by_threshold"]}}},
                  target_recall=0.75)
    assert s["threshold"] == 0.3 and s["recall"] == {"XR": 0.75, "other": 1.0}  # 0.3 still keeps 0.3
    assert s["detections_per_mm2"] == {"cmu1": 4.0, "monuseg-dev": 0.0}
    assert summarise({"XR": r}, target_recall=0.99)["threshold"] == 0.2  # all 4 figures score >= 0.2
    low = {**r, "recall_by_threshold": {k: 0.5 for k in r["recall_by_threshold"]}}
    assert summarise({"XR": r, "low": low}, target_recall=0.8)["threshold"] is None


def test_field_imposters_capped_per_crop_imposter():
    from wsi_pipeline.training.mitosis_loso import cap_field_imposters

    source = np.array(["crops"] * 4 + ["crop-neighbours"] * 3 + ["fields"] * 20, object)
    n = len(source)
    data = SampleSet(np.zeros((n, 8, 8, 3), np.uint8), np.array(["normal"] * 4 + ["imposter"] * 23, object),
                     np.array([f"g{i}" for i in range(n)], object), source)
    split = np.array(["train"] * 7 + ["train"] * 15 + ["test"] * 5, object)
    capped = cap_field_imposters(data, split, per_crop_imposter=2.0, seed=1)
    assert ((capped == "train") & (source == "fields")).sum() == 6  # 2 x 3 neighbours
    assert (capped[:7] == "train").all() and (capped[-5:] == "test").all()  # crops and test fields untouched
    assert ((capped == "unused") & (source == "fields")).sum() == 9
    assert cap_field_imposters(data, split, per_crop_imposter=None).tolist() == split.tolist()
    assert cap_field_imposters(data, split, per_crop_imposter=2.0, seed=1).tolist() == capped.tolist()


def test_candidate_centres_add_the_blobs_the_nuclei_missed():
    from detectors.base import Instances
    from wsi_pipeline.training.mitosis_data import candidate_centres

    img = np.full((128, 128, 3), 235, np.uint8)
    yy, xx = np.mgrid[:128, :128]
    img[(xx - 90) ** 2 + (yy - 40) ** 2 < 8**2] = (40, 20, 90)  # a dark clump, not among the nuclei
    assert candidate_centres(img, Instances.empty(), blobs=False).shape == (0, 2)
    xy = candidate_centres(img, Instances.empty())
    assert xy.shape == (1, 2) and np.allclose(xy[0], (90.5, 40.5), atol=1.0)


def test_annotated_images_take_the_detectors_candidates_as_imposters(tmp_path):
    """Imposters of GeoJSON-marked images are what a run scores (candidate nuclei and the dark
    blobs they miss), never near a mark; the marks are the positives with their classes."""
    import shapely

    from detectors.base import Instances
    from wsi_pipeline.annotations import Feature, write_geojson
    from wsi_pipeline.training.mitosis_data import IMPOSTER, load_annotated_images

    class NoNuclei:  # a nuclei detector that finds nothing: every candidate is a blob
        def predict(self, image):
            return Instances.empty()

    img = np.full((256, 256, 3), 235, np.uint8)
    yy, xx = np.mgrid[:256, :256]
    marks = {(50, 50): "Mitosis", (200, 60): "Atypical mitosis"}
    for cx, cy in [*marks, (190, 200)]:  # two marked figures and one dark clump far from both
        img[(xx - cx) ** 2 + (yy - cy) ** 2 < 8**2] = (40, 20, 90)
    (tmp_path / "img").mkdir()
    (tmp_path / "ann").mkdir()
    Image.fromarray(img).save(tmp_path / "img" / "field.png")
    write_geojson(tmp_path / "ann" / "field.geojson",
                  [Feature(shapely.Point(x, y).buffer(6), "annotation", c) for (x, y), c in marks.items()])
    kw = dict(mpp=0.25, patch=64, nuclei=NoNuclei())
    s = load_annotated_images(tmp_path / "img", tmp_path / "ann", **kw)
    assert sorted(s.label[s.label != IMPOSTER]) == ["atypical", "normal"]
    imp = s.patches[s.label == IMPOSTER]
    assert len(imp) == 1 and imp[0, 32, 32].max() < 100  # the clump, centred; the marked figures are not imposters
    assert set(s.source) == {"annotated"}
    none = load_annotated_images(tmp_path / "img", tmp_path / "ann", blobs=False, **kw)
    assert (none.label == IMPOSTER).sum() == 0


def test_sharpening_and_blur_both_happen_and_stay_in_range():
    import torch

    from wsi_pipeline.training.mitosis_augment import _blur

    x = torch.rand(64, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    y = _blur(x, torch.Generator().manual_seed(1))
    assert y.shape == x.shape and float(y.min()) >= 0 and float(y.max()) <= 1
    hf = lambda t: (t[..., 1:] - t[..., :-1]).abs().mean((1, 2, 3))  # noqa: E731 - high-frequency energy
    assert (hf(y) < 0.95 * hf(x)).any() and (hf(y) > 1.02 * hf(x)).any()  # some blurred, some sharpened
    assert torch.equal(_blur(x, torch.Generator().manual_seed(1)), y)


def test_tta_scores_average_the_flips(tmp_path):
    import torch

    from detectors.mitosis.classifier import MitosisNet
    from detectors.mitosis.model_io import MitosisModelConfig, save_model_folder
    from wsi_pipeline.training.mitosis import predict
    from wsi_pipeline.training.mitosis_loso import tta_scores

    torch.manual_seed(0)
    net = MitosisNet(2, width=4).eval()
    folder = save_model_folder(tmp_path / "m", net, MitosisModelConfig(classes=("imposter", "normal"), width=4), {},
                               "# m\n")
    patches = np.random.default_rng(0).integers(0, 255, (5, 80, 80, 3), dtype=np.uint8)
    plain = tta_scores(folder, patches, flips=1)
    np.testing.assert_allclose(plain, predict(net, patches, 64, torch.device("cpu")), atol=1e-5)
    four = tta_scores(folder, patches, flips=4)
    flipped = patches[:, :, ::-1]  # a horizontally flipped patch has the same 4-flip average
    np.testing.assert_allclose(tta_scores(folder, np.ascontiguousarray(flipped), flips=4), four, atol=1e-5)
