"""The ``subprocess`` tier (default): a worker process with rlimits, its own uid, no network, private
tmpfs dirs, hidden home directories, a scrubbed environment and no inherited file descriptors.

Started as root: the zygote (which never runs model code) enters new mount and network namespaces,
mounts the private tmpfs dirs and hides ``hide_paths`` (re-binding the interpreter read-only when it
lives under one, e.g. pyenv in ``/root``, or under a private tmpfs dir, e.g. a venv in ``/tmp``), then
every session drops to the tree's own high uid with ``no_new_privs`` before running any code. Started as a normal user: a user namespace is used for the
same mounts when the kernel permits; otherwise only rlimits, scratch dir and a scrubbed environment
(``available`` says so). Not covered: seccomp syscall filtering, cgroup memory accounting (``RLIMIT_AS``
bounds each process, ``RLIMIT_NPROC`` the number of them).
"""
from __future__ import annotations

import json
import os
import subprocess

from arpo_env.envs.python import channel
from arpo_env.envs.python.config import SandboxConfig
from arpo_env.envs.python.protocol import Zygote
from arpo_env.envs.python.tiers import common


class SubprocessTier:
    name = "subprocess"
    fork_method = "os.fork of the session worker (copy-on-write)"

    def available(self, config: SandboxConfig) -> tuple[bool, str]:
        python = common.interpreter(config)
        if not os.access(python, os.X_OK):
            return False, f"interpreter {python} is not executable"
        if not hasattr(os, "memfd_create"):
            return False, "os.memfd_create is missing (needs Linux)"
        if common.is_root():
            return True, "root: own uid per tree, new mount+network namespaces, rlimits"
        return True, ("not root: rlimits, scratch dir and scrubbed environment only (no uid switch, "
                      "no network namespace); use bwrap or docker for isolation")

    def start(self, config: SandboxConfig) -> Zygote:
        uid, own = common.start_checks(self, config)
        python = common.interpreter(config)
        host, worker = channel.pair()
        cfg = common.worker_config(config, {"fd": worker.fileno()}, uid=uid, own_uid=own, limit_nproc=own)
        if common.is_root():
            cfg["setup"] = {"netns": not config.network, "tmpfs_mb": config.scratch_mb,
                            "hide": list(config.hide_paths), "keep": common.keep_paths(config, python)}
        else:  # no private tmpfs: a host temp dir, removed in stop()
            cfg["scratch_root"] = _user_scratch()
        try:
            proc = subprocess.Popen([python, "-I", "-c", common.worker_source(), json.dumps(cfg)],
                                    pass_fds=(worker.fileno(),), env=common.scrubbed_env(), cwd="/",
                                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL, start_new_session=True)
        finally:
            worker.close()
        proc.arpo_scratch = None if common.is_root() else cfg["scratch_root"]  # type: ignore[attr-defined]
        return Zygote(host, proc.pid, uid, own, proc)

    def stop(self, zygote: Zygote) -> None:
        try:
            zygote.ctl.close()  # the zygote kills its tree and exits
        except OSError:
            pass
        common.stop_popen(zygote.handle)
        scratch = getattr(zygote.handle, "arpo_scratch", None)
        if scratch:
            import shutil
            shutil.rmtree(scratch, ignore_errors=True)
        if zygote.own_uid and zygote.uid is not None:
            common.kill_uid(zygote.uid)  # anything that escaped the zygote's own kill


def _user_scratch() -> str:
    import tempfile
    return tempfile.mkdtemp(prefix="arpo-python-")
