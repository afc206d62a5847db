"""One QuPath-dialect GeoJSON feature as a Python object.

:class:`Feature` holds a shapely geometry in ``(x, y)`` level-0 pixels and QuPath's
properties (object type, classification name and colour, measurements, name, lock state,
nucleus geometry for cells). Properties this module does not know are kept verbatim in
``extra`` and written back unchanged.

Dialects read (QuPath >= 0.4 is what we write):

* 0.4+: feature ``id`` is a UUID, ``properties.objectType``, ``classification.color`` as
  ``[r, g, b]``, ``measurements`` as ``{name: value}``, ``nucleusGeometry`` beside ``geometry``.
* 0.2/0.3: feature ``id`` names the Java class (``PathAnnotationObject``, ``PathCellObject``,
  ...), ``classification.colorRGB`` is a packed (often negative) int, ``measurements`` is a
  list of ``{name, value}``.
"""

from __future__ import annotations

import functools
import math
import uuid
from dataclasses import dataclass, field
from typing import Any

import shapely
import shapely.geometry

from wsi_pipeline.annotations.colors import RGB, unpack_rgb

#: Old exports put the Java class in the feature ``id``; map it to ``objectType``.
LEGACY_OBJECT_TYPES: dict[str, str] = {
    "PathAnnotationObject": "annotation",
    "PathDetectionObject": "detection",
    "PathCellObject": "cell",
    "PathTileObject": "tile",
    "TMACoreObject": "tma_core",
    "PathTMACoreObject": "tma_core",
    "PathRootObject": "root",
}

OBJECT_TYPES = ("annotation", "detection", "cell", "tile", "tma_core", "root")

#: Properties interpreted by :class:`Feature`; everything else goes to ``Feature.extra``.
KNOWN_PROPERTIES = frozenset({"objectType", "object_type", "classification", "measurements", "name", "isLocked"})
#: Feature-level members interpreted here; other members go to ``Feature.foreign``.
KNOWN_MEMBERS = frozenset({"type", "id", "geometry", "properties", "nucleusGeometry"})


def new_id() -> str:
    """A fresh random UUID string, as QuPath gives every object."""
    return str(uuid.uuid4())


@dataclass(eq=False, slots=True)
class Feature:
    """One object: geometry in ``(x, y)`` level-0 pixels plus QuPath properties.

    geometry : shapely geometry (Polygon with holes, MultiPolygon, Point, MultiPoint,
        LineString, MultiLineString) or ``None``.
    object_type : ``"annotation"``, ``"detection"``, ``"cell"``, ``"tile"``, ``"tma_core"``.
    classification : class name or ``None`` (unclassified).
    color : classification colour ``(r, g, b)`` or ``None``.
    measurements : name -> float.
    id : UUID string.
    name : the object's display name or ``None``.
    nucleus_geometry : cells only: the nucleus (shapely) inside ``geometry``.
    is_locked : QuPath's lock flag.
    extra : unknown ``properties`` members, written back unchanged.
    foreign : unknown feature-level members (beside ``geometry``), written back unchanged.
    id_in_properties : the source file kept ``id`` inside ``properties``; written back there too.
    """

    geometry: Any
    object_type: str = "annotation"
    classification: str | None = None
    color: RGB | None = None
    measurements: dict[str, float] = field(default_factory=dict)
    id: str = field(default_factory=new_id)
    name: str | None = None
    nucleus_geometry: Any = None
    is_locked: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    foreign: dict[str, Any] = field(default_factory=dict, repr=False)
    id_in_properties: bool = field(default=False, repr=False)

    # ---- properties (no geometry) -------------------------------------------------
    def properties(self) -> dict[str, Any]:
        """The GeoJSON ``properties`` object in QuPath >= 0.4 form (for serialising at once:
        it may share the ``measurements`` dict with this feature)."""
        props: dict[str, Any] = {}
        if self.id_in_properties:
            props["id"] = self.id
        props["objectType"] = self.object_type
        if self.name is not None:
            props["name"] = self.name
        if self.classification is not None:
            cls: dict[str, Any] = {"name": self.classification}
            if self.color is not None:
                cls["color"] = [int(c) for c in self.color]
            props["classification"] = cls
        if self.is_locked:
            props["isLocked"] = True
        m = self.measurements
        if m:
            vals = m.values()
            if not (set(map(type, vals)) <= _FLOAT and math.isfinite(sum(vals))):  # NaN/inf -> null
                m = {k: _json_number(v) for k, v in m.items()}
            props["measurements"] = m
        for k, v in self.extra.items():
            if k not in props:
                props[k] = v
        return props

    def to_geojson(self) -> dict[str, Any]:
        """The feature as a GeoJSON ``dict`` (slow path; the writer serialises in bulk)."""
        out: dict[str, Any] = {"type": "Feature", "id": self.id}
        out["geometry"] = None if self.geometry is None else shapely.geometry.mapping(self.geometry)
        if self.nucleus_geometry is not None:
            out["nucleusGeometry"] = shapely.geometry.mapping(self.nucleus_geometry)
        for k, v in self.foreign.items():
            out.setdefault(k, v)
        props = self.properties()
        if "measurements" in props:  # a copy: the caller may edit the dict
            props["measurements"] = dict(props["measurements"])
        out["properties"] = props
        return out

    @classmethod
    def from_geojson(cls, obj: dict[str, Any]) -> "Feature":
        """Parse one feature ``dict`` (any dialect above); geometry via shapely, unrepaired."""
        geom = obj.get("geometry")
        nucleus = obj.get("nucleusGeometry")
        return feature_from_parts(
            obj,
            None if geom is None else shapely.geometry.shape(geom),
            None if nucleus is None else shapely.geometry.shape(nucleus),
        )


def _json_number(v: Any) -> Any:
    """Measurements: NaN/inf are not JSON; written as ``null`` (read back as NaN)."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


_FLOAT = {float}


def _measurements(raw: Any) -> dict[str, Any]:
    if raw is None:
        return {}
    if isinstance(raw, dict):
        if set(map(type, raw.values())) <= _FLOAT:  # common case, checked at C speed
            return raw
        items = raw.items()
    else:  # legacy list of {"name": ..., "value": ...}
        items = ((m.get("name"), m.get("value")) for m in raw if isinstance(m, dict))
    out: dict[str, Any] = {}
    for k, v in items:
        if v is None:
            out[str(k)] = math.nan
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out[str(k)] = float(v)
        else:
            out[str(k)] = v
    return out


def _classification(raw: Any) -> tuple[str | None, RGB | None]:
    if raw is None:
        return None, None
    if isinstance(raw, str):
        return raw, None
    name = raw.get("name")
    if name is None and raw.get("names"):
        name = ": ".join(str(n) for n in raw["names"])
    color = raw.get("color")
    if color is not None and not isinstance(color, (int, float)):
        rgb = tuple(map(int, color[:3]))
    elif color is not None:
        rgb = unpack_rgb(color)
    elif raw.get("colorRGB") is not None:
        rgb = unpack_rgb(raw["colorRGB"])
    else:
        rgb = None
    return name, rgb


@functools.lru_cache(maxsize=4096)
def _usual_classification(name: str, r: Any, g: Any, b: Any) -> tuple[str | None, RGB | None]:
    return _classification({"name": name, "color": [r, g, b]})


def _classification_cached(raw: Any) -> tuple[str | None, RGB | None]:
    """:func:`_classification`, remembered for the usual form (a file has few classes)."""
    if type(raw) is dict and len(raw) == 2:
        name, c = raw.get("name"), raw.get("color")
        if type(name) is str and type(c) is list and len(c) == 3:
            try:
                hash((c[0], c[1], c[2]))
            except TypeError:  # an unhashable colour entry
                return _classification(raw)
            return _usual_classification(name, c[0], c[1], c[2])
    return _classification(raw)


def feature_from_parts(obj: dict[str, Any], geometry: Any, nucleus_geometry: Any) -> Feature:
    """Build a :class:`Feature` from a parsed feature ``dict`` and its already-built geometries."""
    props = obj.get("properties")
    raw_id = obj.get("id")
    if (  # the usual modern feature (what we write): nothing to reinterpret, checked cheaply
        type(raw_id) is str
        and type(props) is dict
        and props.keys() <= KNOWN_PROPERTIES
        and obj.keys() <= KNOWN_MEMBERS
        and raw_id not in LEGACY_OBJECT_TYPES
    ):
        object_type = props["objectType"] if "objectType" in props else props.get("object_type")
        name, color = _classification_cached(props.get("classification"))
        m = props.get("measurements")
        if type(m) is not dict or not set(map(type, m.values())) <= _FLOAT:
            m = _measurements(m)
        return Feature(
            geometry, object_type or "annotation", name, color, m, raw_id, props.get("name"),
            nucleus_geometry, bool(props.get("isLocked", False)), {}, {}, False,
        )
    return _feature_from_any(obj, props or {}, raw_id, geometry, nucleus_geometry)


def _feature_from_any(obj: dict, props: dict, raw_id: Any, geometry: Any, nucleus_geometry: Any) -> Feature:
    """Every dialect: legacy class-name ids, ids in properties, unknown members."""
    object_type = props.get("objectType", props.get("object_type"))
    id_in_properties = False
    fid: str | None = None
    if isinstance(raw_id, str) and raw_id in LEGACY_OBJECT_TYPES:
        object_type = object_type or LEGACY_OBJECT_TYPES[raw_id]
    elif raw_id is not None:
        fid = str(raw_id)
    if fid is None and isinstance(props.get("id"), str):
        fid, id_in_properties = props["id"], True
    elif fid is not None and props.get("id") == fid:
        id_in_properties = True
    name, color = _classification(props.get("classification"))
    extra = {}
    if props.keys() - KNOWN_PROPERTIES:
        extra = {k: v for k, v in props.items() if k not in KNOWN_PROPERTIES}
        if id_in_properties:
            del extra["id"]
    foreign = {}
    if obj.keys() - KNOWN_MEMBERS:
        foreign = {k: v for k, v in obj.items() if k not in KNOWN_MEMBERS}
    return Feature(
        geometry,
        object_type or "annotation",
        name,
        color,
        _measurements(props.get("measurements")),
        fid if fid is not None else new_id(),
        props.get("name"),
        nucleus_geometry,
        bool(props.get("isLocked", False)),
        extra,
        foreign,
        id_in_properties,
    )
