"""Shared set-up of the env tests: search indexes built here go to a temporary cache, never the user's."""
from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session")
def _dense_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("arpo-dense-cache")


@pytest.fixture(autouse=True, scope="module")
def _cache_dir(tmp_path_factory, _dense_dir):
    """Keep the indexes these tests build out of the user's cache (``ARPO_ENV_CACHE_DIR``, and
    ``ARPO_ENV_DENSE_CACHE_DIR`` shared by the session)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("ARPO_ENV_CACHE_DIR", str(tmp_path_factory.mktemp("arpo-cache")))
    # passage embeddings of the bundled corpus take a minute or more to compute: one copy per session
    # (a developer may point ARPO_ENV_DENSE_CACHE_DIR at a filled cache before running the tests)
    if not os.environ.get("ARPO_ENV_DENSE_CACHE_DIR"):
        mp.setenv("ARPO_ENV_DENSE_CACHE_DIR", str(_dense_dir))
    yield
    mp.undo()
