"""``scripts/train_monuseg.py --fold`` splits and ``scripts/monuseg_cv.py``'s pooling of the folds."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from wsi_pipeline.training.nuclei import Sample
from wsi_pipeline.training.synthetic import synthetic_nuclei

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import monuseg_cv
import train_monuseg


def _samples(n):
    return [Sample(f"tile{i}", np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4), np.int32)) for i in range(n)]


def test_fixed_split_and_leave_one_tile_out_folds():
    s = _samples(7)
    train, val, test = train_monuseg.split(s, None)
    assert [x.name for x in train] == ["tile0", "tile1", "tile2", "tile3"]
    assert [x.name for x in val] == ["tile4"] and [x.name for x in test] == ["tile5", "tile6"]
    seen = []
    for k in range(7):
        train, val, test = train_monuseg.split(s, k)
        assert [x.name for x in test] == [f"tile{k}"] and [x.name for x in val] == [f"tile{(k + 1) % 7}"]
        assert len(train) == 5 and not {x.name for x in train} & {f"tile{k}", f"tile{(k + 1) % 7}"}
        seen += [x.name for x in test]
    assert sorted(seen) == [x.name for x in s]  # every tile is tested exactly once
    with pytest.raises(SystemExit, match="--fold 7: the data has 7 tiles"):
        train_monuseg.split(s, 7)


def _fold(out: Path, k: int, name: str, pred: np.ndarray, other: np.ndarray) -> None:
    d = out / f"fold-{k}"
    d.mkdir(parents=True)
    (d / "results.json").write_text(json.dumps({
        "train_tiles": [], "val_tiles": [], "steps": 10, "fit_seconds": 1.0, "device": "cpu",
        "thresholds": {"prob": 0.5, "nms": 0.4}, "outlines_redrawn": False, "tta": False, "best_epoch": 1}))
    np.savez_compressed(d / "test_labels.npz", **{name: pred})
    np.savez_compressed(d / "test_labels_other_outlines.npz", **{name: other})


def test_pooling_scores_each_fold_on_its_own_test_tile(tmp_path, capsys):
    tiles = [synthetic_nuclei((96, 96), seed=i) for i in range(3)]
    pack = tmp_path / "pack.npz"
    train_monuseg.save_pack(pack, [Sample(f"t{i}", img, lbl) for i, (img, lbl) in enumerate(tiles)])
    out = tmp_path / "cv"
    # folds 0 and 1 predict their test tile exactly (as validation chose) and nothing (other outlines);
    # fold 2 never ran
    for k in (0, 1):
        lbl = tiles[k][1]
        _fold(out, k, f"t{k}", lbl, np.zeros_like(lbl))
    rc = monuseg_cv.main(["--pack", str(pack), "--out", str(out), "--aggregate-only", "--no-weightfree"])
    assert rc == 0
    result = json.loads((out / "cv.json").read_text())
    assert result["n_tiles"] == 2 and result["n_tiles_in_data"] == 3 and sorted(result["folds"]) == ["0", "1"]
    assert result["pooled"]["stardist"]["aji"] == pytest.approx(1.0)
    assert result["pooled"]["stardist"]["n_gt"] == sum(len(np.unique(t[1])) - 1 for t in tiles[:2])
    assert result["pooled"]["stardist_other_outlines"]["aji"] == 0.0
    assert "2 of 3 tiles" in capsys.readouterr().out

    # fold 2 predicts half of its nuclei: the pooled AJI sums intersections and unions over tiles
    lbl = tiles[2][1]
    half = np.where(np.isin(lbl, np.unique(lbl)[1::2]), lbl, 0)
    _fold(out, 2, "t2", half, np.zeros_like(lbl))
    assert monuseg_cv.main(["--pack", str(pack), "--out", str(out), "--aggregate-only", "--no-weightfree"]) == 0
    pooled = json.loads((out / "cv.json").read_text())["pooled"]["stardist"]
    fg = [int((t[1] > 0).sum()) for t in tiles]
    assert pooled["aji"] == pytest.approx((fg[0] + fg[1] + int((half > 0).sum())) / sum(fg))


def test_no_fold_results_is_an_error(tmp_path):
    img, lbl = synthetic_nuclei((64, 64), seed=0)
    pack = tmp_path / "pack.npz"
    train_monuseg.save_pack(pack, [Sample("t0", img, lbl)])
    assert monuseg_cv.main(["--pack", str(pack), "--out", str(tmp_path / "cv"), "--aggregate-only",
                            "--no-weightfree"]) == 1
