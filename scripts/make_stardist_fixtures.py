"""Build the StarDist reference fixtures in tests/fixtures/stardist/ with stardist + TensorFlow.

Run it with a side environment that has tensorflow, tf-keras, stardist and csbdeep (weights
must be written in Keras' legacy HDF5 layout, as the published model zips have them)::

    python3 -m venv .tfenv
    .tfenv/bin/pip install tensorflow-cpu tf-keras stardist csbdeep
    TF_USE_LEGACY_KERAS=1 .tfenv/bin/python scripts/make_stardist_fixtures.py

For each configuration (``versatile_he``: the architecture of stardist's published
``2D_versatile_he``; ``small``: a shallow one) it builds a StarDist2D with seeded random
weights, writes a model folder (config.json, thresholds.json, weights_best.h5) and
``reference.npz`` with: the uint8 input ``image``, the normalised input ``x``, stardist's
``prob`` / ``dist`` for ``x`` (``model.predict``), and ``model.predict_instances`` results
(``labels``, ``points``, ``scores``) with the folder's thresholds.

``--trained`` (run with the project's own venv, no TensorFlow) instead trains the ``small``
preset with ``wsi-pipeline train nuclei`` on synthetic H&E-like fields and writes
``tests/fixtures/stardist/trained_synthetic`` (the detector conformance tests use it: a model
that really finds nuclei in a sample tile and nothing on blank glass)::

    .venv/bin/python scripts/make_stardist_fixtures.py --trained
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "stardist"

CONFIGS = {
    # 2D_versatile_he: Config2D defaults (U-Net depth 3, 32 base filters, 3x3 kernels,
    # 2 convs per depth, 2x2 pooling, 128-filter feature layer) + these:
    "versatile_he": dict(n_rays=32, grid=(2, 2), n_channel_in=3, shape=(136, 120)),
    "small": dict(n_rays=16, grid=(2, 2), n_channel_in=3, unet_n_depth=2, unet_n_filter_base=8,
                  net_conv_after_unet=16, shape=(256, 256)),
}


def synthetic_he(shape: tuple[int, int], seed: int) -> np.ndarray:
    """(H, W, 3) uint8 H&E-like field: pink stroma with dark purple elliptical nuclei."""
    rng = np.random.default_rng(seed)
    h, w = shape
    img = np.empty((h, w, 3), np.float32)
    img[:] = (235, 190, 215)
    img += rng.normal(0, 6, img.shape)
    yy, xx = np.mgrid[:h, :w]
    for _ in range(h * w // 600):
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        ry, rx = rng.uniform(4, 9), rng.uniform(4, 9)
        inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
        img[inside] = np.array((90, 60, 140)) + rng.normal(0, 12, (inside.sum(), 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def seeded_weights(keras_model, seed: int) -> None:
    """Random weights from a seeded numpy generator (He-scaled, so activations neither
    vanish nor explode through the depth), with the dist bias positive so polygons have a
    plausible size."""
    rng = np.random.default_rng(seed)
    for layer in keras_model.layers:
        weights = layer.get_weights()
        if not weights:
            continue
        kernel, bias = weights
        fan_in = np.prod(kernel.shape[:-1])
        kernel = rng.normal(0, np.sqrt(2.0 / fan_in), kernel.shape).astype(np.float32)
        bias = rng.normal(0, 0.05, bias.shape).astype(np.float32)
        if layer.name == "dist":
            kernel *= 0.5
            bias += 6.0
        if layer.name == "prob":
            kernel *= 3.0
        layer.set_weights([kernel, bias])


def build(name: str, spec: dict, seed: int) -> None:
    from csbdeep.utils import normalize
    from stardist.models import Config2D, StarDist2D

    spec = dict(spec)
    shape = spec.pop("shape")
    folder = OUT / name
    with tempfile.TemporaryDirectory() as tmp:
        config = Config2D(**spec)
        model = StarDist2D(config, name=name, basedir=tmp)
        seeded_weights(model.keras_model, seed)
        image = synthetic_he(shape, seed)
        x = normalize(image, 1, 99.8, axis=(0, 1, 2))
        prob, dist = model.predict(x)
        # a threshold that keeps a few % of grid cells, so NMS has real work to do
        prob_thresh = float(np.quantile(prob, 0.9))
        thresholds = {"prob": prob_thresh, "nms": 0.3}
        model.thresholds = thresholds
        labels, details = model.predict_instances(x)
        model.keras_model.save_weights(str(Path(tmp) / name / "weights_best.h5"))
        (Path(tmp) / name / "thresholds.json").write_text(json.dumps(thresholds))
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        for f in ("config.json", "thresholds.json", "weights_best.h5"):
            shutil.copy(Path(tmp) / name / f, folder / f)
    np.savez_compressed(
        folder / "reference.npz", image=image, x=x.astype(np.float32), prob=prob.astype(np.float32),
        dist=dist.astype(np.float32), labels=labels.astype(np.int32), points=details["points"],
        scores=details["prob"].astype(np.float32),
    )
    print(f"{name}: image {shape}, prob {prob.shape}, {labels.max()} instances, thresholds {thresholds}")


def build_trained(seed: int = 0) -> None:
    """Train the small preset on synthetic nuclei (a few CPU minutes) into trained_synthetic/."""
    import tifffile

    from wsi_pipeline.cli import main as cli
    from wsi_pipeline.training.synthetic import synthetic_nuclei

    with tempfile.TemporaryDirectory() as tmp:
        images, labels = Path(tmp) / "images", Path(tmp) / "labels"
        images.mkdir()
        labels.mkdir()
        for i in range(8):
            img, lbl = synthetic_nuclei((256, 256), seed=seed + i)
            tifffile.imwrite(images / f"s{i}.tif", img)
            tifffile.imwrite(labels / f"s{i}.tif", lbl)
        out = OUT / "trained_synthetic"
        rc = cli(["train", "nuclei", "--images", str(images), "--labels", str(labels), "--mpp", "0.5",
                  "--out", str(out), "--preset", "small", "--epochs", "12", "--steps-per-epoch", "20",
                  "--patch-size", "128", "--val", "s7", "--device", "cpu", "--seed", str(seed)])
        if rc:
            raise SystemExit(rc)


def main() -> int:
    if "--trained" in sys.argv[1:]:
        build_trained()
        return 0
    try:
        import stardist.models  # noqa: F401
    except ImportError as exc:
        print(f"needs stardist with TensorFlow (see the module docstring): {exc}", file=sys.stderr)
        return 1
    import tensorflow as tf

    tf.random.set_seed(0)
    for i, (name, spec) in enumerate(CONFIGS.items()):
        build(name, spec, seed=i)
    return 0


if __name__ == "__main__":
    sys.exit(main())
