"""Helpers shared by the tiers: the worker's source, uids, process-tree teardown."""
from __future__ import annotations

import functools
import os
import secrets
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Protocol

from arpo_env.envs.python.config import SandboxConfig
from arpo_env.envs.python.protocol import SandboxUnavailable

WORKER_PATH = Path(__file__).resolve().parent.parent / "worker.py"
MARKER = "arpo-python-worker"
"""Appears in every worker's command line (process scans in tests and ``arpo doctor``)."""
UID_BASE, UID_SPAN = 0x40000, 1 << 22


@functools.lru_cache(maxsize=1)
def worker_source() -> str:
    return WORKER_PATH.read_text()


def worker_config(config: SandboxConfig, channel: dict[str, Any], *, uid: int | None, own_uid: bool,
                  limit_nproc: bool) -> dict[str, Any]:
    """The JSON config every tier passes to a zygote (:mod:`arpo_env.envs.python.worker`).

    ``channel`` says how it reaches the host: ``{"fd": n}`` (an inherited socket) or ``{"connect": path}``.
    ``uid`` is the uid (and gid) its sessions drop to (``None``: stay), ``own_uid`` whether that uid belongs
    to this tree alone (the zygote may then kill all its processes), ``limit_nproc`` whether the process
    count rlimit applies (only safe with a uid of the tree's own). A tier adds its extras (``setup``)."""
    return {**channel, "uid": uid, "gid": uid, "own_uid": own_uid, "rlimits": config.rlimits(nproc=limit_nproc),
            "scratch_root": "/tmp/arpo", "max_output_bytes": max(4096, config.max_output_chars * 4),
            "marker": MARKER}


def is_root() -> bool:
    return os.geteuid() == 0


def tree_uid(config: SandboxConfig) -> tuple[int | None, bool]:
    """(uid for a new tree, whether it is the tree's own). Only root can switch uid."""
    if not is_root():
        return None, False
    if config.uid is not None:
        return config.uid, False
    return UID_BASE + secrets.randbelow(UID_SPAN), True


class _Probe(Protocol):
    def available(self, config: SandboxConfig) -> tuple[bool, str]: ...


def start_checks(tier: _Probe, config: SandboxConfig) -> tuple[int | None, bool]:
    """What every tier's ``start`` begins with: raise :class:`SandboxUnavailable` (with the tier's reason)
    unless it works here, then the tree's uid and whether it is the tree's own (:func:`tree_uid`)."""
    ok, why = tier.available(config)
    if not ok:
        raise SandboxUnavailable(why)
    return tree_uid(config)


def interpreter(config: SandboxConfig) -> str:
    return config.python or sys.executable


def python_prefixes(python: str) -> list[str]:
    """Directories the sandboxed interpreter needs to see (prefix, base prefix, resolved binary dir)."""
    dirs = {sys.prefix, sys.base_prefix, str(Path(python).absolute().parent.parent),  # a venv: its own dir
            str(Path(os.path.realpath(python)).parent.parent)}
    return sorted(d for d in dirs if d and d != "/")


PRIVATE_DIRS = ("/tmp", "/var/tmp", "/dev/shm", "/run")
"""Dirs every tier covers with its own empty tmpfs (bwrap: /tmp, /var/tmp, /run; the root setup: /tmp,
/var/tmp, /dev/shm)."""


def _under(path: str, dirs: tuple[str, ...]) -> bool:
    return any(path == d or path.startswith(d.rstrip("/") + "/") for d in dirs)


def keep_paths(config: SandboxConfig, python: str) -> list[str]:
    """Interpreter dirs that sit under a hidden path or a private tmpfs dir (a venv in /tmp) and must be
    re-bound read-only inside the sandbox."""
    return [p for p in python_prefixes(python) if _under(p, config.hide_paths) or _under(p, PRIVATE_DIRS)]


def private_keep_paths(config: SandboxConfig, python: str) -> list[str]:
    """The :func:`keep_paths` under :data:`PRIVATE_DIRS` (bwrap re-binds these after its own tmpfs mounts)."""
    return [p for p in keep_paths(config, python) if _under(p, PRIVATE_DIRS)]


def scrubbed_env() -> dict[str, str]:
    """The whole environment of a worker: nothing of the trainer's (tokens, keys) leaks in."""
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONHASHSEED": "0",
            "HOME": "/tmp", "GLIBC_TUNABLES": "glibc.malloc.hugetlb=1", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def kill_uid(uid: int) -> None:
    """SIGKILL every process of ``uid`` (root only; ``uid`` must belong to one tree alone)."""
    if not is_root() or uid < UID_BASE:
        return
    kill = shutil.which("kill") or "/bin/kill"

    def as_uid() -> None:
        os.setgid(uid)
        os.setuid(uid)

    subprocess.run([kill, "-9", "-1"], preexec_fn=as_uid, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, close_fds=True, env={}, check=False)


def uid_processes(uid: int) -> list[int]:
    """Pids of live processes whose real uid is ``uid`` (zombies excluded)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            status = Path(f"/proc/{entry}/status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        if fields.get("Uid", "").split()[:1] == [str(uid)] and not fields.get("State", "").strip().startswith("Z"):
            out.append(int(entry))
    return out


def stop_popen(proc: subprocess.Popen, timeout: float = 5.0) -> None:
    """Close-then-kill a zygote process we started, and reap it."""
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            proc.kill()
        proc.wait(timeout=timeout)
