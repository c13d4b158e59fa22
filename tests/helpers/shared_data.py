"""Where the repository and the team's shared data folder are, for tests that read real data.

The shared folder (benchmarks, corpus, ARPO's search cache: ``shared/data/...``) is not part of the
repository. It is looked up, in this order:

1. ``ARPO_SHARED_DIR`` when set (the folder that holds ``data/``);
2. ``<repository>/../shared``, the layout of CI (a fresh clone with a copy of ``shared/`` beside it) and of
   a development checkout next to it.

No machine's absolute path is written here. A test that needs the folder calls
:func:`require_shared_data`: outside CI a missing folder skips the test with the reason; under CI
(``CI=true``) it fails, so the data tests never pass by not running.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
"""The repository's root folder (the one holding ``pyproject.toml`` and ``tests/``)."""

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def shared_dir() -> Path:
    """The shared folder (``ARPO_SHARED_DIR`` or ``<repo>/../shared``); it may not exist."""
    override = os.environ.get("ARPO_SHARED_DIR")
    return Path(override).expanduser().resolve() if override else REPO_ROOT.parent / "shared"


def shared_data_dir() -> Path:
    """``<shared>/data``; it may not exist (see :func:`require_shared_data`)."""
    return shared_dir() / "data"


def require_shared_data(*parts: str) -> Path:
    """``<shared>/data/<parts...>`` when it exists; else skip the test, or fail it under CI."""
    path = shared_data_dir().joinpath(*parts)
    if path.exists():
        return path
    msg = (f"{path} is missing: the shared data folder is looked up as $ARPO_SHARED_DIR/data or "
           f"<repo>/../shared/data")
    if IN_CI:
        pytest.fail(f"{msg} (required under CI)")
    pytest.skip(msg)
