"""The tissue-region label map of one slide: :class:`RegionMap`.

Label values (fixed between the run, the report and the viewer):

====  ==============  ==========================================================
   0  background      no tissue (glass, ink-free background)
   1  Epidermis       the nucleated epidermis (keratin is *not* Epidermis)
   2  Dermis          tissue that is none of the others (collagen, sparse cells)
   3  Tumor           cohesive atypical/epithelial growth that is not surface epidermis
   4  Inflammation    where lymphocytes dominate (dense aggregates)
   5  Other           keratin / stratum corneum and anything unassigned
====  ==============  ==========================================================

Pixel ``(row r, col c)`` of ``labels`` covers level-0 ``[c*ds, (c+1)*ds) x [r*ds, (r+1)*ds)``
with ``ds = downsample``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely
from shapely.geometry import MultiPolygon, Polygon

#: Class names by label value (index); 0 is background.
CLASSES: tuple[str, ...] = ("Epidermis", "Dermis", "Tumor", "Inflammation", "Other")
LABELS: dict[str, int] = {name: i + 1 for i, name in enumerate(CLASSES)}
#: Display colours (r, g, b); Tumor and Other are QuPath's own colours for those classes.
COLORS: dict[str, tuple[int, int, int]] = {
    "Epidermis": (140, 60, 200),
    "Dermis": (240, 150, 180),
    "Tumor": (200, 0, 0),
    "Inflammation": (30, 120, 255),
    "Other": (255, 200, 0),
}
AREA_MEASUREMENT = "Area mm^2"


@dataclass(frozen=True)
class RegionMap:
    """Tissue regions on a coarse grid.

    labels : (H, W) uint8 label values (see module docstring).
    um_per_px : micrometres per label pixel.
    downsample : level-0 pixels per label pixel.
    """

    labels: np.ndarray
    um_per_px: float
    downsample: float

    def __post_init__(self) -> None:
        lab = np.asarray(self.labels)
        if lab.ndim != 2:
            raise ValueError(f"RegionMap labels must be 2-D, got shape {lab.shape}")
        if lab.size and int(lab.max()) > len(CLASSES):
            raise ValueError(f"RegionMap labels hold value {int(lab.max())}; valid are 0..{len(CLASSES)}")
        if self.um_per_px <= 0 or self.downsample <= 0:
            raise ValueError("RegionMap um_per_px and downsample must be positive")
        object.__setattr__(self, "labels", lab.astype(np.uint8, copy=False))

    @property
    def classes(self) -> tuple[str, ...]:
        return CLASSES

    def area_mm2(self) -> dict[str, float]:
        """Area of each class (all five names, 0.0 when absent)."""
        counts = np.bincount(self.labels.ravel(), minlength=len(CLASSES) + 1)
        px_mm2 = (self.um_per_px / 1000.0) ** 2
        return {name: float(counts[i + 1] * px_mm2) for i, name in enumerate(CLASSES)}

    def geometries(self, *, simplify_px: float = 0.35) -> dict[str, MultiPolygon]:
        """Class name -> MultiPolygon in level-0 ``(x, y)`` pixels, for the classes present.

        Outlines follow label-pixel edges (corners cut), simplified by ``simplify_px`` label px.
        """
        from detectors.tissue.vectorize import mask_to_polygons

        out = {}
        for name in CLASSES:
            mask = self.labels == LABELS[name]
            if not mask.any():
                continue
            polys = []
            for p in mask_to_polygons(mask):
                q = shapely.simplify(shapely.transform(p, lambda c: c * self.downsample),
                                     simplify_px * self.downsample, preserve_topology=True)
                q = q if q.is_valid else shapely.make_valid(q)
                polys.extend(g for g in getattr(q, "geoms", [q]) if isinstance(g, Polygon) and not g.is_empty)
            if polys:
                out[name] = MultiPolygon(polys)
        return out

    def to_features(self) -> list:
        """One QuPath annotation per class present: MultiPolygon (level-0 px), class colour,
        measurement ``Area mm^2`` (from the label raster)."""
        from wsi_pipeline.annotations.feature import Feature  # output format lives in wsi_pipeline

        areas = self.area_mm2()
        return [
            Feature(geom, object_type="annotation", classification=name, color=COLORS[name],
                    measurements={AREA_MEASUREMENT: round(areas[name], 6)}, name=name)
            for name, geom in self.geometries().items()
        ]

    def to_dict(self) -> dict:
        """The raster's metadata (what summary.json records beside ``regions.npy``)."""
        return {"um_per_px": float(self.um_per_px), "downsample": float(self.downsample),
                "shape": list(self.labels.shape), "classes": {str(LABELS[n]): n for n in CLASSES},
                "area_mm2": {k: round(v, 6) for k, v in self.area_mm2().items()}}

    @classmethod
    def from_dict(cls, d: dict, labels: np.ndarray) -> "RegionMap":
        return cls(labels=labels, um_per_px=float(d["um_per_px"]), downsample=float(d["downsample"]))


def rasterize_geometry(geom, shape: tuple[int, int], downsample: float) -> np.ndarray:
    """(H, W) bool: label pixels whose centre lies inside the level-0 ``geom`` (None -> all False)."""
    h, w = shape
    if geom is None or geom.is_empty:
        return np.zeros((h, w), bool)
    shapely.prepare(geom)
    xs = (np.arange(w) + 0.5) * downsample
    ys = (np.arange(h) + 0.5) * downsample
    gx, gy = np.meshgrid(xs, ys)
    return shapely.contains_xy(geom, gx, gy)


def rasterize_regions(geoms: dict, shape: tuple[int, int], downsample: float) -> np.ndarray:
    """(H, W) uint8 labels from class name -> level-0 geometry (names outside :data:`CLASSES`
    are ignored). Where classes overlap the more specific wins: Dermis first, then Other,
    Inflammation, Epidermis, Tumor."""
    out = np.zeros(shape, np.uint8)
    for name in ("Dermis", "Other", "Inflammation", "Epidermis", "Tumor"):
        if geoms.get(name) is not None:
            out[rasterize_geometry(geoms[name], shape, downsample)] = LABELS[name]
    return out
