"""``arpo doctor``, tier selection and the missing-engine error."""
from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

import typer

from tests.helpers.tier_support import require
from arpo_env.envs.python.cli import register
from arpo_env.envs.python import SandboxUnavailable, make_python_tool
from arpo_env.envs.python.config import SandboxConfig
from arpo_env.envs.python.tiers import pick


def _app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def root() -> None:
        """arpo"""

    register(app)
    return app


def test_doctor_json_reports_every_tier():
    app = _app()
    result = CliRunner().invoke(app, ["doctor", "--json", "--tier", "subprocess", "--tier", "docker",
                                      "--tier", "bwrap"])
    assert result.exit_code == 0, result.output
    rows = {r["tier"]: r for r in json.loads(result.output)}
    assert set(rows) == {"subprocess", "bwrap", "docker"}
    assert rows["subprocess"]["works"] is True and rows["subprocess"]["fork_ms"] > 0
    for row in rows.values():
        assert row["reason"]  # works or not, it says why


def test_missing_docker_engine_is_a_clear_error():
    with pytest.raises(SandboxUnavailable, match="setup_docker.sh"):
        make_python_tool(sandbox="docker", docker_url="unix:///nonexistent/docker.sock")


def test_missing_docker_image_is_a_clear_error():
    require("docker")  # the engine must answer for the image check to be reached
    with pytest.raises(SandboxUnavailable, match="no image"):
        make_python_tool(sandbox="docker", docker_image="arpo-no-such-image:none")


def test_auto_picks_the_strongest_working_tier(tier):
    chosen = pick(SandboxConfig(sandbox="auto")).name
    order = ["docker", "bwrap", "subprocess"]
    assert order.index(chosen) <= order.index(tier)  # never weaker than a tier that works


def test_config_validation():
    with pytest.raises(ValueError):
        SandboxConfig(timeout=0)
    with pytest.raises(ValueError):
        SandboxConfig(sandbox="firecracker")
