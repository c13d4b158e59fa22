"""Shared set-up of the env tests: search indexes built here go to a temporary cache, never the user's."""
from __future__ import annotations

import pytest


@pytest.fixture(autouse=True, scope="module")
def _cache_dir(tmp_path_factory):
    """Keep the BM25 indexes these tests build out of the user's cache (``ARPO_ENV_CACHE_DIR``)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("ARPO_ENV_CACHE_DIR", str(tmp_path_factory.mktemp("arpo-cache")))
    yield
    mp.undo()
