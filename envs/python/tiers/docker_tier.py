"""The ``docker`` tier: one container per tree, through the ``docker`` SDK.

Container: ``network_mode="none"``, read-only root, tmpfs ``/tmp`` (scratch, size-limited), ``/run`` and
``/var/tmp``, memory limit (swap included) and pids limit, all capabilities dropped, ``no-new-privileges``,
a non-root uid (the tree's own high uid when the host is root, else 65534), a scrubbed environment.
The worker source goes in on the command line; the control channel is a UNIX socket in a host directory
mounted read-only at ``/chan`` (no network needed). Sessions fork with ``os.fork`` inside the container,
exactly as in the other tiers (fork kind ``process``); the container is removed when the tree closes.
Needs a running engine and the image (``scripts/setup_docker.sh`` builds both without a registry).
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
import time
from typing import Any

from arpo_env.envs.python.config import SandboxConfig
from arpo_env.envs.python.protocol import SandboxError, SandboxUnavailable, Zygote
from arpo_env.envs.python.tiers import common
from arpo_env.extras import MissingExtra, require

SETUP_HINT = "start the engine and build the image with scripts/setup_docker.sh (root, ~1 min)"


def _client(config: SandboxConfig) -> Any:
    try:  # a tier that cannot run is unavailable (the tier picker falls back); the reason names the extra
        docker = require("docker", "docker", needed_by="the docker sandbox tier")
    except MissingExtra as exc:
        raise SandboxUnavailable(str(exc)) from None
    try:
        client = (docker.DockerClient(base_url=config.docker_url, timeout=30) if config.docker_url
                  else docker.from_env(timeout=30))
        client.ping()
    except Exception as exc:  # DockerException, requests errors, bad URL
        where = config.docker_url or os.environ.get("DOCKER_HOST") or "the local socket"
        raise SandboxUnavailable(f"no Docker engine answers at {where} ({type(exc).__name__}); {SETUP_HINT}") from None
    return client


class DockerTier:
    name = "docker"
    fork_method = "os.fork of the session worker inside the container (copy-on-write)"

    def __init__(self) -> None:
        self._client: Any = None

    def client(self, config: SandboxConfig) -> Any:
        if self._client is None:
            self._client = _client(config)
        return self._client

    def available(self, config: SandboxConfig) -> tuple[bool, str]:
        try:
            client = self.client(config)
        except SandboxUnavailable as exc:
            return False, str(exc)
        docker = require("docker", "docker", needed_by="the docker sandbox tier")  # present: the client worked
        try:
            client.images.get(config.docker_image)
        except docker.errors.ImageNotFound:
            return False, f"the engine has no image {config.docker_image!r}; {SETUP_HINT}"
        except Exception as exc:
            return False, f"cannot query the engine: {type(exc).__name__}: {exc}"
        return True, f"engine answers, image {config.docker_image} present"

    def start(self, config: SandboxConfig) -> Zygote:
        uid, own = common.start_checks(self, config)
        user = uid if uid is not None else 65534
        sockdir = tempfile.mkdtemp(prefix="arpo-docker-")
        os.chmod(sockdir, 0o755)
        path = os.path.join(sockdir, "ctl.sock")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(path)
        os.chmod(path, 0o777)
        listener.listen(1)
        cfg = common.worker_config(config, {"connect": "/chan/ctl.sock"}, uid=user, own_uid=True, limit_nproc=own)
        container = None
        try:
            container = self.client(config).containers.run(
                config.docker_image, [config.docker_python, "-I", "-c", common.worker_source(), json.dumps(cfg)],
                detach=True, user=f"{user}:{user}", network_mode="none", read_only=True,
                tmpfs={"/tmp": f"size={config.scratch_mb}m,mode=1777", "/var/tmp": "size=8m,mode=1777",
                       "/run": "size=1m,mode=755"},
                mem_limit=f"{config.memory_mb}m", memswap_limit=f"{config.memory_mb}m",
                pids_limit=config.max_processes, cap_drop=["ALL"], security_opt=["no-new-privileges"],
                volumes={sockdir: {"bind": "/chan", "mode": "ro"}}, environment=common.scrubbed_env(),
                working_dir="/tmp", labels={"arpo-env": "python-sandbox"}, ipc_mode="private",
                auto_remove=True)  # a host that dies leaves no container behind
            listener.settimeout(config.start_timeout)
            try:
                ctl, _ = listener.accept()
            except TimeoutError:
                logs = container.logs(tail=20).decode(errors="replace")
                raise SandboxError(f"the container did not connect within {config.start_timeout} s: {logs}") from None
            ctl.settimeout(None)
            creds = ctl.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
            pid = int.from_bytes(creds[:4], "little")
        except Exception:
            if container is not None:
                _remove(container)
            shutil.rmtree(sockdir, ignore_errors=True)
            raise
        finally:
            listener.close()
        from arpo_env.envs.python.channel import SO_PASSCRED
        ctl.setsockopt(socket.SOL_SOCKET, SO_PASSCRED, 1)
        return Zygote(ctl, pid, uid, own, {"container": container, "sockdir": sockdir})

    def stop(self, zygote: Zygote) -> None:
        try:
            zygote.ctl.close()
        except OSError:
            pass
        handle = zygote.handle or {}
        if handle.get("container") is not None:
            _remove(handle["container"])
            handle["container"] = None
        if handle.get("sockdir"):
            shutil.rmtree(handle["sockdir"], ignore_errors=True)
            handle["sockdir"] = None


def _remove(container: Any) -> None:
    for _ in range(3):
        try:
            container.remove(force=True)
            return
        except Exception as exc:  # NotFound: already gone; APIError "removal in progress": retry
            if "No such container" in str(exc) or "404" in str(exc):
                return
            time.sleep(0.2)
