"""Fast reading of files in the writer's layout: one compact feature per line.

:class:`~wsi_pipeline.annotations.write.GeoJSONWriter` writes::

    {"type":"FeatureCollection",...,"features":[
    {"type":"Feature","id":"...","geometry":{"type":"Polygon","coordinates":[[[x,y],...]]},...},
    ...
    ]}

For such files the geometry texts of a block of lines are cut out by one regular
expression (a geometry object written by GEOS holds no nested ``{``), the rest of the
block (ids, properties) is parsed by one orjson call, and all Polygon/MultiPolygon coordinates of a chunk are parsed in one call of
Arrow's CSV number parser, then built with :func:`shapely.from_ragged_array`. This avoids
creating a Python object per coordinate (the cost of any ``json.loads``). Lines that do not
match the expected shape are parsed the ordinary way, so correctness never depends on it.
"""

from __future__ import annotations

import io
import json
import itertools
import re
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


# A line as the writer puts it: the id (a plain string), then the geometry, then maybe the
# nucleus geometry, each a GEOS-written {"type":..,"coordinates":..} object. The leading
# newline anchors it at a line start and gives the regex engine a literal prefix to search.
_GEOM = rb'\{"type":"([A-Za-z]+)","coordinates":([-+0-9.eE,\[\]]*)\}'
_LINE_RE = re.compile(
    rb'(\n\{"type":"Feature","id":"[^"\\{}]*"),"geometry":' + _GEOM + rb'(?:,"nucleusGeometry":' + _GEOM + rb")?"
)
_NGROUPS = 5

#: a geometry as cut from the text: (type name, coordinates text); or a parsed dict; or None
GeomText = tuple[bytes, bytes] | dict | None


_DIGITS_TO_0 = bytes.maketrans(b"123456789", b"000000000")


def may_hold_big_int(data: bytes) -> bool:
    """True when ``data`` has a run of 20+ digits: an integer orjson would turn into a float."""
    return b"0" * 20 in data.translate(_DIGITS_TO_0)


def loads_exact(data: bytes):
    """orjson, except where integers beyond 64 bits would lose digits (then Python's json)."""
    if may_hold_big_int(data):
        return json.loads(data)
    return orjson.loads(data)


def parse_block(block: bytes) -> tuple[list[dict], list[GeomText], list[GeomText]]:
    """Complete feature lines (each ending in ``,`` but maybe the last) -> (feature dicts
    without geometry, geometry per feature, nucleus geometry per feature).

    Geometries of lines in the writer's shape come as ``(type, coordinates text)`` (cut out
    by one regex split of the block; the rest is parsed by one orjson call); those of other
    lines come as parsed dicts (or ``None``).
    """
    pieces = _LINE_RE.split(b"\n" + block)
    k = _NGROUPS + 1
    between, prefix = pieces[0::k], pieces[1::k]
    parts = [b"["]
    parts.extend(itertools.chain.from_iterable(zip(between, prefix)))
    tail = between[-1].rstrip()
    parts.append(tail[:-1] if tail.endswith(b",") else tail)
    parts.append(b"]")
    dicts = loads_exact(b"".join(parts))
    found_g = list(zip(pieces[2::k], pieces[3::k]))
    found_n = list(zip(pieces[4::k], pieces[5::k]))
    n_plain = sum("geometry" not in d for d in dicts)
    if n_plain != len(found_g):
        raise ValueError("a feature has no 'geometry' member")
    if n_plain == len(dicts):  # every line in the writer's shape
        return dicts, found_g, [None if t is None else (t, c) for t, c in found_n]
    geoms: list[GeomText] = []
    nuclei: list[GeomText] = []
    it = iter(range(len(found_g)))
    for d in dicts:
        if "geometry" in d:  # a line in another shape: parsed whole
            geoms.append(d.pop("geometry"))
            nuclei.append(d.pop("nucleusGeometry", None))
        else:
            j = next(it)
            geoms.append(found_g[j])
            nuclei.append(None if found_n[j][0] is None else found_n[j])
    return dicts, geoms, nuclei


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


def _as_dict(g: GeomText) -> dict | None:
    if isinstance(g, tuple):
        return orjson.loads(b'{"type":"' + g[0] + b'","coordinates":' + g[1] + b"}")
    return g


def geometries_from_texts(items: list[GeomText]) -> tuple[np.ndarray, int]:
    """Geometries as cut by :func:`parse_block` -> ((N,) shapely array, n_fixed)."""
    out = np.empty(len(items), dtype=object)
    groups: dict[bytes, tuple[list[int], list[bytes]]] = {}
    kinds = {g[0] if isinstance(g, tuple) else b"" for g in items}
    if len(kinds) == 1 and kinds <= {b"Polygon", b"MultiPolygon"}:  # the usual case
        groups[kinds.pop()] = (list(range(len(items))), [g[1] for g in items])
    else:
        for i, g in enumerate(items):
            if g is None:
                continue
            kind = g[0] if isinstance(g, tuple) and g[0] in (b"Polygon", b"MultiPolygon") else b""
            idx, ct = groups.setdefault(kind, ([], []))
            idx.append(i)
            ct.append(g[1] if kind else b"")
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
        geoms, f = geometries_from_dicts([_as_dict(items[i]) for i in idx])
        out[idx] = geoms
        fixed += f
    return out, fixed
