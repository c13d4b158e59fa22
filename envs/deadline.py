"""Deadlines for the envs: :func:`run_with_deadline` lives in the core (:mod:`arpo_env.deadline`), shared
with the agents' HTTP clients; this module keeps the envs' import path."""
from __future__ import annotations

from arpo_env.deadline import run_with_deadline, total_deadline

__all__ = ["run_with_deadline", "total_deadline"]
