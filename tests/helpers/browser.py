"""A real headless browser for tests that render HTML: Chromium from Debian's packages (``chromium``;
``chromium-headless-shell`` also works). scripts/test.sh installs it.

Locally a missing browser skips the test with the reason; under CI (``CI=true``) it fails, so a rendering
test never passes by not running.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers.shared_data import IN_CI

CANDIDATES = ("chromium", "chromium-headless-shell", "chromium-browser", "google-chrome")


def require_chromium() -> str:
    """Path of a Chromium binary; else skip (fail under CI)."""
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    msg = f"no headless browser found (looked for {', '.join(CANDIDATES)}): apt-get install -y chromium"
    if IN_CI:
        pytest.fail(f"{msg} (required under CI)")
    pytest.skip(msg)


def _run(binary: str, profile: Path, args: list[str], timeout: float = 180) -> subprocess.CompletedProcess[str]:
    cmd = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars",
           f"--user-data-dir={profile}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, encoding="utf-8")


def screenshot(binary: str, page: Path, png: Path, size: tuple[int, int] = (1200, 1600)) -> Path:
    """Render ``page`` (a local file) into ``png``; raises ``AssertionError`` with chromium's output if no
    image was written."""
    res = _run(binary, png.parent / "chromium-profile", [f"--window-size={size[0]},{size[1]}",
                                                         f"--screenshot={png}", page.resolve().as_uri()])
    assert png.exists() and png.stat().st_size > 0, f"chromium wrote no screenshot: {res.stderr[-2000:]}"
    return png


def dump_dom(binary: str, page: Path, profile: Path) -> str:
    """The DOM chromium built from ``page``, serialised (UTF-8)."""
    res = _run(binary, profile, ["--dump-dom", page.resolve().as_uri()])
    assert res.returncode == 0, f"chromium --dump-dom failed: {res.stderr[-2000:]}"
    return res.stdout
