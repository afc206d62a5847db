"""The tissue map as the report reads it: ``regions.geojson`` -> class geometries in µm.

``regions.geojson`` (written by the run's region stage, or the synthetic truth) holds one
annotation per class present: ``Epidermis`` (the nucleated epidermis), ``Dermis``,
``Tumor``, ``Inflammation``, ``Other`` (keratin and anything unassigned), level-0 pixels.

Which map made it decides how far its ``Tumor`` is trusted as the lesion:

* ``"model"``: a tissue model trained on a pathologist's annotations (``run --tissue-model``);
* ``"proposed"``: the weight-free rules (review required), or a map that does not say.

The map says so in its FeatureCollection ``properties``: ``regionsSource`` ("model" |
"weight-free") and ``regionsModel`` (its name), as the run's region stage writes them; also
read: ``{"regions_model": {"model": NAME, "trained": true|false}}`` (or those keys inside
``regions`` or ``model``;
``"synthetic": true`` marks generated truth, which counts as drawn). A map that names no
model is taken as the weight-free one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import shapely

from wsi_pipeline.annotations import read_geojson
from wsi_pipeline.report.margins._units import to_um
from wsi_pipeline.report.margins.edges import polygons_of

REGION_CLASSES = ("Epidermis", "Dermis", "Tumor", "Inflammation", "Other")
MODEL, PROPOSED, DRAWN = "model", "proposed", "drawn"
_NAMES = {c.lower(): c for c in REGION_CLASSES} | {"tumour": "Tumor"}


@dataclass(frozen=True)
class TissueMap:
    """Class name -> geometry in µm (``None`` when absent); ``source``: model | proposed | drawn;
    ``description``: what made the map, for the report."""

    regions: dict = field(default_factory=dict)
    source: str = PROPOSED
    description: str = "tissue map"

    def get(self, name: str):
        geom = self.regions.get(name)
        return None if geom is None or geom.is_empty else geom

    @property
    def epidermis(self):
        return self.get("Epidermis")

    @property
    def tumour(self):
        return self.get("Tumor")

    def below_epidermis(self, tissue=None):
        """The tissue under the epidermis (Dermis, Tumor, Inflammation), or tissue minus
        Epidermis and Other when the map has none of those."""
        parts = [g for g in (self.get("Dermis"), self.get("Tumor"), self.get("Inflammation")) if g is not None]
        if parts:
            return shapely.union_all(parts)
        if tissue is None:
            return None
        rest = tissue
        for name in ("Epidermis", "Other"):
            if self.get(name) is not None:
                rest = rest.difference(self.get(name))
        return rest


def load_tissue_map(results_dir: str | Path, *, mpp: tuple[float, float]) -> TissueMap | None:
    """``results_dir/regions.geojson`` -> :class:`TissueMap` (µm); ``None`` when absent."""
    path = Path(results_dir) / "regions.geojson"
    if not path.is_file():
        return None
    ann = read_geojson(path)
    parts: dict[str, list] = {}
    for feat in ann.features:
        name = _NAMES.get((feat.classification or "").strip().lower())
        if name is not None:
            parts.setdefault(name, []).extend(polygons_of(feat.geometry))
    regions = {name: to_um(shapely.union_all(polys), mpp) for name, polys in parts.items() if polys}
    source, description = map_source(ann.properties)
    return TissueMap(regions, source, description)


def map_source(properties: dict) -> tuple[str, str]:
    """(``"model"`` | ``"proposed"`` | ``"drawn"``, description) from the collection's properties.

    A map counts as a trained model's only when it says so (``trained: true``, or a model name
    that is not weight-free); a map that names no model is the weight-free one (proposed)."""
    props = properties or {}
    if props.get("synthetic") is True:
        return DRAWN, "synthetic ground truth"
    source = str(props.get("regionsSource") or "").lower()
    if source in ("model", "weight-free"):  # what the run's region stage writes
        name = str(props.get("regionsModel") or ("tissue model" if source == "model" else "weight-free rules"))
        if source == "model":
            return MODEL, name if name.startswith("tissue model") else f"tissue model {name}"
        return PROPOSED, f"weight-free tissue map ({name}; review required)"
    for key in ("regions_model", "regions", "model"):
        info = props.get(key)
        info = {"model": info} if isinstance(info, str) else info
        if not isinstance(info, dict):
            continue
        name = info.get("model") or info.get("name")
        trained = info.get("trained")
        if name is None and trained is None:
            continue
        name = str(name or "tissue model")
        if trained is None:
            trained = not any(w in name.lower() for w in ("weight-free", "weightfree", "rules", "rule-based"))
        if trained:
            return MODEL, f"tissue model {name}"
        return PROPOSED, f"{name} (weight-free, review required)"
    return PROPOSED, "weight-free tissue map (review required)"
