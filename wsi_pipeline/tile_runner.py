"""Run a detector over the tiles of one slide, in process or on a Dask cluster.

In process (the GPU path): a reader thread prefetches batches of tiles while the device
works on the previous batch; on out-of-memory the batch is halved and retried with a
warning. On Dask: tiles are sent in chunks, each worker keeps its own slide handle and
detector (built once per worker), results stream back as they finish and a dead
worker's chunks are retried by the scheduler.

Every tile result is cut to the objects the tile is responsible for and shifted to
level-0 slide pixels before it leaves the worker, so only small results travel.
"""

from __future__ import annotations

import concurrent.futures
import logging
import queue
import threading
from collections.abc import Callable, Iterator, Sequence

import numpy as np

from detectors.base import Detector, Instances
from tiling.grid import Tile
from tiling.merge import keep_mask, tile_to_level0

log = logging.getLogger(__name__)


def keep_owned(result: Instances, tile: Tile) -> Instances:
    """Responsibility rule (:mod:`tiling.grid`), then tile pixels -> level-0 slide pixels."""
    if len(result) == 0:
        return result
    kept = result.subset(keep_mask(tile, result.geometry))
    return Instances(tile_to_level0(tile, kept.geometry), kept.score, kept.label, kept.measurements)


def read_tile(slide, tile: Tile, mpp: float) -> np.ndarray:
    """The tile's halo box from the slide at the working resolution, (S, S, 3) uint8."""
    x0, y0 = tile.level0_box[:2]
    return slide.read_region((int(round(x0)), int(round(y0))), tile.size, mpp=mpp)


def _is_oom(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower()


def predict_with_backoff(detector: Detector, tiles: np.ndarray) -> list[Instances]:
    """``predict_batch``; on out-of-memory halve the batch (down to 1) and retry.

    The retry runs after the ``except`` block has ended: inside it, the exception's
    traceback still holds the failed call's frames and with them its device tensors, so
    the halves would run with the whole batch's memory still taken (seen on an H200).
    """
    try:
        return detector.predict_batch(tiles)
    except (RuntimeError, MemoryError) as exc:
        if not _is_oom(exc) or len(tiles) == 1:
            raise
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    half = len(tiles) // 2
    log.warning("out of memory with a batch of %d tiles; retrying as %d + %d", len(tiles), half, len(tiles) - half)
    return predict_with_backoff(detector, tiles[:half]) + predict_with_backoff(detector, tiles[half:])


_PREFETCH: concurrent.futures.ThreadPoolExecutor | None = None
_PREFETCH_LOCK = threading.Lock()


def _prefetch_pool() -> concurrent.futures.ThreadPoolExecutor:
    """The process's tile-reader threads, reused from call to call: a fresh reader thread per
    chunk of tiles left ~35 MB behind in native code each time it ended (a Dask worker grew by
    ~2 GB over a 1 cm² slide; with reused threads it stays flat)."""
    global _PREFETCH
    with _PREFETCH_LOCK:
        if _PREFETCH is None:
            _PREFETCH = concurrent.futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="tile-prefetch")
        return _PREFETCH


def _batches(tasks: Sequence[Tile], size: int) -> Iterator[list[Tile]]:
    for i in range(0, len(tasks), size):
        yield list(tasks[i : i + size])


def run_inprocess(
    slide,
    detector: Detector,
    tasks: Sequence[Tile],
    *,
    batch_size: int = 8,
    prefetch: int = 2,
    on_progress: Callable[[int], None] | None = None,
) -> Iterator[Instances]:
    """Yield level-0 :class:`Instances` per batch, reading ahead in a thread."""
    q: queue.Queue = queue.Queue(maxsize=max(1, prefetch))
    stop = threading.Event()

    def reader() -> None:
        try:
            for batch in _batches(tasks, batch_size):
                if stop.is_set():
                    return
                q.put((batch, np.stack([read_tile(slide, t, detector.spec.mpp) for t in batch])))
        except BaseException as exc:  # handed to the consumer
            q.put(exc)
            return
        q.put(None)

    done = _prefetch_pool().submit(reader)
    try:
        while (item := q.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            batch, pixels = item
            results = predict_with_backoff(detector, pixels)
            yield Instances.concatenate([keep_owned(r, t) for r, t in zip(results, batch)])
            if on_progress:
                on_progress(len(batch))
    finally:
        stop.set()
        while not done.done():
            try:
                q.get_nowait()
            except queue.Empty:
                try:
                    done.result(timeout=0.05)
                except concurrent.futures.TimeoutError:
                    pass


# -- Dask ---------------------------------------------------------------------------
_WORKER_CACHE: dict = {}
_WORKER_CACHE_SIZE = 2  # slides in flight per worker when a batch overlaps slides


def _worker_state(slide_path: str, mpp: float | None, detector_factory: Callable[[], Detector], key: str):
    """Slide handle and detector, built once per worker process (and per thread's slide)."""
    from tiling import open_slide

    state = _WORKER_CACHE.pop(key, None)
    if state is None:
        state = (open_slide(slide_path, mpp=mpp), detector_factory())
        while len(_WORKER_CACHE) >= _WORKER_CACHE_SIZE:  # a few slides at a time keeps memory bounded
            _WORKER_CACHE.pop(next(iter(_WORKER_CACHE)))  # dropped, not closed: another thread may read it
    _WORKER_CACHE[key] = state  # most recently used last
    return state


def process_chunk(
    slide_path: str, mpp: float | None, detector_factory: Callable[[], Detector], key: str,
    tasks: list[Tile], batch_size: int,
) -> Instances:
    """Worker side: the in-process loop (reading ahead of inference) over one chunk of tiles;
    the objects each tile owns, in level-0 pixels."""
    slide, detector = _worker_state(slide_path, mpp, detector_factory, key)
    return Instances.concatenate(list(run_inprocess(slide, detector, tasks, batch_size=batch_size)))


def run_dask(
    client,
    slide_path: str,
    mpp: float | None,
    detector_factory: Callable[[], Detector],
    key: str,
    tasks: Sequence[Tile],
    *,
    batch_size: int = 8,
    chunk: int = 16,
    on_progress: Callable[[int], None] | None = None,
) -> Iterator[Instances]:
    """Yield level-0 :class:`Instances` per chunk as workers finish them (order not kept)."""
    from distributed import as_completed

    n_workers = max(1, len(client.scheduler_info().get("workers", {})))
    chunks = list(_batches(tasks, chunk))
    max_in_flight = 2 * n_workers
    pending = iter(chunks)

    sizes: dict[str, int] = {}

    def submit(c: list[Tile]):
        fut = client.submit(
            process_chunk, slide_path, mpp, detector_factory, key, c, batch_size,
            pure=False, retries=2, key=f"tiles-{key}-{c[0].index[0]}-{c[0].index[1]}",
        )
        sizes[fut.key] = len(c)
        return fut

    first = [submit(c) for _, c in zip(range(max_in_flight), pending)]
    ac = as_completed(first)
    for fut in ac:
        result = fut.result()
        n = sizes.pop(fut.key)
        fut.release()
        nxt = next(pending, None)
        if nxt is not None:
            ac.add(submit(nxt))
        yield result
        if on_progress:
            on_progress(n)
