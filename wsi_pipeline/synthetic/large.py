"""A synthetic skin excision of a requested tissue area, made once and cached (benchmarks).

>>> from wsi_pipeline.synthetic.large import cached_excision
>>> ex = cached_excision("~/.cache/wsi-pipeline/bench", tissue_mm2=100)
>>> ex.path, ex.tissue_mm2, ex.created     # .../excision.svs, ~100.x, True the first time

The slide is the project's painter (:func:`make_synthetic_slide`) at full size: one
elongated excision ellipse (length : width = ``aspect``, 5 by default, e.g. about 25 x 5 mm
for 1 cm²), epidermis along its upper arc, a tumour nest, inks, glass around it. Its size
is chosen so that the painted tissue polygon has at least ``tissue_mm2`` of area: the
ellipse's wobble is drawn first from the seed, so its share of the frame does not depend
on the frame size and is measured once on a small frame.

The cache folder ``<cache>/excision-<mm2>mm2-seed<seed>-mpp<mpp>-v<RECIPE_VERSION>/`` holds
``excision.svs``, ``excision_truth/`` and ``meta.json``; it is built under a temporary name
and renamed into place when complete, so an interrupted build is never mistaken for a
cached slide. Bump :data:`RECIPE_VERSION` when the recipe changes, so old caches rebuild.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

RECIPE_VERSION = 1
DEFAULT_ASPECT = 5.0
_PROBE_HEIGHT = 512  # frame height of the small scene that measures the tissue share


@dataclass(frozen=True)
class Excision:
    """A cached synthetic excision: the slide file and what it was made to be."""

    path: Path
    folder: Path
    width: int
    height: int
    mpp: float
    seed: int
    tissue_mm2: float  # area of the painted tissue polygon (ground truth)
    seconds: float  # time it took to make (when it was made)
    file_bytes: int
    created: bool  # made by this call (False: found in the cache)


def _layout_aspect(aspect: float) -> float:
    """Frame width / height that gives a tissue ellipse ``aspect`` times longer than wide
    (the painter's ellipse spans 0.80 of the frame width and 0.68 of its height)."""
    return aspect * 0.68 / 0.80


def tissue_share(*, seed: int = 0, aspect: float = DEFAULT_ASPECT) -> float:
    """Share of the frame covered by the tissue polygon of ``seed``'s excision."""
    from wsi_pipeline.synthetic.scene import build_scene

    h = _PROBE_HEIGHT
    w = int(round(h * _layout_aspect(aspect)))
    scene = build_scene(w, h, mpp=1.0, seed=seed, tumor=False, vessels=False, inflammation=False, marker=False,
                        rete=False, nuclei_density=0.0)
    return float(scene.tissue.area) / (w * h)


def excision_size(tissue_mm2: float, *, mpp: float = 0.25, seed: int = 0,
                  aspect: float = DEFAULT_ASPECT) -> tuple[int, int]:
    """``(width, height)`` level-0 pixels of a frame whose excision has >= ``tissue_mm2``."""
    if not tissue_mm2 > 0:
        raise ValueError(f"tissue area must be positive, got {tissue_mm2} mm²")
    if not mpp > 0:
        raise ValueError(f"mpp must be positive, got {mpp}")
    if not aspect >= 1:
        raise ValueError(f"aspect must be >= 1, got {aspect}")
    frame_px = tissue_mm2 * 1e6 / (mpp * mpp) / tissue_share(seed=seed, aspect=aspect)
    ratio = _layout_aspect(aspect)
    height = math.sqrt(frame_px / ratio) * 1.001  # a hair over, against rounding
    return max(64, math.ceil(height * ratio)), max(64, math.ceil(height))


def cache_folder(cache: str | Path, *, tissue_mm2: float, seed: int = 0, mpp: float = 0.25) -> Path:
    return Path(cache).expanduser() / f"excision-{tissue_mm2:g}mm2-seed{seed}-mpp{mpp:g}-v{RECIPE_VERSION}"


def cached_excision(cache: str | Path, *, tissue_mm2: float = 100.0, seed: int = 0, mpp: float = 0.25,
                    aspect: float = DEFAULT_ASPECT, progress=None) -> Excision:
    """The excision slide with >= ``tissue_mm2`` of tissue, from ``cache`` or made there now.

    ``progress(n)`` is called after each painted level-0 tile while making it (one process).
    """
    folder = cache_folder(cache, tissue_mm2=tissue_mm2, seed=seed, mpp=mpp)
    meta_path = folder / "meta.json"
    if meta_path.is_file() and (folder / "excision.svs").is_file():
        return _from_meta(folder, json.loads(meta_path.read_text()), created=False)
    from wsi_pipeline.synthetic import make_synthetic_slide

    width, height = excision_size(tissue_mm2, mpp=mpp, seed=seed, aspect=aspect)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(f".{folder.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        t0 = time.perf_counter()
        slide = make_synthetic_slide(tmp, width=width, height=height, mpp=mpp, seed=seed, name="excision",
                                     progress=progress)
        seconds = time.perf_counter() - t0
        truth = json.loads((slide.truth_dir / "tissue.geojson").read_text())
        area_px = _geojson_area(truth)
        meta = {
            "recipe_version": RECIPE_VERSION, "requested_tissue_mm2": tissue_mm2, "aspect": aspect,
            "width": width, "height": height, "mpp": mpp, "seed": seed,
            "tissue_mm2": round(area_px * mpp * mpp / 1e6, 4), "seconds": round(seconds, 1),
            "file_bytes": slide.path.stat().st_size,
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
        if folder.exists():  # another process finished first: keep theirs
            shutil.rmtree(tmp)
            return _from_meta(folder, json.loads(meta_path.read_text()), created=False)
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return _from_meta(folder, meta, created=True)


def _geojson_area(collection: dict) -> float:
    import shapely
    from shapely.geometry import shape

    feats = collection["features"] if isinstance(collection, dict) else collection
    return float(shapely.union_all([shape(f["geometry"]) for f in feats]).area)


def _from_meta(folder: Path, meta: dict, *, created: bool) -> Excision:
    return Excision(
        path=folder / "excision.svs", folder=folder, width=int(meta["width"]), height=int(meta["height"]),
        mpp=float(meta["mpp"]), seed=int(meta["seed"]), tissue_mm2=float(meta["tissue_mm2"]),
        seconds=float(meta["seconds"]), file_bytes=int(meta["file_bytes"]), created=created,
    )
