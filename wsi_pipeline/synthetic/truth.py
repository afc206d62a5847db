"""Ground truth of a synthetic scene as QuPath-dialect GeoJSON (level-0 pixels).

Files written into the truth folder:

* ``tissue.geojson``: one annotation per piece, class ``Tissue``, ``Area mm^2``.
* ``tumor.geojson``: the nest, annotation class ``Tumor``; measurements
  ``Distance to <colour> inked edge um`` (tumour polygon to the tissue boundary under that
  ink: the margin clearance) and ``Distance to <colour> ink um`` (to the ink band itself).
* ``ink.geojson``: one annotation per inked stretch, class ``Ink: <colour>``,
  extra ``{"inkColor": colour}``; the band lies inside the tissue along its edge.
* ``nuclei.geojson``: every nucleus (tumour, epidermal, dermal, lymphocyte, and the mitotic
  figures too) as a detection polygon, class ``Nucleus``, extra ``nucleusType``.
* ``mitoses.geojson``: a detection Point per mitotic figure, class ``Mitosis``.
* ``marker.geojson``: marker pen on the glass (not tissue), class ``Marker pen`` (if any).
* ``regions.geojson``: the tissue partitioned into ``Epidermis`` (nucleated epidermis),
  ``Dermis``, ``Tumor``, ``Inflammation`` (the lymphoid aggregate) and ``Other`` (keratin):
  one annotation (MultiPolygon) per class present, ``Area mm^2``; see
  :mod:`wsi_pipeline.synthetic.regions`.
* ``breslow.geojson`` (melanoma scenes): the Breslow measuring line, class
  ``Breslow thickness``, measurement ``Thickness mm``; ``ulcer.geojson``: the ulcer base
  (the exposed tumour surface), class ``Ulceration``, ``Length mm`` (when ulcerated).
* ``scene.json``: the options and counts; for a melanoma ``"melanoma": {"breslow_mm",
  "ulceration", "ulcer_length_mm", "til_grade", "pT", ...}``.

Feature ids come from the scene's seed, so the same seed writes identical files.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import numpy as np
import shapely
from shapely.geometry import Point

from wsi_pipeline.annotations import Feature, class_color, write_geojson
from wsi_pipeline.synthetic.melanoma import breslow_rounded_mm
from wsi_pipeline.synthetic.nuclei import KIND_NAMES, LYMPHOCYTE, MITOSIS
from wsi_pipeline.synthetic.regions import region_geometries
from wsi_pipeline.synthetic.scene import Scene

TRUTH_FILES = (
    "tissue.geojson", "tumor.geojson", "ink.geojson", "nuclei.geojson", "mitoses.geojson", "regions.geojson",
)


class _Ids:
    def __init__(self, seed: int) -> None:
        self._rng = np.random.default_rng([seed, 0x1D5])

    def __call__(self) -> str:
        return str(uuid.UUID(bytes=self._rng.bytes(16), version=4))


def _feature(geom, cls, ids, *, object_type="annotation", measurements=None, extra=None) -> Feature:
    return Feature(
        geom,
        object_type=object_type,
        classification=cls,
        color=class_color(cls),
        measurements=measurements or {},
        id=ids(),
        extra=extra or {},
    )


def write_truth(
    scene: Scene, folder: str | Path, *, options: dict | None = None, scene_options: dict | None = None
) -> dict[str, int]:
    """Write the ground-truth files for ``scene`` into ``folder``; returns feature counts."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    ids = _Ids(scene.seed)
    mm2 = (scene.mpp * 1e-3) ** 2
    props = {"synthetic": True, "mpp": [scene.mpp, scene.mpp], "dimensions": [scene.width, scene.height]}
    counts = {}

    tissue = [
        _feature(p, "Tissue", ids, measurements={"Area mm^2": round(p.area * mm2, 6)}) for p in scene.pieces
    ]
    counts["tissue"] = write_geojson(folder / "tissue.geojson", tissue, properties=props)

    tumor = []
    if scene.tumor is not None and not scene.tumor.is_empty:
        meas = {"Area mm^2": round(scene.tumor.area * mm2, 6)}
        for color, distance in _ink_distances(scene).items():
            band = shapely.union_all([ink.region for ink in scene.inks if ink.color == color])
            meas[f"Distance to {color} inked edge um"] = distance
            meas[f"Distance to {color} ink um"] = round(float(scene.tumor.distance(band)) * scene.mpp, 3)
        tumor.append(_feature(scene.tumor, "Tumor", ids, measurements=meas))
    counts["tumor"] = write_geojson(folder / "tumor.geojson", tumor, properties=props)

    inks = [
        _feature(ink.region, f"Ink: {ink.color}", ids, extra={"inkColor": ink.color})
        for ink in scene.inks
        if not ink.region.is_empty
    ]
    counts["ink"] = write_geojson(folder / "ink.geojson", inks, properties=props)

    nuc = scene.nuclei
    rings = nuc.polygons(vertices=16)
    polys = shapely.polygons(rings)
    area_um2 = np.pi * nuc.a * nuc.b * scene.mpp**2
    nuclei = (
        _feature(
            polys[i],
            "Nucleus",
            ids,
            object_type="detection",
            measurements={"Area um^2": round(float(area_um2[i]), 2)},
            extra={"nucleusType": KIND_NAMES[int(nuc.kind[i])]},
        )
        for i in range(len(nuc))
    )
    counts["nuclei"] = write_geojson(folder / "nuclei.geojson", nuclei, properties=props, decimals=2)

    mit = np.flatnonzero(nuc.kind == MITOSIS)
    mitoses = [
        _feature(Point(float(nuc.x[i]), float(nuc.y[i])), "Mitosis", ids, object_type="detection")
        for i in mit
    ]
    counts["mitoses"] = write_geojson(folder / "mitoses.geojson", mitoses, properties=props, decimals=2)

    regions = region_geometries(scene)
    counts["regions"] = write_geojson(
        folder / "regions.geojson",
        [
            _feature(geom, name, ids, measurements={"Area mm^2": round(geom.area * mm2, 6)})
            for name, geom in regions.items()
            if not geom.is_empty
        ],
        properties=props,
    )

    if scene.melanoma is not None:
        counts.update(_write_melanoma(scene, folder, ids, props))

    if scene.marker is not None:
        counts["marker"] = write_geojson(
            folder / "marker.geojson",
            [_feature(scene.marker, "Marker pen", ids, extra={"inkColor": scene.marker_color})],
            properties=props,
        )
    summary = {
        "width": scene.width,
        "height": scene.height,
        "mpp": scene.mpp,
        "seed": scene.seed,
        "counts": counts,
        "nuclei_by_type": {name: int((nuc.kind == k).sum()) for k, name in enumerate(KIND_NAMES)},
        "tumor_ink_distance_um": scene.tumor_ink_distance_um,
        "tumor_ink_color": scene.tumor_ink_color,
        "tumor_inked_edge_distances_um": _ink_distances(scene),
        "regions_mm2": {name: round(geom.area * mm2, 6) for name, geom in regions.items()},
        "inflammation": _inflammation(scene),
        "lesion": scene.lesion,
        **({"melanoma": melanoma_summary(scene)} if scene.melanoma is not None else {}),
        "options": options or {},
        "scene_options": scene_options or {},
    }
    (folder / "scene.json").write_text(json.dumps(summary, indent=2, default=str))
    return counts


def _ink_distances(scene: Scene) -> dict[str, float]:
    """Tumour polygon to the tissue edge under each ink colour (um): the margin clearances."""
    if scene.tumor is None or scene.tumor.is_empty:
        return {}
    out = {}
    for color in dict.fromkeys(ink.color for ink in scene.inks):
        edge = shapely.union_all([ink.edge for ink in scene.inks if ink.color == color])
        out[color] = round(float(scene.tumor.distance(edge)) * scene.mpp, 3)
    return out


def _inflammation(scene: Scene) -> dict:
    focus = scene.inflammation
    if focus is None or focus.is_empty:
        return {"present": False}
    nuc = scene.nuclei
    inside = shapely.contains_xy(focus, nuc.x, nuc.y)
    lymph = int((inside & (nuc.kind == LYMPHOCYTE)).sum())
    area = focus.area * (scene.mpp * 1e-3) ** 2
    x0, y0, x1, y1 = focus.bounds
    return {
        "present": True,
        "area_mm2": round(area, 6),
        "extent_um": [round((x1 - x0) * scene.mpp, 1), round((y1 - y0) * scene.mpp, 1)],
        "lymphocytes": lymph,
        "lymphocytes_per_mm2": round(lymph / area, 1),
        "lymphocyte_fraction": round(lymph / max(int(inside.sum()), 1), 4),
    }


def _write_melanoma(scene: Scene, folder: Path, ids, props) -> dict[str, int]:
    m = scene.melanoma
    counts = {
        "breslow": write_geojson(
            folder / "breslow.geojson",
            [_feature(m.breslow_line, "Breslow thickness", ids,
                      measurements={"Thickness mm": round(m.breslow_um / 1000.0, 4)},
                      extra={"measuredFrom": "ulcer base" if _foot_on_ulcer(m) else "granular layer"})],
            properties=props,
        )  # fmt: skip
    }
    if m.ulcer_base is not None:
        counts["ulcer"] = write_geojson(
            folder / "ulcer.geojson",
            [_feature(m.ulcer_base, "Ulceration", ids, measurements={"Length mm": round(m.ulcer_length_um / 1000.0, 4)})],
            properties=props,
        )
    return counts


def _foot_on_ulcer(m) -> bool:
    return m.ulcer_base is not None and m.ulcer_base.distance(Point(m.breslow_line.coords[0])) < 1e-6


def melanoma_summary(scene: Scene) -> dict:
    """The melanoma truth of ``scene`` as written to scene.json (mm, counts, grades)."""
    m = scene.melanoma
    mm2 = (scene.mpp * 1e-3) ** 2
    nuc = scene.nuclei
    in_tumor = shapely.contains_xy(scene.tumor, nuc.x, nuc.y)
    tils = int((in_tumor & (nuc.kind == LYMPHOCYTE)).sum())
    in_invasive = shapely.contains_xy(m.invasive, nuc.x, nuc.y) & (nuc.kind == LYMPHOCYTE)
    til_area = 0.0 if m.til_region is None else m.til_region.area
    return {
        "breslow_mm": round(m.breslow_um / 1000.0, 4),
        "breslow_mm_reported": breslow_rounded_mm(m.breslow_um / 1000.0),
        "breslow_measured_from": "ulcer base" if _foot_on_ulcer(m) else "granular layer",
        "ulceration": m.ulcerated,
        "ulcer_length_mm": round(m.ulcer_length_um / 1000.0, 4),
        "til_grade": m.til_grade,
        "pT": m.pt(),
        "tumor_area_mm2": round(scene.tumor.area * mm2, 6),
        "invasive_area_mm2": round(m.invasive.area * mm2, 6),
        "til_lymphocytes": tils,
        "til_per_mm2_invasive": round(int(in_invasive.sum()) / max(m.invasive.area * mm2, 1e-12), 1),
        "til_area_fraction": round(til_area / max(m.invasive.area, 1e-12), 4),
    }
