"""Paint tiles in worker processes ahead of the SVS writer (same pixels, more cores).

:class:`PrefetchRenderer` has the ``render(x, y, w, h)`` interface the writer calls, in
row-major tile order. On a call it hands the following tiles to a process pool (each
worker holds its own :class:`~wsi_pipeline.synthetic.render.TileRenderer` of the same
scene), keeping a bounded number of tiles in flight, so memory stays bounded. Rendering
is a pure function of the window, so the file is byte-identical whatever ``workers`` is.
"""

from __future__ import annotations

import math
import multiprocessing
from collections import deque
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from wsi_pipeline.synthetic.scene import Scene

_RENDERER = None


def _init(scene: Scene) -> None:
    global _RENDERER
    from wsi_pipeline.synthetic.render import TileRenderer

    _RENDERER = TileRenderer(scene)


def _render_chunk(windows: list[tuple[int, int, int, int]]) -> list[np.ndarray]:
    return [_RENDERER.render(*w) for w in windows]


class PrefetchRenderer:
    """``render(x, y, w, h)`` backed by ``workers`` processes painting ahead in tile order."""

    def __init__(self, scene: Scene, *, tile: int, workers: int, chunk: int = 8) -> None:
        self.tile = tile
        self.chunk = chunk
        self.ntx = math.ceil(scene.width / tile)
        self.nty = math.ceil(scene.height / tile)
        self.max_chunks = 3 * workers
        ctx = multiprocessing.get_context("spawn")
        self._pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init, initargs=(scene,))
        self._pending: deque = deque()  # (first tile index, future)
        self._ready: dict[int, np.ndarray] = {}
        self._next = 0  # next tile index to submit

    def _submit(self) -> None:
        total = self.ntx * self.nty
        while len(self._pending) < self.max_chunks and self._next < total:
            idx = range(self._next, min(self._next + self.chunk, total))
            windows = [((i % self.ntx) * self.tile, (i // self.ntx) * self.tile, self.tile, self.tile) for i in idx]
            self._pending.append((self._next, self._pool.submit(_render_chunk, windows)))
            self._next = idx.stop

    def render(self, x: int, y: int, w: int, h: int) -> np.ndarray:
        """The tile at ``(x, y)`` (a whole tile of the grid)."""
        if w != self.tile or h != self.tile or x % self.tile or y % self.tile:
            raise ValueError(f"PrefetchRenderer paints whole grid tiles only, not {(x, y, w, h)}")
        index = (y // self.tile) * self.ntx + x // self.tile
        if index >= self._next and index not in self._ready:
            self._drain()
            self._next = index
        self._submit()
        while index not in self._ready:
            start, fut = self._pending.popleft()
            for k, img in enumerate(fut.result()):
                self._ready[start + k] = img
            self._submit()
        return self._ready.pop(index)

    def _drain(self) -> None:
        for _, fut in self._pending:
            fut.cancel()
        self._pending.clear()
        self._ready.clear()

    def close(self) -> None:
        self._drain()
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> PrefetchRenderer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
