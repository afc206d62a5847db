"""Fast reading of files in the writer's layout: one compact feature per line.

:class:`~wsi_pipeline.annotations.write.GeoJSONWriter` writes::

    {"type":"FeatureCollection",...,"features":[
    {"type":"Feature","id":"...","geometry":{"type":"Polygon","coordinates":[[[x,y],...]]},...},
    ...
    ]}

For such files the geometry texts of a block of lines are cut out by one regular
expression (a geometry object written by GEOS holds no nested ``{``), the rest of the
block (ids, properties) is parsed by one orjson call, and all Polygon/MultiPolygon
coordinates of a chunk are parsed in one call of Arrow's CSV number parser, their
ring/polygon structure is read from the runs of closing brackets with numpy (checking that
every position is two numbers), and they are built with
:func:`shapely.from_ragged_array`. This avoids creating a Python object per coordinate
(the cost of any ``json.loads``) and any per-geometry Python work. Lines that do not match
the expected shape, and blocks whose cut-out coordinates hold anything but numbers,
brackets and commas, are parsed the ordinary way, so correctness never depends on it.
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
from wsi_pipeline.annotations.repair import star_simple_rings

HEAD = b'{"type":"FeatureCollection"'
FEATURES_OPEN = b'"features":['
_CSV_READ = pacsv.ReadOptions(column_names=["v"], block_size=1 << 24)
_CSV_CONVERT = pacsv.ConvertOptions(column_types={"v": pa.float64()})
#: brackets and commas -> newlines: one number per CSV row (empty rows are skipped)
_TO_ROWS = bytes.maketrans(b"[],", b"\n\n\n")
_NUMBER_TEXT = b"0123456789.-+eE,[]"


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
# The coordinates are cut as "anything up to the next }" (twice as fast as a class of number
# characters in Python's regex engine); parse_block then checks, for the whole block in one
# call, that what was cut holds only number characters, brackets and commas: then no string
# or nested object can have hidden a "}", and the cut is exactly the coordinates value.
_GEOM = rb'\{"type":"([A-Za-z]+)","coordinates":([^}]*)\}'
_LINE_RE = re.compile(
    rb'(\n\{"type":"Feature","id":"[^"\\{}]*"),"geometry":' + _GEOM + rb'(?:,"nucleusGeometry":' + _GEOM + rb")?"
)
_NGROUPS = 5

#: a geometry as cut from the text: (type name, coordinates text); or a parsed dict; or None
GeomText = tuple[bytes, bytes] | dict | None


_DIGITS_TO_0 = bytes.maketrans(b"123456789", b"000000000")


def may_hold_big_int(data: bytes) -> bool:
    """True when ``data`` has a run of 19+ digits: maybe an integer beyond int64/uint64, which
    orjson would turn into a float (-(2**63) - 1 has 19 digits). Float reprs have <= 17."""
    return b"0" * 19 in data.translate(_DIGITS_TO_0)


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
    cut = b"".join(pieces[3::k]) + b"".join(filter(None, pieces[5::k]))
    if cut.translate(None, _NUMBER_TEXT):  # something else hides in a geometry: no cutting
        return _parse_whole(block)
    between, prefix = pieces[0::k], pieces[1::k]
    parts = [b"["]
    parts.extend(itertools.chain.from_iterable(zip(between, prefix)))
    parts.append(_without_last_comma(between[-1]))
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


def _without_last_comma(line: bytes) -> bytes:
    tail = line.rstrip()
    return tail[:-1] if tail.endswith(b",") else tail


def _parse_whole(block: bytes) -> tuple[list[dict], list[GeomText], list[GeomText]]:
    """A block parsed the ordinary way: one orjson call, geometries as dicts."""
    lines = block.rstrip()
    dicts = loads_exact(b"[" + _without_last_comma(lines) + b"]")
    if not all(isinstance(d, dict) and "geometry" in d for d in dicts):
        raise ValueError("a feature has no 'geometry' member")
    return dicts, [d.pop("geometry") for d in dicts], [d.pop("nucleusGeometry", None) for d in dicts]


def _parse_numbers(blob: bytes) -> np.ndarray:
    """Joined coordinate texts -> (V,) float64: every number, in order (Arrow's CSV reader)."""
    table = pacsv.read_csv(io.BytesIO(blob.translate(_TO_ROWS)), read_options=_CSV_READ, convert_options=_CSV_CONVERT)
    col = table.column(0)
    if col.null_count:
        raise ValueError("empty number")
    parts = [_float64_view(c) for c in col.chunks]
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _float64_view(arr: pa.Array) -> np.ndarray:
    """A null-free float64 Arrow array as numpy, read from its data buffer (pyarrow's own
    ``to_numpy`` imports pandas on first use: more than a second)."""
    if len(arr) == 0:
        return np.empty(0, dtype=np.float64)
    return np.frombuffer(arr.buffers()[1], dtype=np.float64, count=len(arr), offset=arr.offset * 8)


def _structure(blob: bytes, depth: int) -> list[np.ndarray] | None:
    """Offsets of the nested arrays in joined coordinate texts, read from the closing brackets.

    Each run of ``]`` ends one position; a run of 2 also ends a ring, 3 a polygon, 4 a
    multipolygon. Returns ``depth - 1`` offset arrays, innermost (positions per ring)
    first, or ``None`` when the brackets do not have that shape or a position does not
    hold exactly one comma of its own (not ``[x, y]``).
    """
    u = np.frombuffer(blob, dtype=np.uint8)
    closes = np.flatnonzero(u == 0x5D)
    if closes.size == 0 or blob.count(b"[") != closes.size:
        return None
    first = np.ones(closes.size, dtype=bool)
    np.not_equal(closes[1:] - closes[:-1], 1, out=first[1:])
    starts = np.flatnonzero(first)
    run = np.diff(starts, append=closes.size)  # (P,) brackets closed after each position
    if run.max() > depth:
        return None
    pos_end = closes[starts]  # (P,) the "]" ending each position
    commas = np.flatnonzero(u == 0x2C)
    own = commas[u[commas - 1] != 0x5D]  # commas not right after a "]": inside a position
    if own.size != pos_end.size or (own > pos_end).any() or (own[1:] < pos_end[:-1]).any():
        return None
    ends = [np.flatnonzero(run >= level) for level in range(2, depth + 1)]  # rings, polys, ...
    out = [np.concatenate(([0], ends[0] + 1))]
    for inner, outer in zip(ends[:-1], ends[1:]):
        out.append(np.concatenate(([0], np.searchsorted(inner, outer) + 1)))
    return out


def _build_polygonal(kind: bytes, texts: list[bytes]) -> tuple[np.ndarray, np.ndarray] | None:
    """Polygon / MultiPolygon coordinate texts -> (shapely array, (N,) bool known valid:
    one-ring polygons whose ring is star-simple), or ``None`` if odd."""
    blob = b",".join(texts)
    offs = _structure(blob, 3 if kind == b"Polygon" else 4)
    if offs is None or offs[-1].size != len(texts) + 1:
        return None
    flat = _parse_numbers(blob)
    ring_off = offs[0]
    if flat.size != 2 * ring_off[-1]:
        return None
    xy = flat.reshape(-1, 2)
    if (np.diff(ring_off) < 4).any() or not (xy[ring_off[:-1]] == xy[ring_off[1:] - 1]).all():
        return None
    if kind == b"Polygon":
        geoms = shapely.from_ragged_array(GeometryType.POLYGON, xy, tuple(offs))
        one_ring = np.diff(offs[1]) == 1
        known = np.zeros(len(geoms), dtype=bool)
        known[one_ring] = star_simple_rings(xy, ring_off)[offs[1][:-1][one_ring]]
        return geoms, known
    return shapely.from_ragged_array(GeometryType.MULTIPOLYGON, xy, tuple(offs)), np.zeros(len(texts), dtype=bool)


def _as_dict(g: GeomText) -> dict | None:
    if isinstance(g, tuple):
        return orjson.loads(b'{"type":"' + g[0] + b'","coordinates":' + g[1] + b"}")
    return g


def geometries_from_texts(items: list[GeomText]) -> tuple[np.ndarray, int, np.ndarray]:
    """Geometries as cut by :func:`parse_block` -> ((N,) shapely array, n_fixed, (N,) bool
    known valid without asking GEOS)."""
    out = np.empty(len(items), dtype=object)
    known = np.zeros(len(items), dtype=bool)
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
        if built is not None and len(built[0]) == len(idx):
            out[idx], known[idx] = built
            continue
        geoms, f = geometries_from_dicts([_as_dict(items[i]) for i in idx])
        out[idx] = geoms
        fixed += f
    return out, fixed, known
