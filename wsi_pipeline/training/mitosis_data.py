"""Training samples for the mitosis classifier: patches, labels, groups (for splits).

Sources (all resampled to the model's 0.25 µm/px when given at another ``mpp``):

* **crop folders** (one sub-folder per class, e.g. MIDOG's ``normal/`` and ``atypical/``):
  each image is centred on a mitotic figure. A CSV in the folder with ``uid`` and ``slide``
  columns (as ``AMI-BR-MIDOG21.csv``) gives each crop's slide (file ``<prefix>_<uid>.png``)
  so splits go by slide. Nuclei found in the crop away from its centre are taken as
  in-domain imposters (same slide, same stain).
* **negative fields**: images with no mitoses marked; every candidate (weight-free
  detector + :func:`detectors.mitosis.select_candidates`, plus the dark hematoxylin blobs of
  :func:`detectors.mitosis.candidates.blob_candidates` as the detector merges them:
  :func:`candidate_centres`) is an imposter. Small images
  (both sides <= 160 px) are taken as ready-made negative crops instead.
* **annotated images**: images (or slides) with GeoJSON points/polygons classified
  ``Mitosis`` (-> class ``normal``) or ``Atypical mitosis`` (-> ``atypical``); candidate
  nuclei farther than ``2 x radius`` from every mark are imposters.

Patches are ``crop_size + 2 * margin`` px square, centred on the object, so training can
shift, rotate and rescale the crop inside them.
"""

from __future__ import annotations

import csv
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from tiling.errors import InputError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg")
GEOJSON_SUFFIXES = (".geojson", ".json", ".geojson.gz")
IMPOSTER = "imposter"
MODEL_MPP = 0.25


@dataclass
class SampleSet:
    """patches (N, P, P, 3) uint8; label (N,) class name; group (N,) slide/image id;
    source (N,) 'crops' | 'crop-neighbours' | 'fields' | 'annotated'.
    field_area_mm2 : area of each negative field image (group -> mm²), for FP per mm²."""

    patches: np.ndarray
    label: np.ndarray
    group: np.ndarray
    source: np.ndarray
    field_area_mm2: dict[str, float] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.label)

    @staticmethod
    def empty(p: int) -> "SampleSet":
        return SampleSet(np.empty((0, p, p, 3), np.uint8), np.empty(0, object), np.empty(0, object), np.empty(0, object))

    def subset(self, idx) -> "SampleSet":
        return SampleSet(self.patches[idx], self.label[idx], self.group[idx], self.source[idx], dict(self.field_area_mm2))

    def save(self, path: str | Path) -> None:
        """Write an ``.npz`` pack (atomically) that :meth:`load` reads back."""
        import json

        from wsi_pipeline.atomic import atomic_path

        with atomic_path(Path(path)) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, patches=self.patches, label=self.label.astype(str), group=self.group.astype(str),
                         source=self.source.astype(str), field_area_mm2=json.dumps(self.field_area_mm2))

    @staticmethod
    def load(path: str | Path) -> "SampleSet":
        import json

        with np.load(path) as z:
            return SampleSet(z["patches"], *(z[k].astype(object) for k in ("label", "group", "source")),
                             json.loads(str(z["field_area_mm2"])))

    @staticmethod
    def concatenate(parts: list["SampleSet"], p: int) -> "SampleSet":
        parts = [s for s in parts if len(s)]
        if not parts:
            return SampleSet.empty(p)
        areas: dict[str, float] = {}
        for s in parts:
            areas.update(s.field_area_mm2)
        return SampleSet(*(np.concatenate([getattr(s, f) for s in parts])
                           for f in ("patches", "label", "group", "source")), areas)


def read_rgb(path: Path, *, mpp: float) -> np.ndarray:
    """(H, W, 3) uint8 image resampled from ``mpp`` to :data:`MODEL_MPP`."""
    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            if abs(mpp - MODEL_MPP) > 1e-3:
                f = mpp / MODEL_MPP
                im = im.resize((max(1, round(im.width * f)), max(1, round(im.height * f))), Image.Resampling.BILINEAR)
            return np.array(im)
    except (OSError, ValueError) as exc:
        raise InputError(path, f"cannot read image ({exc})") from None


def patches_at(image: np.ndarray, centres_xy: np.ndarray, size: int, *, inside_only: bool) -> tuple[np.ndarray, np.ndarray]:
    """(M, size, size, 3) patches of ``image`` centred on (N, 2) points and the (M,) indices
    used; ``inside_only`` drops points whose patch leaves the image, else reflection fills."""
    h, w = image.shape[:2]
    half = size // 2
    c = np.round(np.asarray(centres_xy, float).reshape(-1, 2)).astype(int)
    if inside_only:
        ok = (c[:, 0] >= half) & (c[:, 1] >= half) & (c[:, 0] + size - half <= w) & (c[:, 1] + size - half <= h)
        idx = np.flatnonzero(ok)
        return np.stack([image[y - half : y - half + size, x - half : x - half + size] for x, y in c[idx]]) \
            if len(idx) else np.empty((0, size, size, 3), np.uint8), idx
    pad = np.pad(image, ((half, size), (half, size), (0, 0)), mode="reflect")
    c[:, 0], c[:, 1] = np.clip(c[:, 0], 0, w - 1), np.clip(c[:, 1], 0, h - 1)
    out = np.stack([pad[y : y + size, x : x + size] for x, y in c]) if len(c) else np.empty((0, size, size, 3), np.uint8)
    return out, np.arange(len(c))


def candidate_centres(image: np.ndarray, det, *, mask: np.ndarray | None = None, blobs: bool = True,
                      reference: float | None = None) -> np.ndarray:
    """:func:`detectors.mitosis.candidates.candidate_centres` of ``image`` at :data:`MODEL_MPP`
    (candidate nuclei of ``det``, then the dark blobs they do not cover)."""
    from detectors.mitosis.candidates import candidate_centres as centres

    return centres(image, det, mpp=MODEL_MPP, mask=mask, blobs=blobs, reference=reference)


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _slide_of(folder: Path) -> dict[str, str]:
    """uid -> slide from a CSV with ``uid`` and ``slide`` columns in ``folder`` (or {})."""
    for path in sorted(folder.glob("*.csv")):
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh))
        if rows and {"uid", "slide"} <= set(rows[0]):
            return {r["uid"]: r["slide"] for r in rows}
    return {}


def _group(stem: str, slides: dict[str, str]) -> str:
    m = re.search(r"(\d+)$", stem)
    return slides.get(m.group(1), stem) if m else stem


def load_crop_folders(folder: str | Path, *, mpp: float, patch: int, nuclei=None,
                      neighbour_radius_px: float = 30.0, blobs: bool = True,
                      max_outside: float = 0.25) -> SampleSet:
    """Positives from class sub-folders of ``folder``; with ``nuclei`` (a nucleus detector)
    also candidates (:func:`candidate_centres`; darkness judged against the pooled nuclei of
    the class folder, as a slide's) at least ``neighbour_radius_px`` from each crop's centre
    as imposters, where at most ``max_outside`` of the patch side lies outside the crop
    (filled by reflection). These in-domain imposters matter: with imposters from other
    datasets only, a classifier can learn the dataset (scanner, stain) instead of the figure."""
    from detectors.mitosis.candidates import pooled_candidates

    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(folder, "not a folder of class sub-folders (e.g. normal/, atypical/)")
    slides = _slide_of(folder)
    classes = sorted(d for d in folder.iterdir() if d.is_dir() and _images(d))
    if not classes:
        raise InputError(folder, "no class sub-folders with images (expected e.g. normal/*.png)")
    parts = []
    for cls_dir in classes:
        if cls_dir.name == IMPOSTER:
            log.info("crops: %s/ taken as imposters", cls_dir.name)
        imgs = [(p, read_rgb(p, mpp=mpp)) for p in _images(cls_dir)]
        groups = np.array([_group(p.stem, slides) for p, _ in imgs], dtype=object)
        pos = [patches_at(im, [[im.shape[1] / 2, im.shape[0] / 2]], patch, inside_only=False)[0][0] for _, im in imgs]
        parts.append(SampleSet(np.stack(pos), np.full(len(pos), cls_dir.name, object), groups,
                               np.full(len(pos), "crops", object)))
        if nuclei is None or cls_dir.name == IMPOSTER:
            continue
        dets = _detect_all(nuclei, [im for _, im in imgs])
        masks, ref = pooled_candidates(dets)
        for (p, im), g, det, mask in zip(imgs, groups, dets, masks):
            c = candidate_centres(im, det, mask=mask, blobs=blobs, reference=ref)
            if not len(c):
                continue
            c = c[np.hypot(c[:, 0] - im.shape[1] / 2, c[:, 1] - im.shape[0] / 2) >= neighbour_radius_px]
            m = int(patch * max_outside)  # patch px allowed outside the crop (filled by reflection)
            c = c[(c.min(1) >= patch // 2 - m) & (c[:, 0] <= im.shape[1] - patch // 2 + m)
                  & (c[:, 1] <= im.shape[0] - patch // 2 + m)]
            neg, _ = patches_at(im, c, patch, inside_only=False)
            if len(neg):
                parts.append(SampleSet(neg, np.full(len(neg), IMPOSTER, object), np.full(len(neg), g, object),
                                       np.full(len(neg), "crop-neighbours", object)))
    return SampleSet.concatenate(parts, patch)


def _detect_all(nuclei, images: list[np.ndarray], batch: int = 32) -> list:
    """Nuclei of every image; same-shape images go through the detector in batches."""
    out: list = [None] * len(images)
    by_shape: dict[tuple, list[int]] = {}
    for i, im in enumerate(images):
        by_shape.setdefault(im.shape, []).append(i)
    for idx in by_shape.values():
        for k in range(0, len(idx), batch):
            part = idx[k : k + batch]
            for i, det in zip(part, nuclei.predict_batch(np.stack([images[i] for i in part]))):
                out[i] = det
    return out


def load_negative_fields(folder: str | Path, *, mpp: float, patch: int, nuclei, blobs: bool = True) -> SampleSet:
    """Imposters: candidates (:func:`candidate_centres`) of every field image in ``folder``
    (no mitoses marked)."""

    folder = Path(folder)
    files = _images(folder) if folder.is_dir() else []
    if not files:
        raise InputError(folder, "no negative images (.png/.tif/.jpg) in this folder")
    parts = []
    for path in files:
        im = read_rgb(path, mpp=mpp)
        g = f"{folder.name}/{path.stem}"
        if max(im.shape[:2]) <= 160:
            crop, _ = patches_at(im, [[im.shape[1] / 2, im.shape[0] / 2]], patch, inside_only=False)
            parts.append(SampleSet(crop, np.array([IMPOSTER], object), np.array([g], object), np.array(["crops"], object)))
            continue
        det = nuclei.predict(im)
        c = candidate_centres(im, det, blobs=blobs)
        neg, _ = patches_at(im, c, patch, inside_only=False)
        s = SampleSet(neg, np.full(len(neg), IMPOSTER, object), np.full(len(neg), g, object),
                      np.full(len(neg), "fields", object))
        s.field_area_mm2[g] = im.shape[0] * im.shape[1] * (MODEL_MPP * 1e-3) ** 2
        parts.append(s)
    return SampleSet.concatenate(parts, patch)


def _marks(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(M, 2) (x, y) of features classified as mitoses in a GeoJSON file and (M,) classes."""
    from wsi_pipeline.annotations import read_geojson

    xy, cls = [], []
    for f in read_geojson(path).features:
        name = (f.classification or "").strip().lower()
        if "candidate" in name or "mitos" not in name:
            continue
        c = f.geometry.centroid
        xy.append((c.x, c.y))
        cls.append("atypical" if "atypical" in name else "normal")
    return np.array(xy, float).reshape(-1, 2), np.array(cls, object)


def load_annotated_images(images: str | Path, geojson: str | Path, *, mpp: float, patch: int, nuclei,
                          radius_px: float = 30.0, blobs: bool = True) -> SampleSet:
    """Positives at the marked mitoses of each image; the detector's candidates
    (:func:`candidate_centres`: candidate nuclei, and with ``blobs`` the dark blobs they do not
    cover, as a run scores) farther than ``2 * radius_px`` (at :data:`MODEL_MPP`) from every
    mark as imposters. GeoJSON coordinates are in the image's own pixels (at ``mpp``); files
    are matched by stem."""
    images, geojson = Path(images), Path(geojson)
    for d in (images, geojson):
        if not d.is_dir():
            raise InputError(d, "not a folder")
    parts, used = [], 0
    for path in _images(images):
        ann = next((geojson / f"{path.stem}{s}" for s in GEOJSON_SUFFIXES if (geojson / f"{path.stem}{s}").is_file()), None)
        if ann is None:
            continue
        used += 1
        im = read_rgb(path, mpp=mpp)
        xy, cls = _marks(ann)
        xy = xy * (mpp / MODEL_MPP)
        g = f"{images.name}/{path.stem}"
        if len(xy):
            pos, idx = patches_at(im, xy, patch, inside_only=False)
            parts.append(SampleSet(pos, cls[idx], np.full(len(pos), g, object), np.full(len(pos), "annotated", object)))
        c = candidate_centres(im, nuclei.predict(im), blobs=blobs)
        if len(c) and len(xy):
            d = np.hypot(c[:, None, 0] - xy[None, :, 0], c[:, None, 1] - xy[None, :, 1]).min(1)
            c = c[d > 2 * radius_px]
        if len(c):
            neg, _ = patches_at(im, c, patch, inside_only=False)
            parts.append(SampleSet(neg, np.full(len(neg), IMPOSTER, object), np.full(len(neg), g, object),
                                   np.full(len(neg), "annotated", object)))
    if not used:
        raise InputError(geojson, f"no GeoJSON file matches an image of {images} by name")
    return SampleSet.concatenate(parts, patch)


def split_groups(groups: np.ndarray, *, val_fraction: float, test_fraction: float, seed: int) -> dict[str, str]:
    """group -> 'train' | 'val' | 'test', shuffled with ``seed``; with >= 3 groups each split
    gets at least one (when its fraction is positive)."""
    uniq = sorted(set(groups.tolist()))
    rng = np.random.default_rng(seed)
    order = [uniq[i] for i in rng.permutation(len(uniq))]
    n = len(order)
    n_test = int(round(n * test_fraction)) if n >= 3 else 0
    n_val = int(round(n * val_fraction)) if n >= 3 else 0
    if n >= 3:
        n_test = max(n_test, 1 if test_fraction > 0 else 0)
        n_val = max(n_val, 1 if val_fraction > 0 else 0)
    out = {g: "test" for g in order[:n_test]}
    out.update({g: "val" for g in order[n_test : n_test + n_val]})
    out.update({g: "train" for g in order[n_test + n_val :]})
    return out
