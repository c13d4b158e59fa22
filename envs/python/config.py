"""Configuration of the Python sandbox (one dataclass; every field is a keyword of ``make_python_tool``)."""
from __future__ import annotations

import os
from dataclasses import dataclass, field

TIERS = ("subprocess", "bwrap", "docker")
"""Sandbox tiers, weakest to strongest isolation of the system (``auto`` picks the strongest that works)."""


@dataclass
class SandboxConfig:
    """Limits and isolation settings of a Python session. Sizes in MiB, times in seconds."""

    sandbox: str = "auto"
    """``auto`` (strongest tier that works here: docker, then bwrap, then subprocess), ``subprocess``,
    ``bwrap`` or ``docker``."""
    timeout: float = 10.0
    """Wall-clock seconds one call may run; past it the session is killed and restarted (state lost)."""
    memory_mb: int = 1024
    """Memory of a session: ``RLIMIT_AS`` (subprocess, bwrap) or the container's memory limit (docker)."""
    cpu_seconds: int = 300
    """Total CPU seconds a session may use over its life (``RLIMIT_CPU``); past it the session is killed."""
    max_processes: int = 64
    """Processes and threads of one tree of sessions (``RLIMIT_NPROC`` on its own uid; docker pids limit)."""
    max_file_mb: int = 64
    """Largest file a session may write (``RLIMIT_FSIZE``); bigger writes fail with ``EFBIG``."""
    scratch_mb: int = 128
    """Size of the private tmpfs holding ``/tmp`` and the scratch dirs (disk a tree may fill)."""
    max_open_files: int = 256
    """``RLIMIT_NOFILE`` of a session."""
    max_output_chars: int = 8000
    """Output of a call kept for the agent (stdout and stderr together); the rest is cut with a marker."""
    network: bool = False
    """Allow network (subprocess tier only; default: a new, empty network namespace)."""
    uid: int | None = None
    """Uid the sessions run as when started as root (default: a fresh high uid per tree, so trees cannot
    signal each other and the whole tree can be killed by uid)."""
    hide_paths: tuple[str, ...] = field(default_factory=lambda: tuple(
        p for p in dict.fromkeys(["/root", "/home", os.path.expanduser("~")]) if p and p != "/"))
    """Directories replaced by an empty tmpfs inside the sandbox (the trainer's secrets)."""
    python: str | None = None
    """Interpreter for the subprocess and bwrap tiers (default: this one, ``sys.executable``)."""
    docker_image: str = os.environ.get("ARPO_DOCKER_IMAGE", "arpo-sandbox-python:latest")
    """Image of the docker tier (built by ``scripts/setup_docker.sh``)."""
    docker_url: str | None = os.environ.get("ARPO_DOCKER_URL") or None
    """Engine URL for the docker tier (default: ``DOCKER_HOST`` or the local socket)."""
    docker_python: str = "python3"
    """Interpreter inside the docker image."""
    pool_size: int = 0
    """Sandboxes kept started in the background for this configuration, so that a new episode's first call
    skips the sandbox start (0.05 / 0.15 / 0.3 s for subprocess / bwrap / docker here). Idle pooled
    sandboxes hold no session and die with this process. 0 disables the pool."""
    start_timeout: float = 30.0
    """Seconds to wait for a new sandbox to answer."""

    def __post_init__(self) -> None:
        if self.sandbox not in ("auto",) + TIERS:
            raise ValueError(f"sandbox must be 'auto' or one of {TIERS}, got {self.sandbox!r}")
        for name in ("timeout", "memory_mb", "cpu_seconds", "max_processes", "max_file_mb", "scratch_mb",
                     "max_open_files", "max_output_chars", "start_timeout"):
            if getattr(self, name) <= 0:
                raise ValueError(f"SandboxConfig.{name} must be positive, got {getattr(self, name)}")
        if self.pool_size < 0:
            raise ValueError(f"SandboxConfig.pool_size must be >= 0, got {self.pool_size}")
        self.hide_paths = tuple(self.hide_paths)

    def rlimits(self, *, nproc: bool = True) -> dict[str, int]:
        """The rlimits a session applies to itself (``nproc`` only when the tree has its own uid)."""
        limits = {"as": self.memory_mb << 20, "cpu": self.cpu_seconds, "fsize": self.max_file_mb << 20,
                  "nofile": self.max_open_files}
        if nproc:
            limits["nproc"] = self.max_processes
        return limits
