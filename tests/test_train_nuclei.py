"""``wsi-pipeline train nuclei``: targets, loss, an end-to-end tiny run, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
import torch
from stardist.geometry import star_dist

from detectors.stardist import StarDistConfig, StarDistNet, load_stardist_model
from wsi_pipeline.cli import main as cli
from wsi_pipeline.training.nuclei import NucleiTrainingOptions, Sample, make_batch, stardist_loss
from wsi_pipeline.training.nuclei_data import full_targets
from wsi_pipeline.training.synthetic import synthetic_nuclei

SMALL = StarDistConfig(n_rays=16, grid=(2, 2), n_channel_in=3, unet_n_depth=2, unet_n_filter_base=8,
                       net_conv_after_unet=16)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("nuclei")
    (root / "images").mkdir()
    (root / "labels").mkdir()
    for i in range(3):
        img, lbl = synthetic_nuclei((96, 96), seed=i)
        tifffile.imwrite(root / "images" / f"img{i}.tif", img)
        tifffile.imwrite(root / "labels" / f"img{i}.tif", lbl)
    return root


def test_targets_are_stardist_targets():
    _, lbl = synthetic_nuclei((64, 64), seed=1)
    t = full_targets(lbl, n_rays=16)
    prob, dist = t.prob[::2, ::2], t.dist[::2, ::2]
    assert prob.shape == (32, 32) and dist.shape == (32, 32, 16)
    sub = lbl[::2, ::2]
    assert np.all(prob[sub == 0] == 0) and np.all(prob[sub > 0] > 0) and prob.max() <= 1
    np.testing.assert_allclose(dist, star_dist(lbl, 16, grid=(2, 2)), atol=1e-5)


def test_loss_decreases_on_a_fixed_batch():
    img, lbl = synthetic_nuclei((64, 64), seed=2)
    options = NucleiTrainingOptions(patch_size=64, batch_size=2)
    x, target = make_batch([Sample("a", img, lbl)], np.random.default_rng(0), config=SMALL, options=options)
    assert x.shape == (2, 3, 64, 64) and target[0].shape == (2, 1, 32, 32) and target[1].shape == (2, 16, 32, 32)
    torch.manual_seed(0)
    net = StarDistNet(SMALL)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    with torch.no_grad():
        first = float(stardist_loss(net, x, target))
    for _ in range(15):
        opt.zero_grad()
        loss = stardist_loss(net, x, target)
        loss.backward()
        opt.step()
    with torch.no_grad():
        assert float(stardist_loss(net, x, target)) < 0.7 * first


def test_train_nuclei_end_to_end(dataset, tmp_path, capsys):
    out = tmp_path / "model"
    rc = cli(["train", "nuclei", "--images", str(dataset / "images"), "--labels", str(dataset / "labels"),
              "--mpp", "0.5", "--out", str(out), "--epochs", "2", "--steps-per-epoch", "2", "--batch-size", "2",
              "--patch-size", "64", "--preset", "small", "--val", "img2", "--device", "cpu",
              "--stain-jitter", "0.3", "--blur", "0.5"])
    assert rc == 0
    assert "wrote" in capsys.readouterr().out
    assert {p.name for p in out.iterdir()} == {"config.json", "thresholds.json", "weights_best.h5", "training.json"}
    report = json.loads((out / "training.json").read_text())
    assert len(report["history"]["val_loss"]) == 2
    assert report["options"]["stain_jitter"] == 0.3 and report["options"]["blur"] == 0.5
    assert report["validation"]["metric"] == "aji" and {"plain", "refined"} <= set(report["validation"])
    assert json.loads((out / "config.json").read_text())["wsi_pipeline"]["val_images"] == ["img2"]
    det = load_stardist_model(out, device="cpu", tile_size=96, halo=16, max_object_size=48)
    assert det.spec.mpp == 0.5
    thr = json.loads((out / "thresholds.json").read_text())
    assert det.thresholds.prob == thr["prob"] and 0 < thr["prob"] < 1
    img = tifffile.imread(dataset / "images" / "img0.tif")
    assert len(det.predict_batch(img[None])) == 1


def test_train_from_geojson_polygons(dataset, tmp_path):
    io = pytest.importorskip("wsi_pipeline.evaluation.io")
    from skimage.measure import find_contours

    from wsi_pipeline.annotations import Feature, write_geojson

    import shapely

    poly_dir = tmp_path / "polygons"
    poly_dir.mkdir()
    for i in range(3):
        lbl = tifffile.imread(dataset / "labels" / f"img{i}.tif")
        feats = []
        for k in range(1, lbl.max() + 1):
            c = find_contours(np.pad(lbl == k, 1).astype(float), 0.5)[0] - 1
            feats.append(Feature(shapely.Polygon(c[:, ::-1] + 0.5).buffer(0), object_type="annotation",
                                 classification="Nucleus"))
        write_geojson(poly_dir / f"img{i}.geojson", feats)
    back = io.load_labels(poly_dir / "img0.geojson", shape=(96, 96))
    assert back.max() == tifffile.imread(dataset / "labels" / "img0.tif").max()
    rc = cli(["train", "nuclei", "--images", str(dataset / "images"), "--geojson", str(poly_dir), "--mpp", "0.5",
              "--out", str(tmp_path / "m"), "--epochs", "1", "--steps-per-epoch", "1", "--batch-size", "1",
              "--patch-size", "64", "--preset", "small", "--device", "cpu"])
    assert rc == 0 and (tmp_path / "m" / "weights_best.h5").is_file()


def test_bad_inputs_are_one_line_errors(dataset, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    rc = cli(["train", "nuclei", "--images", str(dataset / "images"), "--labels", str(empty), "--mpp", "0.5",
              "--out", str(tmp_path / "m")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "no annotations" in err and "\n" not in err
    assert not (tmp_path / "m").exists()
    rc = cli(["train", "nuclei", "--images", str(tmp_path / "nope"), "--labels", str(empty), "--mpp", "0.5",
              "--out", str(tmp_path / "m")])
    assert rc == 2 and "not a folder" in capsys.readouterr().err


def test_f1_scores_agree_with_stardist_matching():
    from scipy import ndimage as ndi
    from stardist.matching import matching

    from wsi_pipeline.training.nuclei import f1_scores

    _, gt = synthetic_nuclei((160, 160), seed=4)
    pred = ndi.shift(gt, (2, 3), order=0)
    pred[pred == 3] = 0
    pred[:12, :12] = 999
    tps, n_gt, n_pred = f1_scores(gt, pred, (0.3, 0.5, 0.7))
    for t, tp in zip((0.3, 0.5, 0.7), tps):
        m = matching(gt, pred, thresh=t)
        assert (tp, n_gt, n_pred) == (m.tp, m.n_true, m.n_pred)


@pytest.mark.parametrize("rot", [0, 1, 2, 3])
@pytest.mark.parametrize("flip", [False, True])
def test_flips_and_rotations_permute_the_rays(rot, flip):
    from wsi_pipeline.training.nuclei_data import full_targets, transform_patch

    img, lbl = synthetic_nuclei((80, 80), seed=5)
    t = full_targets(lbl, n_rays=16)
    _, lbl2, prob2, dist2 = transform_patch(img, lbl, t.prob, t.dist, rot=rot, flip=flip)
    direct = full_targets(np.ascontiguousarray(lbl2), n_rays=16)
    np.testing.assert_allclose(dist2, direct.dist, atol=1e-4)
    np.testing.assert_allclose(prob2, direct.prob, atol=1e-6)


def test_rays_that_cannot_rotate_are_refused():
    from wsi_pipeline.training.nuclei_data import fliplr_rays, rot90_rays

    with pytest.raises(ValueError):
        rot90_rays(18, 1)
    with pytest.raises(ValueError):
        fliplr_rays(7)
    np.testing.assert_array_equal(rot90_rays(18, 0), np.arange(18))
    np.testing.assert_array_equal(rot90_rays(16, 4), np.arange(16))
    np.testing.assert_array_equal(rot90_rays(16, 1), (np.arange(16) + 4) % 16)


def test_batch_targets_are_the_whole_images_targets():
    """A whole-image patch without augmentation carries exactly stardist's targets; a patch
    cut from it keeps the rays of nuclei that cross the patch border."""
    from stardist.utils import edt_prob

    img, lbl = synthetic_nuclei((64, 64), seed=3)
    options = NucleiTrainingOptions(patch_size=64, batch_size=1)
    _, (prob, dist) = make_batch([Sample("a", img, lbl)], np.random.default_rng(0), config=SMALL, options=options,
                                 train=False)
    np.testing.assert_allclose(dist[0].numpy().transpose(1, 2, 0), star_dist(lbl, 16, grid=(2, 2)), atol=1e-5)
    np.testing.assert_allclose(prob[0, 0].numpy(), edt_prob(lbl)[::2, ::2], atol=1e-6)
    options = NucleiTrainingOptions(patch_size=32, batch_size=6, foreground_prob=1.0)
    s = Sample("a", img, lbl)
    _, (prob, dist) = make_batch([s], np.random.default_rng(1), config=SMALL, options=options)
    assert prob.shape == (6, 1, 16, 16) and dist.shape == (6, 16, 16, 16)
    assert float(dist.max()) <= float(s.targets.dist.max()) + 1e-6 and float(prob.max()) > 0


def test_resample_pair_halves_image_and_labels():
    from wsi_pipeline.training.nuclei_data import resample_pair

    img, lbl = synthetic_nuclei((96, 96), seed=6)
    small_img, small_lbl = resample_pair(img, lbl, 0.5)
    assert small_img.shape == (48, 48, 3) and small_img.dtype == np.uint8
    assert small_lbl.shape == (48, 48) and small_lbl.dtype == lbl.dtype
    assert set(np.unique(small_lbl)) <= set(np.unique(lbl)) and len(np.unique(small_lbl)) >= 0.9 * len(np.unique(lbl))
    assert abs(float(small_img.mean()) - float(img.mean())) < 2.0
    same_img, same_lbl = resample_pair(img, lbl, 1)
    assert same_img is img and same_lbl is lbl


def test_cosine_annealing_ends_low():
    from wsi_pipeline.training.trainer import cosine_factor, fit

    assert cosine_factor(0) == 1.0 and cosine_factor(1) == pytest.approx(0.05) and cosine_factor(2) == cosine_factor(1)
    assert cosine_factor(0.25) > cosine_factor(0.5) > cosine_factor(0.75)
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    x, y = torch.randn(8, 3), torch.randn(8, 1)

    def loss_fn(m, a, b):
        return ((m(a) - b) ** 2).mean()

    res = fit(model, sample_train=lambda rng: (x, y), loss_fn=loss_fn, val_batches=[(x, y)], epochs=4,
              steps_per_epoch=5, device=torch.device("cpu"), lr=0.1, anneal=True)
    assert res.lr[0] < 0.1 and all(a > b for a, b in zip(res.lr, res.lr[1:])) and res.lr[-1] < 0.02


def test_train_at_a_coarser_resolution(dataset, tmp_path):
    out = tmp_path / "half"
    rc = cli(["train", "nuclei", "--images", str(dataset / "images"), "--labels", str(dataset / "labels"),
              "--mpp", "0.5", "--train-mpp", "1.0", "--out", str(out), "--epochs", "1", "--steps-per-epoch", "1",
              "--batch-size", "1", "--patch-size", "32", "--preset", "small", "--val", "img2", "--anneal",
              "--device", "cpu"])
    assert rc == 0
    assert json.loads((out / "config.json").read_text())["wsi_pipeline"]["mpp"] == 1.0
    assert load_stardist_model(out, device="cpu", tile_size=64, halo=16, max_object_size=32).spec.mpp == 1.0


def test_outline_refinement_is_recorded_and_init_with_no_epochs_only_rechooses(dataset, tmp_path):
    """``--outline-refinement on`` puts the setting in config.json (the loader switches it on);
    ``--init M --epochs 0`` keeps M's weights and chooses thresholds again."""
    base = ["train", "nuclei", "--images", str(dataset / "images"), "--labels", str(dataset / "labels"),
            "--mpp", "0.5", "--steps-per-epoch", "1", "--batch-size", "1", "--patch-size", "64", "--preset", "small",
            "--val", "img2", "--device", "cpu"]
    first, second = tmp_path / "on", tmp_path / "off"
    assert cli(base + ["--out", str(first), "--epochs", "1", "--outline-refinement", "on"]) == 0
    meta = json.loads((first / "config.json").read_text())["wsi_pipeline"]
    assert meta["outline_refinement"]["alpha"] == 0.5
    assert load_stardist_model(first, device="cpu", tile_size=96, halo=16, max_object_size=48).refinement is not None
    assert cli(base + ["--out", str(second), "--epochs", "0", "--init", str(first), "--outline-refinement", "off",
                       "--threshold-metric", "f1"]) == 0
    assert "outline_refinement" not in json.loads((second / "config.json").read_text())["wsi_pipeline"]
    report = json.loads((second / "training.json").read_text())
    assert report["validation"]["metric"] == "f1" and set(report["validation"]) == {"metric", "plain"}
    a = load_stardist_model(first, device="cpu", tile_size=96, halo=16, max_object_size=48)
    b = load_stardist_model(second, device="cpu", tile_size=96, halo=16, max_object_size=48)
    assert b.refinement is None
    for (ka, va), (kb, vb) in zip(a.net.state_dict().items(), b.net.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)


def test_tta_auto_and_threshold_images_all_are_tried_and_recorded(dataset, tmp_path):
    """``--tta auto`` scores every setting with and without the 8-view mean and records the
    winner where the loader reads it; ``--threshold-images all`` chooses on every image."""
    out = tmp_path / "tta"
    rc = cli(["train", "nuclei", "--images", str(dataset / "images"), "--labels", str(dataset / "labels"),
              "--mpp", "0.5", "--out", str(out), "--epochs", "1", "--steps-per-epoch", "2", "--batch-size", "1",
              "--patch-size", "64", "--preset", "small", "--val", "img2", "--device", "cpu", "--tta", "auto",
              "--outline-refinement", "off", "--threshold-images", "all"])
    assert rc == 0
    report = json.loads((out / "training.json").read_text())
    assert set(report["validation"]) == {"metric", "plain", "plain+tta"}
    assert sorted(report["chosen_on"]) == ["img0", "img1", "img2"]
    chosen = max(("plain", "plain+tta"), key=lambda k: report["validation"][k])
    meta = json.loads((out / "config.json").read_text())["wsi_pipeline"]
    assert meta.get("tta", False) is (chosen == "plain+tta")
    det = load_stardist_model(out, device="cpu", tile_size=96, halo=16, max_object_size=48)
    assert det.tta is (chosen == "plain+tta")
    assert ("mirror" in det.with_tta(True).description) and ("mirror" not in det.with_tta(False).description)


def test_stain_jitter_moves_the_dyes_and_blur_softens_patches():
    """``stain_jitter`` widens the H&E jitter without touching brightness's; ``blur`` blurs
    the image (targets unchanged); the defaults keep the earlier recipe's draws."""
    from wsi_pipeline.training.nuclei import color_jitter

    img = synthetic_nuclei((64, 64), seed=3)[0].astype(np.float32)

    def spread(stain):
        rng = np.random.default_rng(0)
        od = [-np.log10(np.clip(color_jitter(img, rng, jitter=0.05, stain=stain), 1, 255) / 255).mean((0, 1))
              for _ in range(40)]
        return np.std(od, 0).mean()

    assert spread(0.4) > 2 * spread(0.05)
    same = [color_jitter(img, np.random.default_rng(1), jitter=0.05, stain=s) for s in (None, 0.05)]
    np.testing.assert_array_equal(*same)  # None: the brightness jitter's value, as before

    s = Sample("a", *synthetic_nuclei((64, 64), seed=4))

    def curvature(blur):  # mean |second difference| over a few draws: the fine detail left
        out = []
        for seed in range(4):
            x, t = make_batch([s], np.random.default_rng(seed), config=SMALL,
                              options=NucleiTrainingOptions(patch_size=64, batch_size=1, blur=blur))
            out.append(float(torch.diff(x, n=2, dim=-1).abs().mean()))
        return np.mean(out), t

    (sharp, t_sharp), (soft, t_soft) = curvature(0.0), curvature(1.0)
    assert soft < 0.6 * sharp
    torch.testing.assert_close(t_sharp[0], t_soft[0])  # the same windows: targets untouched
    torch.testing.assert_close(t_sharp[1], t_soft[1])
