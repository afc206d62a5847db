"""Reading QuPath-dialect GeoJSON (>= 0.4, and the 0.2/0.3 exports) into :class:`Annotations`.

Accepted top levels: a FeatureCollection, a bare list of features (old QuPath), or a single
Feature. ``.gz`` files are decompressed. Geometries are built in bulk, validated, and
invalid ones repaired (counted in :attr:`Annotations.repaired` and logged), never dropped.

Files in the writer's one-feature-per-line layout are streamed in blocks (see
:mod:`~wsi_pipeline.annotations.fastpath`); a worker thread builds and validates one block's
geometries while this thread parses the next block and makes the previous block's features.
"""

from __future__ import annotations

import gzip
import itertools
import json
import os
import queue
import threading
import zlib
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from tiling.errors import InputError
from wsi_pipeline.annotations import fastpath
from wsi_pipeline.annotations._gc import paused_gc, promote_young_objects
from wsi_pipeline.annotations.feature import Feature, feature_from_parts
from wsi_pipeline.annotations.geometry import geometries_from_dicts
from wsi_pipeline.annotations.repair import log_repaired, repair_geometries


@dataclass
class Annotations:
    """What :func:`read_geojson` returns.

    features : the features in file order.
    properties : FeatureCollection-level ``properties`` (``{}`` when absent), e.g. the
        slide's ``openslide.bounds-x`` / ``openslide.bounds-y`` offsets.
    repaired : number of invalid geometries repaired while reading.
    """

    features: list[Feature] = field(default_factory=list)
    properties: dict[str, Any] = field(default_factory=dict)
    repaired: int = 0

    def __len__(self) -> int:
        return len(self.features)

    def __iter__(self) -> Iterator[Feature]:
        return iter(self.features)

    def geometries(self) -> np.ndarray:
        """(N,) object array of the features' shapely geometries."""
        out = np.empty(len(self.features), dtype=object)
        out[:] = [f.geometry for f in self.features]
        return out

    def by_class(self, name: str | None) -> list[Feature]:
        """Features whose classification is ``name``."""
        return [f for f in self.features if f.classification == name]

    def classes(self) -> dict[str | None, int]:
        """Classification name -> count."""
        out: dict[str | None, int] = {}
        for f in self.features:
            out[f.classification] = out.get(f.classification, 0) + 1
        return out


def _open(path: Path):
    """Binary file object, transparently gunzipped (by magic bytes, not by name)."""
    try:
        fh = open(path, "rb")
    except FileNotFoundError:
        raise InputError(path, "file not found") from None
    except IsADirectoryError:
        raise InputError(path, "is a folder, not a GeoJSON file") from None
    except OSError as e:
        raise InputError(path, f"cannot read: {e.strerror or e}") from None
    with fh:
        gz = fh.peek(2)[:2] == b"\x1f\x8b"
    return gzip.open(path, "rb") if gz else open(path, "rb")


_READ_ERRORS = (OSError, EOFError, zlib.error)


class _Prefetch:
    """Reads ``block_size`` blocks of ``fh`` in a background thread (gunzip releases the
    GIL, so decompression overlaps parsing). Errors are re-raised by :meth:`read`."""

    def __init__(self, fh, block_size: int) -> None:
        self._fh, self._size = fh, block_size
        self._q: queue.Queue = queue.Queue(maxsize=2)
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                data = self._fh.read(self._size)
                self._q.put(data)
                if not data:
                    return
        except BaseException as e:  # handed to the consumer
            self._q.put(e)

    def read(self, _size: int = -1) -> bytes:
        item = self._q.get()
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self) -> None:
        self._stop.set()
        while self._t.is_alive():  # unblock a producer waiting on a full queue
            try:
                self._q.get(timeout=0.05)
            except queue.Empty:
                pass
        self._fh.close()


def _parse(path: Path, data: bytes) -> Any:
    try:
        if not fastpath.may_hold_big_int(data):
            return orjson.loads(data)
    except orjson.JSONDecodeError:
        pass
    try:  # Python's json also accepts NaN / Infinity, which some exporters write
        return json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(path, f"not valid JSON ({e})") from None


def _features_of(path: Path, doc: Any) -> tuple[list[dict], dict]:
    if isinstance(doc, list):
        return doc, {}
    if not isinstance(doc, dict):
        raise InputError(path, f"expected a GeoJSON FeatureCollection, got a JSON {type(doc).__name__}")
    kind = doc.get("type")
    if kind == "FeatureCollection" or (kind is None and isinstance(doc.get("features"), list)):
        feats = doc.get("features")
        if not isinstance(feats, list):
            raise InputError(path, "FeatureCollection has no 'features' list")
        return feats, dict(doc.get("properties") or {})
    if kind == "Feature":
        return [doc], {}
    raise InputError(path, f"expected a GeoJSON FeatureCollection or Feature, got type {kind!r}")


def _geometries(gitems: list, nitems: list, build) -> tuple[np.ndarray, dict[int, Any], int]:
    """Geometries and nucleus geometries (in any form ``build`` takes) -> (geometries,
    {feature index: nucleus geometry}, n_repaired). Mostly GIL-free (Arrow, numpy, GEOS)."""
    geoms, repaired, known = build(gitems)
    geoms, n = repair_geometries(geoms, known_valid=known)
    repaired += n
    nuc_idx = [i for i, t in enumerate(nitems) if t is not None]
    nuclei = {}
    if nuc_idx:
        ng, n1, nknown = build([nitems[i] for i in nuc_idx])
        ng, n2 = repair_geometries(ng, known_valid=nknown)
        repaired += n1 + n2
        nuclei = dict(zip(nuc_idx, ng))
    return geoms, nuclei, repaired


def _unchecked(build):
    """A geometry builder that knows nothing about validity: (geoms, n_fixed, None)."""
    return lambda items: (*build(items), None)


def _features(dicts: list[dict], geoms: np.ndarray, nuclei: dict[int, Any]) -> list[Feature]:
    if nuclei:
        return [feature_from_parts(d, g, nuclei.get(i)) for i, (d, g) in enumerate(zip(dicts, geoms))]
    return list(map(feature_from_parts, dicts, geoms, itertools.repeat(None)))


def features_from_dicts(dicts: list[dict]) -> tuple[list[Feature], int]:
    """Parsed feature ``dict`` s -> (features, number of geometries repaired)."""
    for i, d in enumerate(dicts):
        if not isinstance(d, dict) or "geometry" not in d:
            raise ValueError(f"feature {i} is not a GeoJSON Feature (no 'geometry')")
    gitems = [d["geometry"] for d in dicts]
    nitems = [d.get("nucleusGeometry") for d in dicts]
    geoms, nuclei, repaired = _geometries(gitems, nitems, _unchecked(geometries_from_dicts))
    return _features(dicts, geoms, nuclei), repaired


def _strip_closing(block: bytes) -> tuple[bytes, bool]:
    """Remove the document's closing line ``]}`` if it ends ``block``."""
    body = block.rstrip()
    i = body.rfind(b"\n")
    if body[i + 1:] == b"]}":
        return body[: max(i, 0)], True
    return block, False


def _blocks(path: Path, fh, block_size: int) -> Iterator[bytes]:
    """Blocks of whole feature lines of a file in the writer's layout (closing line removed)."""
    carry = b""
    closed = False
    while True:
        data = fh.read(block_size)
        if not data:
            break
        data = carry + data
        cut = data.rfind(b"\n")
        if cut < 0:
            carry = data
            continue
        block, carry = data[:cut], data[cut + 1:]
        if closed and block.strip():
            raise InputError(path, "data after the end of the FeatureCollection")
        block, closed = _strip_closing(block)
        if block.strip():
            yield block
    if carry.strip():
        if closed:
            raise InputError(path, "data after the end of the FeatureCollection")
        block, closed = _strip_closing(carry)
        if block.strip():
            yield block
    if not closed:
        raise InputError(path, "truncated file (no closing ']}')")


_BAD_FEATURE = (ValueError, TypeError, KeyError, IndexError, AttributeError)


def _guarded(path: Path, fn, *args):
    """``fn(*args)`` with JSON / feature errors turned into :class:`InputError` naming ``path``."""
    try:
        return fn(*args)
    except json.JSONDecodeError as e:  # orjson's is a subclass
        raise InputError(path, f"not valid JSON ({e})") from None
    except _BAD_FEATURE as e:
        raise InputError(path, f"bad GeoJSON feature: {e}") from None


def _chunks(path: Path, fh, block_size: int) -> Iterator[tuple[list[Feature], int]]:
    """Features of a file in the writer's line layout, one block of whole lines at a time.

    Pipelined over two threads: while a worker builds, validates and repairs the
    geometries of block k (Arrow, numpy and GEOS release the GIL), this thread reads and
    parses block k+1 and then makes block k's :class:`Feature` objects.
    """
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="geojson-geometry") as pool:
        pending = None
        for block in _blocks(path, fh, block_size):
            with paused_gc():
                dicts, gitems, nitems = _guarded(path, fastpath.parse_block, block)
            del block
            job = pool.submit(_guarded, path, _geometries, gitems, nitems, fastpath.geometries_from_texts)
            if pending is not None:
                yield _finish(*pending)
            pending = (dicts, job)
        if pending is not None:
            yield _finish(*pending)


def _finish(dicts: list[dict], job: Future) -> tuple[list[Feature], int]:
    geoms, nuclei, repaired = job.result()
    with paused_gc():
        return _features(dicts, geoms, nuclei), repaired


def iter_chunks(path: str | os.PathLike, *, block_size: int = 8 << 20) -> tuple[dict, Iterator[tuple[list[Feature], int]]]:
    """(collection properties, iterator of (features, n_repaired) chunks).

    Files in the writer's one-feature-per-line layout are streamed ``block_size``
    (decompressed) bytes at a time; any other file is parsed whole and comes as one chunk.
    """
    path = Path(path)
    fh = _open(path)
    try:
        first = fh.readline()
    except _READ_ERRORS as e:
        fh.close()
        raise InputError(path, f"cannot read (corrupt gzip?): {e}") from None
    if fastpath.is_line_layout(first):
        try:
            props = fastpath.header_properties(first)
        except orjson.JSONDecodeError as e:
            fh.close()
            raise InputError(path, f"not valid JSON ({e})") from None

        def gen():
            src = _Prefetch(fh, block_size) if isinstance(fh, gzip.GzipFile) else fh
            try:
                yield from _chunks(path, src, block_size)
            except _READ_ERRORS as e:
                raise InputError(path, f"cannot read (corrupt gzip?): {e}") from None
            finally:
                src.close()

        return props, gen()
    with fh:
        try:
            data = first + fh.read()
        except _READ_ERRORS as e:
            raise InputError(path, f"cannot read (corrupt gzip?): {e}") from None
    with paused_gc():
        doc = _parse(path, data)
    del data
    dicts, props = _features_of(path, doc)
    with paused_gc():
        chunk = _guarded(path, features_from_dicts, dicts)
    return props, iter([chunk])


def iter_geojson(path: str | os.PathLike, *, block_size: int = 8 << 20) -> Iterator[Feature]:
    """Features one by one, streaming where the file's layout allows (see :func:`iter_chunks`)."""
    _, chunks = iter_chunks(path, block_size=block_size)
    for feats, _ in chunks:
        yield from feats


def read_geojson(path: str | os.PathLike) -> Annotations:
    """Read a GeoJSON file (gzipped or not) of any QuPath dialect.

    Raises :class:`tiling.errors.InputError` naming the file for unreadable, non-JSON or
    non-GeoJSON input.
    """
    path = Path(path)
    props, chunks = iter_chunks(path)
    feats: list[Feature] = []
    repaired = 0
    with paused_gc():  # everything read is kept: nothing for the cyclic GC to find
        for part, n in chunks:
            feats.extend(part)
            repaired += n
        promote_young_objects()
    log_repaired(repaired, where=str(path))
    return Annotations(features=feats, properties=props, repaired=repaired)
