"""Shared fixtures. Real data under ../shared/data is optional: tests using it skip when absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _shared_data_dir() -> Path:
    env = os.environ.get("WSI_SHARED_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (or ``$WSI_SHARED_DATA``); skips the test when absent."""
    path = _shared_data_dir()
    if not path.is_dir():
        pytest.skip(f"shared data not found at {path}")
    return path


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    """Folder for screenshots and pictures a person should look at (git-ignored)."""
    path = REPO / "artifacts"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture(scope="session")
def synthetic_slide(tmp_path_factory):
    """A small synthetic H&E skin-excision SVS (Aperio-like) with ground truth, made once per
    session; treat it as read-only. ``.path``, ``.truth_dir``, ``.width``, ``.height``, ``.mpp``,
    ``.seed``; ``.scene()`` rebuilds the painted geometry. See :mod:`wsi_pipeline.synthetic`."""
    from wsi_pipeline.synthetic import make_synthetic_slide

    return make_synthetic_slide(tmp_path_factory.mktemp("synthetic"), width=6144, height=4096, mpp=0.25, seed=0)
