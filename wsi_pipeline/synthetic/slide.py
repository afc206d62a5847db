"""``make_synthetic_slide``: an Aperio-like SVS of a skin excision plus its ground truth."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from wsi_pipeline.synthetic.parallel import PrefetchRenderer
from wsi_pipeline.synthetic.phi import PHI_PROPERTIES, make_label, make_macro
from wsi_pipeline.synthetic.render import TileRenderer
from wsi_pipeline.synthetic.scene import Scene, build_scene
from wsi_pipeline.synthetic.svs import write_svs
from wsi_pipeline.synthetic.truth import write_truth


@dataclass(frozen=True)
class SyntheticSlide:
    """A written synthetic slide: ``path`` (.svs), ``truth_dir`` (GeoJSON), size and mpp."""

    path: Path
    truth_dir: Path
    width: int
    height: int
    mpp: float
    seed: int = 0

    def scene(self) -> Scene:
        """Rebuild the scene (geometry, nuclei) from ``truth_dir/scene.json``: same seed and
        options give the very scene that was painted."""
        info = json.loads((self.truth_dir / "scene.json").read_text())
        opts = {k: (tuple(map(tuple, v)) if k == "inks" else v) for k, v in info["scene_options"].items()}
        return build_scene(info["width"], info["height"], mpp=info["mpp"], seed=info["seed"], **opts)


def make_synthetic_slide(
    out_dir: str | Path,
    *,
    width: int = 8192,
    height: int = 6144,
    mpp: float = 0.25,
    seed: int = 0,
    tile: int = 256,
    name: str = "synthetic",
    quality: int = 85,
    bigtiff: bool | None = None,
    progress=None,
    workers: int = 1,
    **options,
) -> SyntheticSlide:
    """Write ``out_dir/<name>.svs`` and ``out_dir/<name>_truth/``; same arguments, same bytes.

    ``options`` go to :func:`wsi_pipeline.synthetic.scene.build_scene`: ``pieces`` (1|2),
    ``tumor`` (bool), ``tumor_radius_um``, ``tumor_center`` (level-0 px),
    ``tumor_ink_distance_um`` (exact distance tumour -> ``tumor_ink_color`` ink band; 0 =
    touching), ``inks`` (``((colour, start_deg, end_deg), ...)``), ``ink_depth_um``,
    ``marker`` (bool), ``marker_color``, ``n_mitoses``, ``nuclei_density``, ``epidermis_um``,
    ``inflammation`` (bool, default True: a lymphoid aggregate), ``inflammation_um``,
    ``lesion`` ("nest" | "melanoma") and for a melanoma ``breslow_um``, ``ulceration_um``
    (0 = none) and ``til`` ("absent" | "non-brisk" | "brisk").
    ``progress(n)`` is called after each level-0 tile. ``workers > 1`` paints tiles in that
    many processes (same bytes).
    """
    if width < 64 or height < 64:
        raise ValueError("synthetic slide must be at least 64 x 64 pixels")
    if mpp <= 0:
        raise ValueError("mpp must be positive")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    scene = build_scene(width, height, mpp=mpp, seed=seed, **options)
    truth_dir = out_dir / f"{name}_truth"
    tmp_truth = out_dir / f".{name}_truth.tmp"
    if tmp_truth.exists():
        shutil.rmtree(tmp_truth)
    write_truth(scene, tmp_truth, options={"tile": tile, "quality": quality}, scene_options=options)
    path = out_dir / f"{name}.svs"
    try:
        painter = PrefetchRenderer(scene, tile=tile, workers=workers) if workers > 1 else TileRenderer(scene)
        try:
            _write(path, painter.render, width, height, mpp, tile, quality, bigtiff, progress)
        finally:
            if workers > 1:
                painter.close()
    except BaseException:
        shutil.rmtree(tmp_truth, ignore_errors=True)
        raise
    if truth_dir.exists():
        shutil.rmtree(truth_dir)
    tmp_truth.rename(truth_dir)
    return SyntheticSlide(
        path=path, truth_dir=truth_dir, width=int(width), height=int(height), mpp=float(mpp), seed=int(seed)
    )


def _write(path, render, width, height, mpp, tile, quality, bigtiff, progress) -> None:
    write_svs(
        path,
        render,
        width=width,
        height=height,
        mpp=mpp,
        tile=tile,
        quality=quality,
        properties=dict(PHI_PROPERTIES),
        label=make_label(),
        macro=lambda thumb: make_macro(thumb, make_label()),
        bigtiff=bigtiff,
        progress=progress,
    )


def render_region(scene: Scene, x: int, y: int, w: int, h: int):
    """Level-0 pixels ``(h, w, 3)`` uint8 of ``scene`` without writing a file."""
    return TileRenderer(scene).render(x, y, w, h)
