"""Pause Python's cyclic garbage collector while building many small objects.

Reading or writing a chunk allocates hundreds of thousands of dicts, lists and Features
that are all kept (or all freed by reference counting); the cyclic collector would scan
them again and again for nothing. Measured: reading 100k polygons took 5.7 s of CPU with
the collector running, 3.2 s with it paused per chunk.
"""

from __future__ import annotations

import gc
from contextlib import contextmanager


@contextmanager
def paused_gc():
    """Disable the cyclic GC inside the block; restore its previous state after."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
