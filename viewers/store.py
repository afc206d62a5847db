"""The full set of objects of one layer (e.g. a million nuclei) as a columnar in-memory table.

:class:`FeatureStore` keeps what a viewer needs as flat numpy arrays and everything else
sparsely, so that writing it back reproduces every feature it did not change:

* geometry: simple polygons (one ring, no holes) and points as one flat ``(V, 2)`` float64
  ``(x, y)`` vertex array with ``(N + 1,)`` offsets (rings stored open); anything else
  (holes, multi-parts, lines) and every edited or added geometry as a shapely object in a
  sparse ``row -> geometry`` override.
* ``centroids`` ``(N, 2)`` float64 ``(x, y)`` (vertex mean), ``category`` ``(N,)`` int32 into
  :attr:`categories` (``(object_type, classification, colour)`` triples), measurement
  columns ``name -> (N,)`` float64 with a presence mask, ``deleted`` ``(N,)`` bool,
  ``review`` ``(N,)`` uint8 (index into :data:`REVIEW_STATES`).
* sparse: names, nucleus geometries, unknown properties (``extra``, ``foreign``), ids kept
  inside ``properties``.

Review status lives in the feature's properties as ``reviewStatus``, ``reviewer`` and
``reviewedAt`` (ISO 8601, UTC). Rows are never renumbered: deleting sets a tombstone.
All coordinates are level-0 ``(x, y)`` pixels.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import numpy as np
import shapely

REVIEW_STATES = ("unreviewed", "accepted", "corrected", "rejected")
_POINT, _POLYGON, _OTHER = 1, 2, 3


def now_iso() -> str:
    """Current UTC time, ISO 8601 with seconds."""
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


@dataclass(frozen=True)
class Change:
    """One edit, as the audit log records it: ``what`` on feature ``id``, ``before`` -> ``after``."""

    what: str
    id: str
    before: Any
    after: Any


def _ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Concatenated ``arange(s, s + c)`` for each pair: flat indices of variable-length runs."""
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, np.int64)
    ends = np.cumsum(counts)
    idx = np.ones(total, np.int64)
    idx[0] = starts[0]
    nz = counts > 0
    s, e, c = starts[nz], ends[nz], counts[nz]
    idx[e[:-1]] = s[1:] - (s[:-1] + c[:-1] - 1)
    return np.cumsum(idx)


class FeatureStore:
    """Columnar table of features; see the module docstring. Build with a ``from_*`` method."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.ids = np.empty(n, object)
        self.centroids = np.zeros((n, 2), np.float64)
        self.kind = np.zeros(n, np.uint8)
        self.category = np.zeros(n, np.int32)
        self.categories: list[tuple[str, str | None, tuple[int, int, int] | None]] = []
        self.deleted = np.zeros(n, bool)
        self.review = np.zeros(n, np.uint8)
        self.is_locked = np.zeros(n, bool)
        self.measurements: dict[str, np.ndarray] = {}
        self.present: dict[str, np.ndarray] = {}
        self.coords = np.zeros((0, 2), np.float64)
        self.offsets = np.zeros(n + 1, np.int64)
        self.n_base = n
        self.override: dict[int, Any] = {}
        self.names: dict[int, str] = {}
        self.nucleus: dict[int, Any] = {}
        self.extra: dict[int, dict] = {}
        self.foreign: dict[int, dict] = {}
        self.odd_measurements: dict[int, dict] = {}
        self.id_in_properties: set[int] = set()
        self.changes: list[Change] = []
        self.version = 0  # bumped on every edit (viewers refresh when it moves)

    # ---- building -------------------------------------------------------------------
    @classmethod
    def from_features(cls, features: Iterable) -> "FeatureStore":
        """Columns from :class:`wsi_pipeline.annotations.Feature` objects (any geometry)."""
        feats = list(features)
        store = cls(len(feats))
        cat_index: dict[tuple, int] = {}
        geoms = np.empty(len(feats), object)
        for i, f in enumerate(feats):
            geoms[i] = f.geometry
            store.ids[i] = f.id
            key = (f.object_type, f.classification, None if f.color is None else tuple(f.color))
            store.category[i] = cat_index.setdefault(key, len(cat_index))
            store.is_locked[i] = f.is_locked
            store._set_measurements(i, f.measurements)
            if f.name is not None:
                store.names[i] = f.name
            if f.nucleus_geometry is not None:
                store.nucleus[i] = f.nucleus_geometry
            if f.extra:
                store.extra[i] = dict(f.extra)
                store.review[i] = _review_code(f.extra.get("reviewStatus"))
            if f.foreign:
                store.foreign[i] = dict(f.foreign)
            if f.id_in_properties:
                store.id_in_properties.add(i)
        store.categories = list(cat_index)
        store._set_geometries(geoms)
        return store

    @classmethod
    def from_polygons(
        cls,
        coords: np.ndarray,
        offsets: np.ndarray,
        *,
        classification: str = "Nucleus",
        object_type: str = "detection",
        color: tuple[int, int, int] | None = None,
        measurements: dict[str, np.ndarray] | None = None,
        ids: np.ndarray | None = None,
    ) -> "FeatureStore":
        """Simple polygons straight from arrays: ``coords`` ``(V, 2)`` open rings, ``offsets`` ``(N+1,)``."""
        n = len(offsets) - 1
        store = cls(n)
        store.coords = np.ascontiguousarray(coords, np.float64)
        store.offsets = np.asarray(offsets, np.int64)
        store.kind[:] = _POLYGON
        store.categories = [(object_type, classification, color)]
        store.ids[:] = ids if ids is not None else [f"{i:08x}-0000-4000-8000-{i:012x}" for i in range(n)]
        for k, v in (measurements or {}).items():
            store.measurements[k] = np.asarray(v, np.float64)
            store.present[k] = np.ones(n, bool)
        store._compute_centroids()
        return store

    def _set_measurements(self, i: int, meas: dict) -> None:
        for k, v in meas.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                col = self.measurements.get(k)
                if col is None:
                    col = self.measurements[k] = np.full(self.n, np.nan)
                    self.present[k] = np.zeros(self.n, bool)
                col[i] = v
                self.present[k][i] = True
            else:
                self.odd_measurements.setdefault(i, {})[k] = v

    def _set_geometries(self, geoms: np.ndarray) -> None:
        type_id = shapely.get_type_id(geoms)  # -1 for None
        is_point = type_id == 0
        is_poly = (type_id == 3) & (shapely.get_num_interior_rings(geoms) == 0)
        simple = is_point | is_poly
        self.kind[is_point] = _POINT
        self.kind[is_poly] = _POLYGON
        self.kind[(~simple) & (type_id >= 0)] = _OTHER
        parts = np.where(is_poly, shapely.get_exterior_ring(geoms), geoms)
        sel = np.flatnonzero(simple)
        xy, idx = shapely.get_coordinates(parts[sel], return_index=True)
        counts = np.bincount(idx, minlength=len(sel))
        keep = np.ones(len(xy), bool)
        ends = np.cumsum(counts)
        ring = is_poly[sel] & (counts > 1)
        keep[ends[ring] - 1] = False  # drop the closing vertex of each ring
        counts = counts - ring
        all_counts = np.zeros(self.n, np.int64)
        all_counts[sel] = counts
        self.coords = np.ascontiguousarray(xy[keep])
        self.offsets = np.concatenate([[0], np.cumsum(all_counts)])
        for i in np.flatnonzero((~simple) & (type_id >= 0)):
            self.override[int(i)] = geoms[i]
        self._compute_centroids()

    def _compute_centroids(self) -> None:
        counts = np.diff(self.offsets)
        has = counts > 0
        sums = np.add.reduceat(self.coords, self.offsets[:-1][has], axis=0) if has.any() else np.zeros((0, 2))
        self.centroids[has] = sums / counts[has, None]
        for i, g in self.override.items():
            self.centroids[i] = _centroid(g)

    # ---- reading ----------------------------------------------------------------------
    @property
    def alive(self) -> np.ndarray:
        """``(N,)`` bool: rows not deleted."""
        return ~self.deleted

    def point_mask(self) -> np.ndarray:
        """``(N,)`` bool: rows whose geometry is a point or a multipoint."""
        out = self.kind == _POINT
        for r, g in self.override.items():
            out[r] = g is not None and g.geom_type in ("Point", "MultiPoint")
        return out

    def __len__(self) -> int:
        return int(self.n - self.deleted.sum())

    def classification(self, rows: np.ndarray | None = None) -> np.ndarray:
        """``(len(rows),)`` object array of class names (``None`` for unclassified)."""
        names = np.array([c[1] for c in self.categories] + [None], object)
        cat = self.category if rows is None else self.category[rows]
        return names[cat]

    def class_names(self) -> list[str | None]:
        """Classes present among live rows, in first-seen order."""
        used = np.unique(self.category[self.alive])
        seen: dict = {}
        for c in used:
            seen.setdefault(self.categories[c][1], None)
        return list(seen)

    def class_counts(self) -> dict[str | None, int]:
        """Live rows per class name."""
        counts = np.bincount(self.category[self.alive], minlength=len(self.categories))
        out: dict[str | None, int] = {}
        for (_, name, _), c in zip(self.categories, counts):
            if c:
                out[name] = out.get(name, 0) + int(c)
        return out

    def class_color(self, name: str | None) -> tuple[int, int, int] | None:
        """The colour recorded with class ``name`` (first one seen), else ``None``."""
        for _, cname, color in self.categories:
            if cname == name and color is not None:
                return color
        return None

    def rows_in_box(self, x0: float, y0: float, x1: float, y1: float, *, mask: np.ndarray | None = None) -> np.ndarray:
        """Rows (live, and ``mask`` when given) whose centroid lies in ``[x0, x1) x [y0, y1)``."""
        cx, cy = self.centroids[:, 0], self.centroids[:, 1]
        sel = (cx >= x0) & (cx < x1) & (cy >= y0) & (cy < y1) & ~self.deleted
        if mask is not None:
            sel &= mask
        return np.flatnonzero(sel)

    def vertices(self, row: int) -> np.ndarray:
        """``(V, 2)`` ``(x, y)`` vertices of a point/polygon (ring open; exterior for others)."""
        g = self.override.get(row)
        if g is not None:
            return _outline(g)
        return self.coords[self.offsets[row] : self.offsets[row + 1]]

    def geometry(self, row: int):
        """The shapely geometry of ``row``."""
        return self.geometries(np.array([row]))[0]

    def geometries(self, rows: np.ndarray) -> np.ndarray:
        """``(len(rows),)`` shapely geometries, built vectorised from the flat arrays."""
        rows = np.asarray(rows, np.int64)
        out = np.empty(len(rows), object)
        base = rows < self.n_base
        starts = np.zeros(len(rows), np.int64)
        counts = np.zeros(len(rows), np.int64)
        starts[base] = self.offsets[rows[base]]
        counts[base] = self.offsets[rows[base] + 1] - starts[base]
        kind = self.kind[rows]
        poly = base & (kind == _POLYGON) & (counts >= 3)
        pt = base & (kind == _POINT) & (counts == 1)
        if poly.any():
            idx = _ranges(starts[poly], counts[poly])
            ring_of = np.repeat(np.arange(int(poly.sum())), counts[poly])
            out[poly] = shapely.polygons(shapely.linearrings(self.coords[idx], indices=ring_of))
        if pt.any():
            out[pt] = shapely.points(self.coords[starts[pt]])
        for j, r in enumerate(rows):
            g = self.override.get(int(r))
            if g is not None:
                out[j] = g
        return out

    def measurement(self, name: str, rows: np.ndarray | None = None) -> np.ndarray:
        """``(len(rows),)`` float64 values of measurement ``name`` (NaN where absent)."""
        col = self.measurements.get(name)
        if col is None:
            return np.full(self.n if rows is None else len(rows), np.nan)
        return col if rows is None else col[rows]

    def feature(self, row: int):
        """Row ``row`` as a :class:`wsi_pipeline.annotations.Feature`."""
        return next(self.to_features(rows=np.array([row])))

    def to_features(self, *, rows: np.ndarray | None = None, chunk: int = 20_000) -> Iterator:
        """Live rows (or ``rows``) as :class:`~wsi_pipeline.annotations.Feature` objects, in row order."""
        from wsi_pipeline.annotations import Feature

        if rows is None:
            rows = np.flatnonzero(self.alive)
        names = list(self.measurements)
        for s in range(0, len(rows), chunk):
            part = rows[s : s + chunk]
            geoms = self.geometries(part)
            values = {k: self.measurements[k][part] for k in names}
            pres = {k: self.present[k][part] for k in names}
            for j, r in enumerate(part.tolist()):
                otype, cname, color = self.categories[self.category[r]]
                meas = {k: float(values[k][j]) for k in names if pres[k][j]}
                meas.update(self.odd_measurements.get(r, {}))
                yield Feature(
                    geometry=geoms[j],
                    object_type=otype,
                    classification=cname,
                    color=color,
                    measurements=meas,
                    id=self.ids[r],
                    name=self.names.get(r),
                    nucleus_geometry=self.nucleus.get(r),
                    is_locked=bool(self.is_locked[r]),
                    extra=dict(self.extra.get(r, {})),
                    foreign=dict(self.foreign.get(r, {})),
                    id_in_properties=r in self.id_in_properties,
                )

    # ---- editing ----------------------------------------------------------------------
    def _grow(self, k: int) -> None:
        n0, n1 = self.n, self.n + k
        for attr in ("ids", "centroids", "kind", "category", "deleted", "review", "is_locked"):
            a = getattr(self, attr)
            b = np.zeros((n1,) + a.shape[1:], a.dtype) if a.dtype != object else np.empty(n1, object)
            b[:n0] = a
            setattr(self, attr, b)
        for k_, col in self.measurements.items():
            self.measurements[k_] = np.concatenate([col, np.full(k, np.nan)])
            self.present[k_] = np.concatenate([self.present[k_], np.zeros(k, bool)])
        self.n = n1

    def _category_of(self, classification: str | None, *, like: int | None = None, object_type: str | None = None) -> int:
        otype = object_type or (self.categories[self.category[like]][0] if like is not None else None)
        if otype is None:
            otype = self.categories[0][0] if self.categories else "detection"
        color = self.class_color(classification)
        if color is None and classification is not None:
            from wsi_pipeline.annotations.colors import class_color

            color = class_color(classification)
        key = (otype, classification, color)
        if key not in self.categories:
            self.categories.append(key)
        return self.categories.index(key)

    def _snapshot(self, row: int) -> dict:
        return self.feature(row).to_geojson()

    def add(self, geometry, *, classification: str | None, object_type: str | None = None, reviewer: str | None = None,
            feature_id: str | None = None) -> int:
        """Append a new feature; returns its row. Marked ``corrected`` by ``reviewer`` when given."""
        from wsi_pipeline.annotations.feature import new_id

        row = self.n
        self._grow(1)
        self.ids[row] = feature_id or new_id()
        self.category[row] = self._category_of(classification, object_type=object_type)
        self.kind[row] = _OTHER
        self.override[row] = geometry
        self.centroids[row] = _centroid(geometry)
        if reviewer is not None:
            self._mark(row, "corrected", reviewer)
        self.changes.append(Change("add", self.ids[row], None, self._snapshot(row)))
        self.version += 1
        return row

    def delete(self, row: int) -> None:
        """Remove ``row`` (tombstone; its row number is not reused)."""
        if self.deleted[row]:
            return
        before = self._snapshot(row)
        self.deleted[row] = True
        self.changes.append(Change("delete", self.ids[row], before, None))
        self.version += 1

    def move(self, row: int, geometry, *, reviewer: str | None = None) -> None:
        """Replace the geometry of ``row`` (moved or reshaped)."""
        before = shapely.geometry.mapping(self.geometry(row))
        self.override[row] = geometry
        self.centroids[row] = _centroid(geometry)
        if reviewer is not None:
            self._mark(row, "corrected", reviewer)
        self.changes.append(Change("move", self.ids[row], {"geometry": before}, {"geometry": shapely.geometry.mapping(geometry)}))
        self.version += 1

    def reclassify(self, row: int, classification: str | None, *, reviewer: str | None = None) -> None:
        """Give ``row`` class ``classification`` (colour: the class's colour)."""
        old = self.categories[self.category[row]][1]
        if old == classification:
            return
        self.category[row] = self._category_of(classification, like=row)
        if reviewer is not None:
            self._mark(row, "corrected", reviewer)
        self.changes.append(Change("reclassify", self.ids[row], {"classification": old}, {"classification": classification}))
        self.version += 1

    def set_review(self, row: int, status: str, *, reviewer: str) -> None:
        """Set the review status (one of :data:`REVIEW_STATES`) with reviewer and time."""
        if status not in REVIEW_STATES:
            raise ValueError(f"review status must be one of {REVIEW_STATES}, not {status!r}")
        keys = ("reviewStatus", "reviewer", "reviewedAt")
        before = {k: self.extra.get(row, {}).get(k) for k in keys}
        self._mark(row, status, reviewer)
        after = {k: self.extra[row].get(k) for k in keys}
        self.changes.append(Change("review", self.ids[row], before, after))
        self.version += 1

    def _mark(self, row: int, status: str, reviewer: str) -> None:
        extra = self.extra.setdefault(row, {})
        extra["reviewStatus"] = status
        extra["reviewer"] = reviewer
        extra["reviewedAt"] = now_iso()
        self.review[row] = REVIEW_STATES.index(status)

    def take_changes(self) -> list[Change]:
        """The edits since the last call (what the audit log should record), clearing them."""
        out, self.changes = self.changes, []
        return out


def _review_code(value: Any) -> int:
    return REVIEW_STATES.index(value) if value in REVIEW_STATES else 0


def _centroid(g) -> tuple[float, float]:
    if g is None or g.is_empty:
        return (math.nan, math.nan)
    if g.geom_type == "Polygon":
        xy = np.asarray(g.exterior.coords)[:-1]
        return tuple(xy.mean(axis=0)) if len(xy) else (math.nan, math.nan)
    c = g.centroid
    return (c.x, c.y)


def _outline(g) -> np.ndarray:
    """``(V, 2)`` vertices of a geometry's main outline (rings open)."""
    if g.geom_type == "Point":
        return np.array([[g.x, g.y]])
    if g.geom_type == "Polygon":
        return np.asarray(g.exterior.coords)[:-1]
    if g.geom_type in ("MultiPolygon", "GeometryCollection", "MultiLineString", "MultiPoint"):
        parts = [p for p in g.geoms if not p.is_empty]
        if not parts:
            return np.zeros((0, 2))
        return _outline(max(parts, key=lambda p: (p.area, p.length)))
    return np.asarray(g.coords)
