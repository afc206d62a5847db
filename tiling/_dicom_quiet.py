"""Keep pydicom's and wsidicom's warnings off the terminal: they go to the log at DEBUG.

DICOM files from archives often break small rules (a UID one character too long, a value
with the wrong length); pydicom then warns through both :mod:`warnings` and its logger, once
per element, with its source line. Users need the slide, not that noise. While
:func:`quiet_dicom` runs, Python warnings are collected and re-logged at DEBUG (one record
per distinct message) under ``tiling.dicom``, followed by one INFO line counting them. The
``pydicom`` and ``wsidicom`` loggers are relayed to DEBUG for good once a DICOM slide has
been opened (their records would otherwise reach the CLI's WARNING handler from reader
threads too).
"""

from __future__ import annotations

import logging
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger("tiling.dicom")
_LIBRARIES = ("pydicom", "wsidicom")
_lock = threading.RLock()  # catch_warnings swaps process-wide state: one block at a time
_state = threading.local()


class _DebugRelay(logging.Handler):
    """Re-log a library's record at DEBUG under ``tiling.dicom.<library>``."""

    def emit(self, record: logging.LogRecord) -> None:
        logging.getLogger(f"tiling.dicom.{record.name}").debug("%s", record.getMessage())


def relay_library_logs() -> None:
    """Send the ``pydicom`` and ``wsidicom`` loggers to DEBUG (idempotent)."""
    for name in _LIBRARIES:
        logger = logging.getLogger(name)
        if not any(isinstance(h, _DebugRelay) for h in logger.handlers):
            logger.addHandler(_DebugRelay())
            logger.propagate = False


@contextmanager
def quiet_dicom(path: str | Path) -> Iterator[None]:
    """Run a block of pydicom/wsidicom calls on ``path`` without terminal noise."""
    relay_library_logs()
    with _lock:
        if getattr(_state, "active", False):  # nested: the outer block reports
            yield
            return
        _state.active = True
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                try:
                    yield
                finally:
                    _report(Path(path), caught)
        finally:
            _state.active = False


def _report(path: Path, caught: list[warnings.WarningMessage]) -> None:
    seen: list[str] = []
    for w in caught:
        text = f"{w.category.__name__}: {w.message}"
        if text not in seen:
            seen.append(text)
            log.debug("%s: %s", path, text)
    if seen:
        log.info("%s: %d DICOM conformance warning(s) from pydicom/wsidicom, read anyway (details with -vv)", path, len(seen))
