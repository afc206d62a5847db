"""Fast reading of files in the writer's layout: one compact feature per line.

:class:`~wsi_pipeline.annotations.write.GeoJSONWriter` writes::

    {"type":"FeatureCollection",...,"features":[
    {"type":"Feature","id":"...","geometry":{"type":"Polygon","coordinates":[[[x,y],...]]},...},
    ...
    ]}

For such files the geometry text of each line is cut out by position (a geometry object
written by GEOS holds no nested ``{``), the rest of the line (id, properties) is parsed by
orjson, and all Polygon/MultiPolygon coordinates of a chunk are parsed in one call of
Arrow's CSV number parser, then built with :func:`shapely.from_ragged_array`. This avoids
creating a Python object per coordinate (the cost of any ``json.loads``). Lines that do not
match the expected shape are parsed the ordinary way, so correctness never depends on it.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.csv as pacsv
import shapely
from shapely import GeometryType

from wsi_pipeline.annotations.geometry import geometries_from_dicts

HEAD = b'{"type":"FeatureCollection"'
FEATURES_OPEN = b'"features":['
_GEOM_KEY = b',"geometry":{'
_NUC_KEY = b',"nucleusGeometry":{'
_FEATURE_PREFIX = b'{"type":"Feature","id":'
_CSV_READ = pacsv.ReadOptions(column_names=["v"], block_size=1 << 24)
_CSV_CONVERT = pacsv.ConvertOptions(column_types={"v": pa.float64()})


def is_line_layout(first_line: bytes) -> bool:
    """Whether a file's first line is the writer's header line."""
    line = first_line.rstrip(b"\r\n")
    return line.startswith(HEAD) and line.endswith(FEATURES_OPEN)


def header_properties(first_line: bytes) -> dict[str, Any]:
    """FeatureCollection ``properties`` from the header line."""
    doc = orjson.loads(first_line.rstrip(b"\r\n") + b"]}")
    return dict(doc.get("properties") or {})


def _cut(line: bytes, key: bytes) -> tuple[bytes, bytes | None]:
    """Remove member ``key`` (an object without nested objects) -> (rest, object text)."""
    i = line.find(key)
    if i < 0:
        return line, None
    start = i + len(key) - 1
    j = line.find(b"}", start)
    if j < 0:
        return line, None
    return line[:i] + line[j + 1:], line[start:j + 1]


def split_line(line: bytes) -> tuple[dict, bytes | None, bytes | None]:
    """One feature line -> (feature dict without geometries, geometry text, nucleus text).

    When the line is not in the writer's exact shape the full dict is returned with the
    geometry members still inside and both texts ``None``.
    """
    if line.endswith(b","):
        line = line[:-1]
    i = line.find(_GEOM_KEY)
    if i < 0 or not line.startswith(_FEATURE_PREFIX) or b"{" in line[1:i]:
        return orjson.loads(line), None, None
    rest, geom = _cut(line, _GEOM_KEY)
    rest, nucleus = _cut(rest, _NUC_KEY)
    d = orjson.loads(rest)
    if "geometry" in d or "nucleusGeometry" in d:  # odd shape: parse the whole line
        return orjson.loads(line), None, None
    return d, geom, nucleus


def _coords_text(geom: bytes) -> tuple[bytes, bytes]:
    """GEOS geometry text -> (type name, coordinates text)."""
    if not geom.startswith(b'{"type":"'):
        return b"", b""
    t_end = geom.find(b'"', 9)
    c = geom.find(b'"coordinates":', t_end)
    if c < 0:
        return b"", b""
    return geom[9:t_end], geom[c + 14:-1]


def _parse_numbers(texts: list[bytes]) -> np.ndarray:
    blob = b",".join(texts).translate(None, b"[]").replace(b",", b"\n")
    table = pacsv.read_csv(io.BytesIO(blob), read_options=_CSV_READ, convert_options=_CSV_CONVERT)
    return table.column(0).to_numpy()


def _polygon_rings(text: bytes, ring_lens: list[int]) -> int:
    """Append the position counts of one Polygon's rings; return the ring count."""
    if text.find(b"]],[[") < 0:
        ring_lens.append(text.count(b"],[") + 1)
        return 1
    parts = text.split(b"]],[[")
    ring_lens.extend(p.count(b"],[") + 1 for p in parts)
    return len(parts)


def _offsets(lengths: list[int]) -> np.ndarray:
    out = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=out[1:])
    return out


def _build_polygonal(kind: bytes, texts: list[bytes]) -> np.ndarray | None:
    """Polygon / MultiPolygon coordinate texts -> shapely array, or ``None`` if odd."""
    ring_lens: list[int] = []
    poly_rings: list[int] = []
    multi_polys: list[int] = []
    for t in texts:
        if len(t) < 9 or b"[]" in t:
            return None
        if kind == b"Polygon":
            poly_rings.append(_polygon_rings(t, ring_lens))
        else:
            polys = t.split(b"]]],[[[")
            multi_polys.append(len(polys))
            for p in polys:
                poly_rings.append(_polygon_rings(p, ring_lens))
    flat = _parse_numbers(texts)
    ring_off = _offsets(ring_lens)
    if flat.size != 2 * ring_off[-1] or min(ring_lens) < 4:
        return None
    xy = flat.reshape(-1, 2)
    if not (xy[ring_off[:-1]] == xy[ring_off[1:] - 1]).all():
        return None
    if kind == b"Polygon":
        return shapely.from_ragged_array(GeometryType.POLYGON, xy, (ring_off, _offsets(poly_rings)))
    offs = (ring_off, _offsets(poly_rings), _offsets(multi_polys))
    return shapely.from_ragged_array(GeometryType.MULTIPOLYGON, xy, offs)


def geometries_from_texts(texts: list[bytes | None]) -> tuple[np.ndarray, int]:
    """GEOS-written geometry texts (``None`` allowed) -> ((N,) shapely array, n_fixed)."""
    out = np.empty(len(texts), dtype=object)
    groups: dict[bytes, tuple[list[int], list[bytes]]] = {}
    for i, t in enumerate(texts):
        if t is None:
            continue
        kind, coords = _coords_text(t)
        idx, ct = groups.setdefault(kind if kind in (b"Polygon", b"MultiPolygon") else b"", ([], []))
        idx.append(i)
        ct.append(coords)
    fixed = 0
    for kind, (idx, ct) in groups.items():
        built = None
        if kind:
            try:
                built = _build_polygonal(kind, ct)
            except (ValueError, pa.ArrowInvalid, shapely.errors.GEOSException):
                built = None
        if built is not None and len(built) == len(idx):
            out[idx] = built
            continue
        geoms, f = geometries_from_dicts([orjson.loads(texts[i]) for i in idx])
        out[idx] = geoms
        fixed += f
    return out, fixed
