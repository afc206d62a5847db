"""Reading QuPath-dialect GeoJSON (>= 0.4, and the 0.2/0.3 exports) into :class:`Annotations`.

Accepted top levels: a FeatureCollection, a bare list of features (old QuPath), or a single
Feature. ``.gz`` files are decompressed. Geometries are built in bulk, validated, and
invalid ones repaired (counted in :attr:`Annotations.repaired` and logged), never dropped.
"""

from __future__ import annotations

import gzip
import json
import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from tiling.errors import InputError
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


def _load_bytes(path: Path) -> bytes:
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        raise InputError(path, "file not found") from None
    except IsADirectoryError:
        raise InputError(path, "is a folder, not a GeoJSON file") from None
    except OSError as e:
        raise InputError(path, f"cannot read: {e.strerror or e}") from None
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as e:
            raise InputError(path, f"corrupt gzip data: {e}") from None
    return data


def _parse(path: Path, data: bytes) -> Any:
    try:
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


def features_from_dicts(dicts: list[dict], *, where: str = "<features>") -> tuple[list[Feature], int]:
    """Parsed feature ``dict`` s -> (features, number of geometries repaired)."""
    for i, d in enumerate(dicts):
        if not isinstance(d, dict) or "geometry" not in d:
            raise ValueError(f"feature {i} is not a GeoJSON Feature (no 'geometry')")
    geoms, repaired = geometries_from_dicts([d["geometry"] for d in dicts])
    geoms, n = repair_geometries(geoms)
    repaired += n
    nuc_idx = [i for i, d in enumerate(dicts) if d.get("nucleusGeometry") is not None]
    nuclei = {}
    if nuc_idx:
        ng, n1 = geometries_from_dicts([dicts[i]["nucleusGeometry"] for i in nuc_idx])
        ng, n2 = repair_geometries(ng)
        repaired += n1 + n2
        nuclei = dict(zip(nuc_idx, ng))
    feats = [feature_from_parts(d, g, nuclei.get(i)) for i, (d, g) in enumerate(zip(dicts, geoms))]
    return feats, repaired


def read_geojson(path: str | os.PathLike) -> Annotations:
    """Read a GeoJSON file (``.gz`` allowed) of any QuPath dialect.

    Raises :class:`tiling.errors.InputError` naming the file for unreadable, non-JSON or
    non-GeoJSON input.
    """
    path = Path(path)
    doc = _parse(path, _load_bytes(path))
    dicts, props = _features_of(path, doc)
    del doc
    try:
        feats, repaired = features_from_dicts(dicts, where=str(path))
    except (ValueError, TypeError, KeyError, IndexError) as e:
        raise InputError(path, f"bad GeoJSON feature: {e}") from None
    log_repaired(repaired, where=str(path))
    return Annotations(features=feats, properties=props, repaired=repaired)
