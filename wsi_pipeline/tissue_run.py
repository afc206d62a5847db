"""Slide -> tissue result -> GeoJSON features and an overview picture (``wsi-pipeline tissue``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from detectors.tissue import INK_RGB, TissueResult, detect_tissue
from wsi_pipeline.annotations import INK_COLORS, Feature, bounds_properties, write_geojson
from wsi_pipeline.atomic import atomic_path
from wsi_pipeline.overview import Layer, draw_layers, draw_scale_bar, thumbnail_for

#: outline colour of tissue in overviews
TISSUE_RGB = (20, 160, 60)


def tissue_features(result: TissueResult) -> list[Feature]:
    """Tissue polygons (annotation "Tissue", "Area mm^2") then ink regions ("Ink: <colour>",
    extra ``inkColor``), with ids stable across re-runs of the same result."""
    feats = [
        Feature(poly, "annotation", "Tissue", None, {"Area mm^2": round(float(a), 6)})
        for poly, a in zip(result.polygons, result.areas_mm2)
    ]
    for ink in result.inks:
        feats.append(Feature(ink.polygon, "annotation", f"Ink: {ink.colour}", INK_COLORS.get(ink.colour),
                             {"Area mm^2": round(float(ink.area_mm2), 6)}, extra={"inkColor": ink.colour}))
    for i, f in enumerate(feats):
        f.id = f"00000000-0000-4000-8000-{i:012d}"
    return feats


def tissue_overview(slide, result: TissueResult, *, max_side: int = 1600) -> np.ndarray:
    """Thumbnail ``(h, w, 3)`` uint8 with the tissue outline (green), ink regions (their
    colour) and, when the slide's pixel size is known, a scale bar."""
    img, ds = thumbnail_for(slide, max_side=max_side)
    img = draw_layers(img, tissue_layers(result, line_width(img)), downsample=ds)
    mpp = slide.mpp_or_none
    return draw_scale_bar(img, float(mpp[0]) * ds) if mpp else img


def line_width(image: np.ndarray) -> int:
    """Outline width in px that stays visible on a thumbnail of this size."""
    return max(2, round(max(image.shape[:2]) / 500))


def tissue_layers(result: TissueResult, width: int) -> list[Layer]:
    """Tissue outline (green) and ink regions (filled in their colour), for :func:`draw_layers`."""
    layers = [Layer(tuple(result.polygons), TISSUE_RGB, width=width)]
    for colour in sorted({i.colour for i in result.inks}):
        geoms = tuple(i.polygon for i in result.inks if i.colour == colour)
        layers.append(Layer(geoms, INK_RGB[colour], width=width + 2, fill_alpha=0.35))
    return layers


@dataclass(frozen=True)
class TissueOutputs:
    geojson: Path
    png: Path
    result: TissueResult


def run_tissue(slide, out_dir: str | Path, *, mpp: float = 8.0, device: str = "auto") -> TissueOutputs:
    """Detect tissue on ``slide`` and write ``out_dir/tissue.geojson`` and ``out_dir/tissue.png``."""
    from PIL import Image

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    result = detect_tissue(slide, mpp=mpp, device=device)
    props = {"slide": slide.path.name, **bounds_properties(slide.bounds), "tissueThreshold": result.threshold,
             "tissueMpp": result.mpp}
    write_geojson(out / "tissue.geojson", tissue_features(result), properties=props)
    picture = tissue_overview(slide, result)
    with atomic_path(out / "tissue.png") as tmp:
        Image.fromarray(picture).save(tmp, format="PNG")
    return TissueOutputs(out / "tissue.geojson", out / "tissue.png", result)
