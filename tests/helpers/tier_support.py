"""Which sandbox tiers a test may skip: locally a tier that cannot run is skipped; under CI (``CI=true``)
or ``ARPO_REQUIRE_TIERS=subprocess,bwrap,docker`` (set by scripts/test.sh) it is a failure."""
from __future__ import annotations

import os

import pytest

from arpo_env.envs.python.config import TIERS, SandboxConfig
from arpo_env.envs.python.tiers import get_tier

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
REQUIRED = set(TIERS) if IN_CI else {t for t in os.environ.get("ARPO_REQUIRE_TIERS", "").split(",") if t}
_checked: dict[str, tuple[bool, str]] = {}


def require(tier: str) -> None:
    if tier not in _checked:
        _checked[tier] = get_tier(tier).available(SandboxConfig(sandbox=tier))
    ok, why = _checked[tier]
    if not ok:
        if tier in REQUIRED:
            pytest.fail(f"the {tier} sandbox is required here (CI / ARPO_REQUIRE_TIERS) but fails: {why}")
        pytest.skip(f"{tier} sandbox unavailable here: {why}")
