"""Errors that carry a one-line, user-facing message.

Every error a user can cause (bad path, unreadable slide, missing mpp, bad config)
derives from :class:`InputError`. The CLI prints ``str(error)`` on one line and exits
non-zero; it never shows a traceback for these.
"""

from __future__ import annotations

from pathlib import Path


class InputError(Exception):
    """A problem with the user's input; the message names the file and the problem."""

    exit_code = 2

    def __init__(self, path: str | Path | None, problem: str) -> None:
        self.path = None if path is None else Path(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}" if path is not None else problem)


class SlideError(InputError):
    """A slide file that cannot be opened or read."""


class MissingMppError(SlideError):
    """The slide records no microns-per-pixel and none was given with ``--mpp``."""

    def __init__(self, path: str | Path | None) -> None:
        super().__init__(
            path,
            "the file records no microns-per-pixel (mpp); give it with --mpp, e.g. --mpp 0.25",
        )


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type name when the message is empty)."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
