"""Fixtures for the Python sandbox tests: every test that takes ``tier`` runs once per tier.

A tier that cannot run here is skipped locally but FAILS when required: under CI (``CI=true``) all
tiers are, and scripts/test.sh (which installs bubblewrap and starts the Docker engine) sets
``ARPO_REQUIRE_TIERS=subprocess,bwrap,docker``, so CI exercises all three for real.
"""
from __future__ import annotations

import pytest

from arpo_env.envs.python.config import TIERS, SandboxConfig
from arpo_env.envs.python.tool import PythonTool
from tests.helpers.tier_support import require


@pytest.fixture(params=TIERS, ids=list(TIERS))
def tier(request: pytest.FixtureRequest) -> str:
    if request.param == "docker":
        request.applymarker(pytest.mark.docker)
    require(request.param)
    return request.param


@pytest.fixture
def make_tool(tier: str):
    """Build tools on the current tier (closed at the end of the test)."""
    made: list[PythonTool] = []

    def build(**kwargs) -> PythonTool:
        tool = PythonTool(SandboxConfig(sandbox=tier, **kwargs))
        made.append(tool)
        return tool

    yield build
    for tool in made:
        tool.close()
