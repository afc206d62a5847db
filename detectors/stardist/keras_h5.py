"""Read and write StarDist weights in Keras' legacy HDF5 layout (``weights_best.h5``).

The layout (what ``keras_model.save_weights('x.h5')`` writes with tf-keras / Keras 2):
the root (or its ``model_weights`` group for whole-model files) has an attribute
``layer_names``; each layer is a group whose attribute ``weight_names`` lists datasets such
as ``down_level_0_no_0/kernel:0`` (shape (kh, kw, c_in, c_out)) and ``.../bias:0``.

Named layers (``down_level_*``, ``middle_*``, ``up_level_*``, ``features``, ``prob``,
``dist``) are matched by name; the unnamed grid-stem convolutions (``conv2d``,
``conv2d_1``, ...) by their order in ``layer_names``, which is how Keras itself loads.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import torch

from detectors.stardist.unet import StarDistNet
from tiling.errors import InputError


def _decode(values) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values]


def read_keras_h5(path: str | Path) -> list[tuple[str, list[np.ndarray]]]:
    """(layer name, [kernel, bias]) for every layer that has weights, in file order."""
    path = Path(path)
    try:
        with h5py.File(path, "r") as f:
            root = f["model_weights"] if "model_weights" in f else f
            if "layer_names" not in root.attrs:
                raise InputError(path, "not a Keras legacy HDF5 weights file (no layer_names attribute; "
                                       "Keras 3 '.weights.h5' files are not supported)")
            layers = []
            for name in _decode(root.attrs["layer_names"]):
                group = root[name]
                weight_names = _decode(group.attrs.get("weight_names", []))
                if weight_names:
                    layers.append((name, [np.asarray(group[w]) for w in weight_names]))
            return layers
    except OSError as exc:
        raise InputError(path, f"cannot read HDF5 weights: {exc}") from None


def load_keras_h5(net: StarDistNet, path: str | Path) -> StarDistNet:
    """Copy the weights of a Keras HDF5 file into ``net`` (in place; returns ``net``)."""
    path = Path(path)
    file_layers = read_keras_h5(path)
    targets = net.keras_layers()
    named = {name: conv for name, conv in targets if name is not None}
    stem = [conv for name, conv in targets if name is None]
    unnamed = [(n, w) for n, w in file_layers if n not in named]
    missing = sorted(set(named) - {n for n, _ in file_layers})
    if missing or len(unnamed) != len(stem):
        raise InputError(path, f"weights do not match the config: missing layers {missing[:5]}, "
                               f"{len(unnamed)} unnamed conv layers for {len(stem)} expected")
    by_name = dict(file_layers)
    pairs = [(n, named[n], by_name[n]) for n in named] + [(n, c, w) for (n, w), c in zip(unnamed, stem)]
    with torch.no_grad():
        for name, conv, weights in pairs:
            if len(weights) != 2:
                raise InputError(path, f"layer {name}: expected kernel and bias, found {len(weights)} arrays")
            kernel = torch.from_numpy(np.ascontiguousarray(weights[0].transpose(3, 2, 0, 1)))
            bias = torch.from_numpy(np.asarray(weights[1]))
            if kernel.shape != conv.weight.shape or bias.shape != conv.bias.shape:
                raise InputError(path, f"layer {name}: shape {tuple(weights[0].shape)} does not match the config "
                                       f"(expected {tuple(conv.weight.permute(2, 3, 1, 0).shape)})")
            conv.weight.copy_(kernel.to(conv.weight.dtype))
            conv.bias.copy_(bias.to(conv.bias.dtype))
    return net


def save_keras_h5(net: StarDistNet, path: str | Path) -> None:
    """Write ``net``'s weights in the legacy layout (readable by stardist and by us).

    Written to ``path`` via a temporary name, so a crash never leaves a half file.
    """
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    names: list[str] = []
    with h5py.File(tmp, "w") as f:
        f.attrs["backend"] = b"tensorflow"
        f.attrs["keras_version"] = b"2.15.0"
        stem_i = 0
        for name, conv in net.keras_layers():
            if name is None:
                name = "conv2d" if stem_i == 0 else f"conv2d_{stem_i}"
                stem_i += 1
            names.append(name)
            group = f.create_group(name)
            kernel = conv.weight.detach().cpu().numpy().transpose(2, 3, 1, 0)
            bias = conv.bias.detach().cpu().numpy()
            group.attrs["weight_names"] = [f"{name}/kernel:0".encode(), f"{name}/bias:0".encode()]
            group.create_dataset(f"{name}/kernel:0", data=kernel.astype(np.float32))
            group.create_dataset(f"{name}/bias:0", data=bias.astype(np.float32))
        f.attrs["layer_names"] = [n.encode() for n in names]
    tmp.replace(path)
