"""Sandbox tiers: ``subprocess`` (default), ``bwrap`` and ``docker``; :func:`get_tier` and :func:`pick`."""
from __future__ import annotations

from arpo_env.envs.python.config import TIERS, SandboxConfig
from arpo_env.envs.python.protocol import SandboxUnavailable, Tier


def get_tier(name: str) -> Tier:
    """The tier object for a name (no availability check)."""
    if name == "subprocess":
        from arpo_env.envs.python.tiers.subprocess_tier import SubprocessTier
        return SubprocessTier()
    if name == "bwrap":
        from arpo_env.envs.python.tiers.bwrap_tier import BwrapTier
        return BwrapTier()
    if name == "docker":
        from arpo_env.envs.python.tiers.docker_tier import DockerTier
        return DockerTier()
    raise ValueError(f"unknown sandbox tier {name!r}; choose one of {TIERS} or 'auto'")


def pick(config: SandboxConfig) -> Tier:
    """The tier ``config.sandbox`` names, checked; for ``auto`` the strongest that works here."""
    if config.sandbox != "auto":
        tier = get_tier(config.sandbox)
        ok, why = tier.available(config)
        if not ok:
            raise SandboxUnavailable(f"the {tier.name} sandbox cannot run here: {why}")
        return tier
    reasons = []
    for name in reversed(TIERS):
        tier = get_tier(name)
        ok, why = tier.available(config)
        if ok:
            return tier
        reasons.append(f"{name}: {why}")
    raise SandboxUnavailable("no sandbox tier works here: " + "; ".join(reasons))
