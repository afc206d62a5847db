"""Streaming, atomic writer of QuPath-dialect GeoJSON FeatureCollections.

Layout written (one feature per line, so files we wrote can also be read as a stream)::

    {"type":"FeatureCollection","properties":{...},"features":[
    {"type":"Feature","id":"<uuid>","geometry":{...},"properties":{...}},
    ...
    ]}

Features are buffered in chunks; each chunk's geometries are validated, repaired and
serialised in one vectorised call (:func:`shapely.to_geojson`), properties with orjson.
The file is written under a temporary name in the same folder and renamed on success;
on any error the temporary file is removed and nothing is left behind. A path ending in
``.gz`` is gzip-compressed (compression runs in a background thread).
"""

from __future__ import annotations

import gzip
import json
import os
import queue
import tempfile
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import shapely

from tiling.errors import InputError
from wsi_pipeline.atomic import default_file_mode
from wsi_pipeline.annotations._gc import paused_gc
from wsi_pipeline.annotations.feature import Feature
from wsi_pipeline.annotations.repair import log_repaired, repair_geometries

_OPTS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


def _dumps(obj: Any) -> bytes:
    try:
        return orjson.dumps(obj, option=_OPTS)
    except orjson.JSONEncodeError:  # e.g. integers beyond 64 bits in pass-through properties
        return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False, default=_json_default).encode()


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"cannot write {type(obj).__name__} to GeoJSON")


class _GzipThread:
    """File-like sink compressing in a background thread (zlib releases the GIL)."""

    def __init__(self, raw, *, compresslevel: int) -> None:
        self._gz = gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=compresslevel, mtime=0)
        self._q: queue.Queue = queue.Queue(maxsize=8)
        self._error: BaseException | None = None
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        while True:
            item = self._q.get()
            if item is None:
                return
            if self._error is None:
                try:
                    self._gz.write(item)
                except BaseException as e:  # re-raised in the writer thread
                    self._error = e

    def write(self, data: bytes) -> None:
        if self._error is not None:
            raise self._error
        self._q.put(data)

    def close(self) -> None:
        self._q.put(None)
        self._t.join()
        if self._error is not None:
            raise self._error
        self._gz.close()


class GeoJSONWriter:
    """Context manager writing features to ``path`` as they come.

    >>> with GeoJSONWriter("nuclei.geojson.gz", properties={"openslide.bounds-x": 0}) as w:
    ...     w.write_many(features)

    properties : FeatureCollection-level properties (e.g. the slide's bounds offsets).
    decimals : round coordinates to this many decimals (``None``: exact, the default;
        2 is 0.01 level-0 pixel and makes large files about half the size).
    repair : repair invalid geometry (counted in :attr:`repaired`, logged) before writing.
    chunk_size : features serialised per vectorised batch.
    compresslevel : gzip level for ``.gz`` paths (1 = fast; 6 = smaller, slower).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        properties: dict[str, Any] | None = None,
        decimals: int | None = None,
        repair: bool = True,
        chunk_size: int = 20_000,
        compresslevel: int = 1,
    ) -> None:
        self.path = Path(path)
        self.properties = dict(properties or {})
        self.decimals = decimals
        self.repair = repair
        self.chunk_size = int(chunk_size)
        self.compresslevel = int(compresslevel)
        self.count = 0
        self.repaired = 0
        self._buf: list[Feature] = []
        self._tmp: Path | None = None
        self._raw = None
        self._sink = None

    # ---- context management -------------------------------------------------------
    def __enter__(self) -> "GeoJSONWriter":
        self.open()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def open(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
            os.fchmod(fd, default_file_mode())  # mkstemp makes 0600; outputs get the usual mode
        except OSError as e:
            raise InputError(self.path, f"cannot write here: {e.strerror or e}") from None
        self._tmp = Path(tmp)
        self._raw = os.fdopen(fd, "wb", buffering=1 << 20)
        if self.path.name.endswith(".gz"):
            self._sink = _GzipThread(self._raw, compresslevel=self.compresslevel)
        else:
            self._sink = self._raw
        head = b'{"type":"FeatureCollection",'
        if self.properties:
            head += b'"properties":' + _dumps(self.properties) + b","
        self._sink.write(head + b'"features":[')

    def close(self) -> None:
        """Flush, finish the document and rename the temporary file to :attr:`path`."""
        try:
            self._flush()
            self._sink.write(b"\n]}\n")
            if self._sink is not self._raw:
                self._sink.close()
            self._raw.close()
            os.replace(self._tmp, self.path)
        except BaseException:
            self.abort()
            raise
        log_repaired(self.repaired, where=str(self.path))

    def abort(self) -> None:
        """Discard everything written; no file is left behind."""
        try:
            if self._sink is not None and self._sink is not self._raw:
                try:
                    self._sink.close()
                except BaseException:
                    pass
            if self._raw is not None and not self._raw.closed:
                self._raw.close()
        finally:
            if self._tmp is not None and self._tmp.exists():
                self._tmp.unlink()
            self._buf.clear()

    # ---- writing ------------------------------------------------------------------
    def write(self, feature: Feature) -> None:
        self._buf.append(feature)
        if len(self._buf) >= self.chunk_size:
            self._flush()

    def write_many(self, features: Iterable[Feature]) -> int:
        n = 0
        for f in features:
            self.write(f)
            n += 1
        return n

    def _geometries_json(self, geoms: np.ndarray) -> list[bytes | None]:
        if self.repair:
            geoms, n = repair_geometries(geoms)
            self.repaired += n
        if self.decimals is not None:
            d = self.decimals
            geoms = shapely.transform(geoms, lambda c: np.round(c, d))
        out = shapely.to_geojson(geoms)
        return [None if s is None else s.encode() for s in out]

    def _flush(self) -> None:
        if not self._buf:
            return
        with paused_gc():
            self._flush_chunk()

    def _flush_chunk(self) -> None:
        feats, self._buf = self._buf, []
        geoms = np.empty(len(feats), dtype=object)
        geoms[:] = [f.geometry for f in feats]
        gjs = self._geometries_json(geoms)
        nuc_idx = [i for i, f in enumerate(feats) if f.nucleus_geometry is not None]
        nuc_js: dict[int, bytes] = {}
        if nuc_idx:
            ng = np.empty(len(nuc_idx), dtype=object)
            ng[:] = [feats[i].nucleus_geometry for i in nuc_idx]
            nuc_js = dict(zip(nuc_idx, self._geometries_json(ng)))
        parts = []
        for i, (f, gj) in enumerate(zip(feats, gjs)):
            line = b'\n{"type":"Feature","id":' + _dumps(f.id) + b',"geometry":' + (gj or b"null")
            if i in nuc_js:
                line += b',"nucleusGeometry":' + nuc_js[i]
            if f.foreign:
                for k, v in f.foreign.items():
                    line += b"," + _dumps(str(k)) + b":" + _dumps(v)
            line += b',"properties":' + _dumps(f.properties()) + b"}"
            parts.append(line)
        sep = b"" if self.count == 0 else b","
        self._sink.write(sep + b",".join(parts))
        self.count += len(feats)


def write_geojson(
    path: str | os.PathLike,
    features: Iterable[Feature],
    *,
    properties: dict[str, Any] | None = None,
    decimals: int | None = None,
    repair: bool = True,
    compresslevel: int = 1,
) -> int:
    """Write ``features`` to ``path`` (atomic; gzip when it ends ``.gz``); returns the count.

    properties : FeatureCollection properties, e.g. ``bounds_properties(slide.bounds)``.
    """
    with GeoJSONWriter(
        path, properties=properties, decimals=decimals, repair=repair, compresslevel=compresslevel
    ) as w:
        w.write_many(features)
    return w.count
