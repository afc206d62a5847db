"""StarDist nuclei as a :class:`detectors.base.Detector`.

Tiles are normalised with fixed per-slide percentiles when given
(:meth:`StarDistDetector.with_percentiles`), else each tile with its own 1/99.8
percentiles (stardist's behaviour), except that a (nearly) flat tile's range is widened
downwards to :data:`MIN_TILE_RANGE` grey levels: stardist maps a flat tile (blank glass)
to all zeros, i.e. "as dark as the darkest nucleus", and a model then finds nuclei
everywhere; widened, blank glass maps to 1 (background) as it does with slide percentiles. Polygons are returned in (x, y) tile pixels, clipped to
the tile, class ``Nucleus``, score = StarDist object probability.

With an :class:`~detectors.nuclei.outlines.OutlineRefinement` (a trained model folder
names one when it helped on its validation images) the predicted polygons are drawn into
a label image at the tile's pixels and each outline is redrawn on the hematoxylin map,
then made a star polygon again (:func:`detectors.nuclei.outlines.refine_instances`):
the network's 32 rays on a 2-px grid are coarse next to the membrane a pathologist traces.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import shapely
import torch

from detectors.base import Detector, DetectorSpec, Instances
from detectors.device import inference_context
from detectors.nuclei.measurements import measure
from detectors.nuclei.outlines import OutlineRefinement, refine_instances
from detectors.stardist.config import StarDistConfig, Thresholds, read_model_folder
from detectors.stardist.keras_h5 import load_keras_h5
from detectors.stardist.normalize import Percentiles, compute_percentiles, normalize_numpy
from detectors.stardist.predict import forward, instances_from_prob_dist, instances_on_device, pad_to_multiple
from detectors.stardist.unet import StarDistNet
from tiling.errors import InputError

NUCLEUS = "Nucleus"
MIN_TILE_RANGE = 8.0  # grey levels; H&E nuclei differ from their background by far more


def widen_flat(pct: Percentiles, *, min_range: float = MIN_TILE_RANGE) -> Percentiles:
    """Lower ``pct.low`` where ``high - low < min_range`` (a flat tile); others unchanged."""
    low = tuple(min(lo, hi - min_range) for lo, hi in zip(pct.low, pct.high))
    return pct if low == pct.low else Percentiles(low, pct.high)


def coords_to_polygons(coord: np.ndarray, *, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """stardist ``coord`` (N, 2, R) as (y, x) -> (shapely polygons (x, y) clipped to the tile, kept index).

    stardist puts the centre of pixel (r, c) at (r, c); polygons here use the pixel-edge
    convention of GeoJSON/QuPath (pixel (r, c) covers [c, c + 1] x [r, r + 1]), so every
    vertex moves by half a pixel. Objects whose clipped polygon is empty are dropped (their
    index is not in the result).
    """
    if len(coord) == 0:
        return np.empty(0, object), np.empty(0, int)
    rings = np.stack([coord[:, 1], coord[:, 0]], axis=-1) + 0.5  # (N, R, 2) as (x, y)
    polys = shapely.polygons(rings)
    polys = shapely.make_valid(polys)
    polys = shapely.intersection(polys, shapely.box(0, 0, width, height))
    out, keep = [], []
    for i, g in enumerate(polys):
        if g.geom_type != "Polygon":
            parts = [p for p in getattr(g, "geoms", []) if p.geom_type == "Polygon"]
            g = max(parts, key=lambda p: p.area) if parts else None
        if g is not None and not g.is_empty and g.area > 0:
            out.append(g)
            keep.append(i)
    return np.array(out + [None], dtype=object)[:-1], np.asarray(keep, int)


class StarDistDetector(Detector):
    """Torch StarDist2D nuclei detector.

    net : a :class:`StarDistNet` with weights loaded.
    thresholds : prob / nms thresholds.
    mpp : resolution the model expects (µm/px); tile_size must be a multiple of
        ``net.config.div_by`` (else tiles are reflect-padded like stardist does).
    percentiles : fixed normalisation (per slide); None = per tile.
    refinement : redraw outlines on the image (see the module docstring); None = as predicted.
    tta : average the network's outputs over the tile's 8 mirror images and rotations
        (:func:`~detectors.stardist.predict.predict_dihedral`; 8x the network's work).
    nms : "stardist" (its C code, on the CPU), "torch" (:mod:`detectors.stardist.nms`, on the
        network's device: the candidates never leave a GPU) or "auto" (default): torch on
        CUDA, stardist elsewhere.
    """

    def __init__(
        self,
        net: StarDistNet,
        thresholds: Thresholds,
        *,
        mpp: float = 0.25,
        tile_size: int = 512,
        halo: int = 80,
        max_object_size: int = 80,
        percentiles: Percentiles | None = None,
        refinement: OutlineRefinement | None = None,
        tta: bool = False,
        nms: str = "auto",
        name: str = "stardist",
        source: str = "",
        device: str | torch.device | None = "auto",
    ) -> None:
        super().__init__(device=device)
        self.net = net.to(self.device).eval()
        self.thresholds = thresholds
        self.percentiles = percentiles
        self.refinement = refinement
        self.tta = bool(tta)
        if nms not in ("auto", "stardist", "torch"):
            raise ValueError(f"nms must be auto, stardist or torch, got {nms!r}")
        self.nms = ("torch" if self.device.type == "cuda" else "stardist") if nms == "auto" else nms
        self.source = source
        self.spec = DetectorSpec(name=name, mpp=float(mpp), tile_size=int(tile_size), halo=int(halo),
                                 max_object_size=int(max_object_size), classes=(NUCLEUS,))

    @property
    def config(self) -> StarDistConfig:
        return self.net.config

    @property
    def description(self) -> str:
        norm = "per-slide percentiles" if self.percentiles else "per-tile percentiles"
        src = f" from {self.source}" if self.source else ""
        ref = ", outlines redrawn on hematoxylin" if self.refinement else ""
        tta = ", mean of 8 mirror images" if self.tta else ""
        tta += ", NMS in torch" if self.nms == "torch" else ""
        return (f"StarDist2D (torch){src}: {self.config.n_rays} rays, grid {self.config.grid}, "
                f"prob>{self.thresholds.prob:.3f}, nms {self.thresholds.nms:.2f}, {norm}{ref}{tta}, "
                f"{self.spec.mpp} µm/px")

    def _with(self, **attrs) -> "StarDistDetector":
        """A copy sharing the network, with ``attrs`` set."""
        other = object.__new__(StarDistDetector)
        other.__dict__.update(self.__dict__, **attrs)
        return other

    def with_percentiles(self, percentiles: Percentiles | None) -> "StarDistDetector":
        """Same detector (shared network) normalising every tile with ``percentiles``."""
        return self._with(percentiles=percentiles)

    def with_refinement(self, refinement: OutlineRefinement | None) -> "StarDistDetector":
        """Same detector (shared network) with outline redrawing switched on (or off: None)."""
        return self._with(refinement=refinement)

    def with_tta(self, tta: bool) -> "StarDistDetector":
        """Same detector (shared network) with test-time augmentation on or off."""
        return self._with(tta=bool(tta))

    def with_nms(self, nms: str) -> "StarDistDetector":
        """Same detector (shared network) with its NMS run by ``nms``: "stardist" or "torch"."""
        if nms not in ("stardist", "torch"):
            raise ValueError(f"nms must be stardist or torch, got {nms!r}")
        return self._with(nms=nms)

    def with_spec(self, **changes) -> "StarDistDetector":
        """Same detector with some :class:`DetectorSpec` fields changed (tile_size, halo, mpp...)."""
        return self._with(spec=dataclasses.replace(self.spec, **changes))

    def _normalise(self, tiles: np.ndarray) -> np.ndarray:
        out = np.empty(tiles.shape, np.float32)
        for i, tile in enumerate(tiles):
            pct = self.percentiles or widen_flat(compute_percentiles(tile))
            out[i] = normalize_numpy(tile, pct)
        return out

    def _predict_batch(self, tiles: np.ndarray) -> list[Instances]:
        h, w = tiles.shape[1:3]
        x = np.stack([pad_to_multiple(t, self.config.div_by) for t in self._normalise(tiles)]).transpose(0, 3, 1, 2)
        xt = torch.from_numpy(np.ascontiguousarray(x)).to(self.device)
        with inference_context(self.device):
            prob, dist = forward(self.net, xt, tta=self.tta)
        if self.nms == "torch":
            found = (instances_on_device(p, d, grid=self.config.grid, shape=(h, w), thresholds=self.thresholds,
                                         return_labels=self.refinement is not None)
                     for p, d in zip(prob[:, 0].float(), dist.float()))
        else:
            found = (instances_from_prob_dist(p, d, grid=self.config.grid, shape=(h, w), thresholds=self.thresholds,
                                              return_labels=self.refinement is not None)
                     for p, d in zip(prob[:, 0].float().cpu().numpy(),
                                     dist.float().permute(0, 2, 3, 1).cpu().numpy()))
        results = []
        for tile, (labels, det) in zip(tiles, found):
            # with redrawing, start from stardist's own label image (object i of det is label i + 1)
            if self.refinement is None:
                polys, keep = coords_to_polygons(det["coord"], width=w, height=h)
            else:
                polys, ids = refine_instances(labels, tile, mpp=self.spec.mpp, refinement=self.refinement,
                                              max_radius=self.spec.max_object_size / 2, device=self.device)
                keep = ids - 1
            prob = det["prob"][keep]
            # the same per-nucleus measurements as the weight-free detector (cell typing, mitosis
            # candidates and QuPath's measurement list read them)
            meas = measure(polys, tile, self.spec.mpp, score=prob)
            results.append(Instances(polys, prob, np.full(len(keep), NUCLEUS, object), meas))
        return results


def load_stardist_net(path: str | Path) -> tuple[StarDistNet, Thresholds, dict]:
    """Network (weights loaded, eval mode, CPU), thresholds and the config's extra keys."""
    config, thresholds, weights = read_model_folder(path)
    net = StarDistNet(config)
    if weights.suffix == ".pt":
        try:
            net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        except (RuntimeError, OSError) as exc:
            raise InputError(weights, f"cannot load torch weights: {exc}") from None
    else:
        load_keras_h5(net, weights)
    return net.eval(), thresholds, config.extra


def load_stardist_model(path: str | Path, *, device: str | torch.device | None = "auto", mpp: float | None = None,
                        **spec) -> StarDistDetector:
    """A :class:`StarDistDetector` from a stardist model folder.

    The folder holds ``config.json``, ``thresholds.json`` and ``weights_best.h5`` (Keras
    legacy HDF5, as in stardist's published zips and as ``wsi-pipeline train nuclei``
    writes). ``mpp`` defaults to the folder's ``config.json`` key ``"wsi_pipeline"."mpp"``
    when present, else 0.25 µm/px (40x, the resolution 2D_versatile_he was trained at).
    The key ``"wsi_pipeline"."outline_refinement"`` (an :class:`OutlineRefinement` as a dict),
    when present, switches on the outline redrawing; ``"wsi_pipeline"."tta": true`` the mean
    over 8 mirror images.
    Other keyword arguments (tile_size, halo, max_object_size, percentiles) go to the detector.
    The halo defaults to the network's receptive radius (:meth:`StarDistNet.receptive_radius`,
    rounded up to 16 px, at least 80) so that tiled runs equal untiled ones, and the tile to 8
    halos (at least 512) so that the halo costs under 2x the core's work.
    """
    net, thresholds, extra = load_stardist_net(path)
    if "halo" not in spec:
        spec["halo"] = max(80, -(-net.receptive_radius() // 16) * 16)
    spec.setdefault("tile_size", max(512, 8 * spec["halo"]))
    meta = extra.get("wsi_pipeline", {}) if isinstance(extra.get("wsi_pipeline"), dict) else {}
    mpp = float(mpp if mpp is not None else meta.get("mpp", 0.25))
    refinement = meta.get("outline_refinement")
    refinement = OutlineRefinement.from_dict(refinement) if isinstance(refinement, dict) else None
    return StarDistDetector(net, thresholds, mpp=mpp, name=meta.get("name", "stardist"), source=str(path),
                            refinement=refinement, tta=meta.get("tta") is True, device=device, **spec)
