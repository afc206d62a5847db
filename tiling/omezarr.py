"""Slide -> OME-Zarr (NGFF 0.4 multiscales, zarr v2 on disk), resumable and streaming.

How it is fast and small:

* Level 0 is read once, in blocks of ``block = chunk * 2**m`` pixels, each by one worker
  thread with its own slide handle (openslide releases the GIL). From each block the
  worker derives levels 1..m in memory by 2x area averaging, so a block yields whole
  chunks at levels 0..m. Level m is then the source of the next stage (levels m+1..2m),
  read back from the store; it is 4**m times smaller than level 0.
* Chunks are encoded by numcodecs (GIL released) and written straight to files.
* At most ``2 * workers`` blocks are in flight, so memory is bounded whatever the size.

How it is safe:

* Everything is written into ``OUT.part``; a journal there lists finished blocks. Run
  again after an interruption, the conversion skips those blocks and gives the same arrays.
* The root ``.zattrs`` (the NGFF ``multiscales``) is written last, the journal removed and
  the folder renamed to ``OUT``: a half-written store is never mistaken for a whole one.

Layout: arrays ``"0"``, ``"1"``, ... of shape ``(3, H_k, W_k)`` uint8 (axes c, y, x, as
NGFF 0.4 orders them), level k being ``2**k`` times smaller than level 0, down to a long
side <= ``min_size``; scale transforms in micrometres; ``omero`` channel metadata so
viewers show red, green and blue.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from tiling._zarr_chunks import ChunkedArray, make_compressor, write_json
from tiling.errors import InputError
from tiling.pyramid import DEFAULT_MIN_SIZE, downsample2_planar
from tiling.slide import Slide

log = logging.getLogger(__name__)

JOURNAL = ".wsi-progress"
PLAN = ".wsi-plan.json"
NGFF_VERSION = "0.4"


@dataclass(frozen=True)
class ConversionPlan:
    """Geometry of a conversion; a resumed run must have the same plan."""

    width: int
    height: int
    chunk: int
    levels_per_stage: int  # m: a block of chunk * 2**m source pixels yields levels s..s+m
    level_shapes: tuple[tuple[int, int], ...]  # (height, width) per level
    codec: str
    source: dict  # size / mtime / dimensions of the input (no file name: it may carry PHI)

    @property
    def block(self) -> int:
        return self.chunk * 2**self.levels_per_stage

    def stages(self) -> list[tuple[int, list[int]]]:
        """``(source_level, target_levels)`` per stage."""
        m, n = self.levels_per_stage, len(self.level_shapes)
        out, src = [], 0
        while True:
            targets = [k for k in range(src if src == 0 else src + 1, min(src + m, n - 1) + 1)]
            if targets:
                out.append((src, targets))
            if src + m >= n - 1:
                return out
            src += m

    def blocks(self, stage_source: int) -> list[tuple[int, int]]:
        """Block ``(by, bx)`` indices over the stage's source level."""
        h, w = self.level_shapes[stage_source]
        return [(by, bx) for by in range(math.ceil(h / self.block)) for bx in range(math.ceil(w / self.block))]

    def total_blocks(self) -> int:
        return sum(len(self.blocks(src)) for src, _ in self.stages())

    def to_dict(self) -> dict:
        d = asdict(self)
        d["level_shapes"] = [list(s) for s in self.level_shapes]
        return d


def level_shapes(width: int, height: int, *, min_size: int = DEFAULT_MIN_SIZE) -> tuple[tuple[int, int], ...]:
    """``(height, width)`` of each 2x level until the long side is <= ``min_size``."""
    shapes = [(height, width)]
    while max(shapes[-1]) > min_size:
        h, w = shapes[-1]
        shapes.append(((h + 1) // 2, (w + 1) // 2))
    return tuple(shapes)


def default_chunk(slide: Slide) -> int:
    """512, or the native tile when 512 is not a multiple of it (e.g. 240-px Aperio tiles)."""
    tw, th = slide.tile_size
    if tw == th and 128 <= tw <= 1024 and 512 % tw and tw % 512:
        return tw
    return 512


def make_plan(
    slide: Slide, *, chunk: int | None, codec: str, min_size: int, levels_per_stage: int | None = None
) -> ConversionPlan:
    """Geometry of the conversion; blocks of about 2048 level-0 pixels unless ``levels_per_stage``."""
    chunk = int(chunk or default_chunk(slide))
    if not 16 <= chunk <= 8192:
        raise InputError(None, f"--chunk must be between 16 and 8192, got {chunk}")
    make_compressor(codec)  # validate early
    m = int(levels_per_stage or max(1, round(math.log2(max(2048 / chunk, 2)))))
    w, h = slide.dimensions
    st = slide.path.stat() if slide.path.exists() else None
    source = {"dimensions": [w, h], "size": st.st_size if st else None, "mtime_ns": st.st_mtime_ns if st else None}
    return ConversionPlan(w, h, chunk, m, level_shapes(w, h, min_size=min_size), codec, source)


def ngff_attrs(plan: ConversionPlan, mpp: tuple[float, float], *, extra: dict | None = None) -> dict:
    """Root ``.zattrs``: NGFF 0.4 ``multiscales`` (c, y, x; micrometres) and ``omero`` colours."""
    mx, my = mpp
    datasets = [
        {"path": str(k), "coordinateTransformations": [{"type": "scale", "scale": [1.0, my * 2**k, mx * 2**k]}]}
        for k in range(len(plan.level_shapes))
    ]
    colours = (("red", "FF0000"), ("green", "00FF00"), ("blue", "0000FF"))
    return {
        "multiscales": [
            {
                "version": NGFF_VERSION,
                "name": "image",
                "axes": [
                    {"name": "c", "type": "channel"},
                    {"name": "y", "type": "space", "unit": "micrometer"},
                    {"name": "x", "type": "space", "unit": "micrometer"},
                ],
                "datasets": datasets,
                "type": "mean",
                "metadata": {"description": "2x2 area average of the level above", "method": "tiling.pyramid.downsample2"},
            }
        ],
        "omero": {
            "version": NGFF_VERSION,
            "rdefs": {"model": "color"},
            "channels": [
                {
                    "label": label,
                    "color": colour,
                    "active": True,
                    "coefficient": 1.0,
                    "family": "linear",
                    "inverted": False,
                    "window": {"min": 0, "max": 255, "start": 0, "end": 255},
                }
                for label, colour in colours
            ],
        },
        "wsi_pipeline": extra or {},
    }


class _Journal:
    """Append-only list of finished blocks ``stage by bx``; tolerant of a torn last line."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.done: set[tuple[int, int, int]] = set()
        if path.exists():
            for line in path.read_text().splitlines():
                parts = line.split()
                if len(parts) == 3 and all(p.isdigit() for p in parts):
                    self.done.add(tuple(int(p) for p in parts))
        self._fh = open(path, "a")  # noqa: SIM115 - closed in close()

    def add(self, key: tuple[int, int, int]) -> None:
        self._fh.write("\n%d %d %d\n" % key)
        self._fh.flush()
        self.done.add(key)

    def close(self) -> None:
        self._fh.close()


def _prepare(part: Path, plan: ConversionPlan) -> bool:
    """Create (or validate for resuming) the partial store; return True when resuming."""
    plan_path = part / PLAN
    if part.exists():
        try:
            same = json.loads(plan_path.read_text()) == json.loads(json.dumps(plan.to_dict()))
        except (OSError, ValueError):
            same = False
        if same:
            for tmp in part.rglob(".*.tmp"):  # chunk files a killed run left half-written
                tmp.unlink(missing_ok=True)
            return True
        log.warning("%s: unfinished conversion with other settings; starting again", part)
        shutil.rmtree(part)
    part.mkdir(parents=True)
    write_json(part / ".zgroup", {"zarr_format": 2})
    write_json(plan_path, plan.to_dict())
    return False


def _arrays(part: Path, plan: ConversionPlan) -> list[ChunkedArray]:
    comp = make_compressor(plan.codec)
    arrays = [ChunkedArray(part / str(k), h, w, plan.chunk, comp) for k, (h, w) in enumerate(plan.level_shapes)]
    for a in arrays:
        if not (a.root / ".zarray").exists():
            a.create()
    return arrays


def _read_planar(slide: Slide, x: int, y: int, w: int, h: int) -> np.ndarray:
    """``(3, h, w)`` uint8 of level 0, through the backend's planar fast path when it has one."""
    fast = getattr(slide, "read_planar", None)
    if fast is not None:
        return fast(0, x, y, w, h)
    return np.ascontiguousarray(slide.read_region((x, y), (w, h), level=0).transpose(2, 0, 1))


def _convert_block(slide: Slide, arrays: list[ChunkedArray], plan: ConversionPlan, src: int, targets: list[int], by: int, bx: int) -> None:
    """Read one source block, write its chunks at every target level."""
    b = plan.block
    h, w = plan.level_shapes[src]
    y0, x0 = by * b, bx * b
    bh, bw = min(b, h - y0), min(b, w - x0)
    if src == 0:
        image = _read_planar(slide, x0, y0, bw, bh)
    else:
        image = arrays[src].read_region(y0, x0, bh, bw)
    for k in range(src, targets[-1] + 1):
        if k > src:
            image = downsample2_planar(image)
        if k in targets:
            f = 2 ** (k - src)
            arrays[k].write_region(y0 // f, x0 // f, image)


def write_omezarr(
    slide: Slide,
    out: str | Path,
    *,
    chunk: int | None = None,
    codec: str = "lz4",
    workers: int = 2,
    min_size: int = DEFAULT_MIN_SIZE,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
    levels_per_stage: int | None = None,
) -> Path:
    """Convert ``slide`` into an OME-Zarr folder ``out``; return ``out``.

    ``progress(done_blocks, total_blocks)`` is called as blocks finish. An existing
    ``out.part`` from an interrupted run with the same settings is resumed.
    ``levels_per_stage`` (m) sets the read block to ``chunk * 2**m`` pixels (default:
    about 2048). ``min_size``: add 2x levels until the long side is <= this.
    """
    out = Path(out)
    mpp = slide.mpp  # raises MissingMppError naming --mpp
    if out.exists() and not overwrite:
        raise InputError(out, "already exists (use --overwrite to replace it)")
    plan = make_plan(slide, chunk=chunk, codec=codec, min_size=min_size, levels_per_stage=levels_per_stage)
    part = out.with_name(out.name + ".part")
    _prepare(part, plan)
    arrays = _arrays(part, plan)
    journal = _Journal(part / JOURNAL)
    total = plan.total_blocks()
    done = len(journal.done)
    if progress:
        progress(done, total)
    try:
        with ThreadPoolExecutor(max(1, int(workers)), thread_name_prefix="omezarr") as pool:
            for s, (src, targets) in enumerate(plan.stages()):
                todo = [(s, by, bx) for by, bx in plan.blocks(src) if (s, by, bx) not in journal.done]
                pending: dict = {}
                for key in todo:
                    while len(pending) >= 2 * max(1, int(workers)):
                        done += _drain(pending, journal)
                        if progress:
                            progress(done, total)
                    fut = pool.submit(_convert_block, slide, arrays, plan, src, targets, key[1], key[2])
                    pending[fut] = key
                while pending:  # a stage reads the previous stage's output: finish it first
                    done += _drain(pending, journal)
                    if progress:
                        progress(done, total)
    finally:
        journal.close()
    _finish(part, out, plan, mpp, slide, overwrite=overwrite)
    return out


def _drain(pending: dict, journal: _Journal) -> int:
    """Wait for at least one block; journal the finished ones; return how many."""
    finished, _ = wait(list(pending), return_when=FIRST_COMPLETED)
    for fut in finished:
        key = pending.pop(fut)
        fut.result()  # re-raise worker errors
        journal.add(key)
    return len(finished)


def _finish(part: Path, out: Path, plan: ConversionPlan, mpp, slide: Slide, *, overwrite: bool) -> None:
    extra = {
        "level0_dimensions": [plan.width, plan.height],
        "bounds": list(slide.bounds),
        "objective_power": slide.objective_power,
        "mpp": list(mpp),
    }
    write_json(part / ".zattrs", ngff_attrs(plan, mpp, extra=extra))  # last metadata
    (part / JOURNAL).unlink(missing_ok=True)
    (part / PLAN).unlink(missing_ok=True)
    if out.exists() and overwrite:
        old = out.with_name(out.name + f".old-{os.getpid()}")
        os.replace(out, old)
        os.replace(part, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(part, out)


def read_level(store: str | Path, level: int = 0) -> np.ndarray:
    """Read one level of a store written here as ``(H, W, 3)`` uint8 (with zarr-python)."""
    import zarr

    arr = zarr.open_array(str(Path(store) / str(level)), mode="r", zarr_format=2)
    return np.moveaxis(arr[...], 0, -1)


def write_labels(
    store: str | Path,
    labels: np.ndarray,
    *,
    downsample: float,
    name: str = "labels",
    colors: dict[int, tuple[int, int, int, int]] | None = None,
    properties: dict[int, dict] | None = None,
    codec: str = "lz4",
    chunk: int | None = None,
) -> Path:
    """Add a label raster to an OME-Zarr written by :func:`write_omezarr` as the NGFF 0.4
    label image ``store/labels/<name>``; return its path.

    labels : (H, W) unsigned integers (0 = nothing), pixel ``(r, c)`` covering level-0
        ``[c*downsample, (c+1)*downsample) x [r*downsample, ...)``.
    The label image is a multiscale with one dataset per image level, each of that level's
    (y, x) shape and scale (nearest label pixel at each level pixel's centre), so viewers
    overlay it on the image at any zoom; chunks that are all 0 are not written (fill value
    0). ``colors``: label value -> RGBA 0-255 and ``properties``: label value -> dict (e.g.
    ``{"class": "Tumor"}``) go to ``image-label``. ``labels/.zattrs`` lists the label
    images (others already there are kept). Written as ``labels/.<name>.part``, renamed
    when whole; an existing label image of that name is replaced.
    """
    store = Path(store)
    lab = np.asarray(labels)
    if lab.ndim != 2 or not np.issubdtype(lab.dtype, np.integer) or (lab.size and int(lab.min()) < 0):
        raise ValueError(f"labels must be a 2-D array of non-negative integers, got {lab.dtype} {lab.shape}")
    if not downsample > 0:
        raise ValueError(f"downsample must be positive, got {downsample}")
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"bad label image name {name!r}")
    try:
        root = json.loads((store / ".zattrs").read_text())
        image_ms = root["multiscales"][0]
        level0 = json.loads((store / image_ms["datasets"][0]["path"] / ".zarray").read_text())
    except (OSError, ValueError, KeyError, IndexError):
        raise InputError(store, "is not an OME-Zarr image written by this pipeline (no multiscales)") from None
    dtype = np.dtype(np.uint8 if lab.size == 0 or int(lab.max()) < 256 else np.uint16 if int(lab.max()) < 65536 else np.uint32)
    chunk = int(chunk or level0["chunks"][-1])
    comp = make_compressor(codec)
    group = store / "labels"
    group.mkdir(exist_ok=True)
    if not (group / ".zgroup").exists():
        write_json(group / ".zgroup", {"zarr_format": 2})
    part = group / f".{name}.part"
    if part.exists():
        shutil.rmtree(part)
    part.mkdir()
    write_json(part / ".zgroup", {"zarr_format": 2})
    datasets = []
    s0 = float(image_ms["datasets"][0]["coordinateTransformations"][0]["scale"][-1])
    for ds in image_ms["datasets"]:
        path = ds["path"]
        shape = json.loads((store / path / ".zarray").read_text())["shape"]
        h, w = int(shape[-2]), int(shape[-1])
        f = float(ds["coordinateTransformations"][0]["scale"][-1]) / s0  # level-0 px per pixel of this level
        _write_label_level(part / path, lab, h, w, f, downsample, chunk, comp, dtype)
        scale = ds["coordinateTransformations"][0]["scale"][-2:]
        datasets.append({"path": path, "coordinateTransformations": [{"type": "scale", "scale": scale}]})
    axes = [a for a in image_ms["axes"] if a.get("type") == "space"]
    present = [int(v) for v in np.unique(lab)]
    image_label = {"version": NGFF_VERSION, "source": {"image": "../../"}}
    if colors:
        image_label["colors"] = [{"label-value": int(v), "rgba": [int(c) for c in rgba]} for v, rgba in sorted(colors.items())]
    if properties:
        image_label["properties"] = [{"label-value": int(v), **p} for v, p in sorted(properties.items())]
    write_json(part / ".zattrs", {
        "multiscales": [{"version": NGFF_VERSION, "name": name, "axes": axes, "datasets": datasets,
                         "type": "nearest", "metadata": {"label_values": present, "downsample": float(downsample)}}],
        "image-label": image_label,
    })
    final = group / name
    if final.exists():
        old = group / f".{name}.old-{os.getpid()}"
        os.replace(final, old)
        os.replace(part, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(part, final)
    try:
        listed = json.loads((group / ".zattrs").read_text()).get("labels", [])
    except (OSError, ValueError):
        listed = []
    write_json(group / ".zattrs", {"labels": [n for n in listed if n != name] + [name]})
    return final


def _write_label_level(root: Path, lab: np.ndarray, h: int, w: int, f: float, downsample: float,
                       chunk: int, comp, dtype) -> None:
    """One (h, w) level of a label image: label pixel under each pixel centre; zero chunks skipped."""
    root.mkdir(parents=True)
    write_json(root / ".zarray", {
        "zarr_format": 2, "shape": [h, w], "chunks": [chunk, chunk], "dtype": dtype.str, "fill_value": 0,
        "order": "C", "filters": None, "dimension_separator": "/",
        "compressor": None if comp is None else comp.get_config(),
    })
    lh, lw = lab.shape
    rows = np.clip(((np.arange(h) + 0.5) * f / downsample).astype(np.int64), 0, max(lh - 1, 0))
    cols = np.clip(((np.arange(w) + 0.5) * f / downsample).astype(np.int64), 0, max(lw - 1, 0))
    if lab.size == 0:
        return
    for cy in range(-(-h // chunk)):
        r = rows[cy * chunk:(cy + 1) * chunk]
        if not lab[r[0]:r[-1] + 1].any():
            continue
        for cx in range(-(-w // chunk)):
            c = cols[cx * chunk:(cx + 1) * chunk]
            if not lab[r[0]:r[-1] + 1, c[0]:c[-1] + 1].any():
                continue
            block = np.zeros((chunk, chunk), dtype)
            block[:len(r), :len(c)] = lab[np.ix_(r, c)]
            data = block if comp is None else comp.encode(block)
            (root / str(cy)).mkdir(exist_ok=True)
            path = root / str(cy) / str(cx)
            tmp = path.with_name(f".{cx}.tmp")
            tmp.write_bytes(memoryview(data).cast("B") if isinstance(data, np.ndarray) else data)
            os.replace(tmp, path)
