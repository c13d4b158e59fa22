"""The ``bwrap`` tier: the worker inside bubblewrap (Debian package ``bubblewrap``).

Read-only view of the whole system, private tmpfs ``/tmp`` (size-limited; holds the scratch dirs),
``/var/tmp`` and ``/run``, new ``/dev`` and ``/proc``, every namespace unshared (user, pid, network,
ipc, uts, cgroup), all capabilities dropped, ``--new-session``, ``--die-with-parent``, uid/gid 65534
inside. bwrap itself runs unprivileged: started as root, a small prestage hides the homes (re-binding
the interpreter when it lives under one) in a private mount namespace, drops to the tree's own high uid
and execs bwrap, so the sandbox maps to an unprivileged uid on the host. An interpreter under one of
the private tmpfs dirs (a venv in ``/tmp``) is bound back read-only over bwrap's own tmpfs. The same
rlimits as the subprocess tier apply inside. Forks are ``os.fork`` inside the sandbox (one sandbox per tree).
"""
from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess

from arpo_env.envs.python import channel
from arpo_env.envs.python.config import SandboxConfig
from arpo_env.envs.python.protocol import Zygote
from arpo_env.envs.python.tiers import common

INNER_UID = 65534


def _bwrap_args(config: SandboxConfig, python: str, prestaged: bool) -> list[str]:
    bwrap = shutil.which("bwrap") or "bwrap"
    args = [bwrap, "--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL",
            "--uid", str(INNER_UID), "--gid", str(INNER_UID), "--hostname", "sandbox",
            "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
            "--size", str(config.scratch_mb << 20), "--tmpfs", "/tmp",
            "--tmpfs", "/var/tmp", "--tmpfs", "/run", "--chdir", "/tmp", "--clearenv"]
    if config.network:
        args.insert(2, "--share-net")
    if not prestaged:  # unprivileged caller: hide the homes here and re-bind the interpreter
        for path in config.hide_paths:
            if os.path.isdir(path):
                args += ["--tmpfs", path]
        for path in common.keep_paths(config, python):
            args += ["--ro-bind", path, path]
    else:  # the prestage hid the homes; bwrap's own tmpfs dirs still cover an interpreter in /tmp
        for path in common.private_keep_paths(config, python):
            args += ["--ro-bind", path, path]
    for key, value in common.scrubbed_env().items():
        args += ["--setenv", key, value]
    return args


@functools.lru_cache(maxsize=4)
def _probe(prestage_ok: bool) -> tuple[bool, str]:
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return False, "bwrap is not installed (apt-get install -y bubblewrap)"
    cmd = [bwrap, "--unshare-all", "--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev", "true"]
    pre = None
    if common.is_root():
        def pre() -> None:  # run the probe as an unprivileged uid, as the real sandbox does
            os.setgid(common.UID_BASE - 1)
            os.setuid(common.UID_BASE - 1)
    try:
        res = subprocess.run(cmd, preexec_fn=pre, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"bwrap failed to run: {exc}"
    if res.returncode != 0:
        return False, (f"bwrap cannot create namespaces here ({res.stderr.strip()[:200]}); it needs "
                       "unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1)")
    return True, "bubblewrap works (user, pid, net, mount namespaces)"


class BwrapTier:
    name = "bwrap"
    fork_method = "os.fork of the session worker inside the bubblewrap sandbox (copy-on-write)"

    def available(self, config: SandboxConfig) -> tuple[bool, str]:
        return _probe(common.is_root())

    def start(self, config: SandboxConfig) -> Zygote:
        uid, own = common.start_checks(self, config)
        python = common.interpreter(config)
        host, worker = channel.pair()
        inner = common.worker_config(config, {"fd": worker.fileno()}, uid=INNER_UID, own_uid=True, limit_nproc=own)
        argv = _bwrap_args(config, python, prestaged=uid is not None) + [
            "--", python, "-I", "-c", common.worker_source(), json.dumps(inner)]
        if uid is not None:
            outer = {"prestage": True, "uid": uid, "exec": argv, "marker": common.MARKER,
                     "setup": {"hide": list(config.hide_paths), "keep": common.keep_paths(config, python)}}
            argv = [python, "-I", "-c", common.worker_source(), json.dumps(outer)]
        try:
            proc = subprocess.Popen(argv, pass_fds=(worker.fileno(),), env=common.scrubbed_env(), cwd="/",
                                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL, start_new_session=True)
        finally:
            worker.close()
        return Zygote(host, proc.pid, uid, own, proc)

    def stop(self, zygote: Zygote) -> None:
        try:
            zygote.ctl.close()
        except OSError:
            pass
        common.stop_popen(zygote.handle)
        if zygote.own_uid and zygote.uid is not None:
            common.kill_uid(zygote.uid)
