"""An output folder holds one run: a rerun with other settings is refused, as ``arpo eval`` refuses one.

:func:`check_run_folder` compares the settings of a new :class:`~arpo_env.trainers.config.TrainConfig`
with those of the run already in the folder (its ``config.yaml``, else its newest checkpoint's
``state.json``) and raises :class:`RunSettingsChanged` listing the differences and the fixes: another
``--output-dir``, ``--new-run`` (the old run is moved to ``archive/TIMESTAMP/`` and a new one starts) or
``--force`` (continue from the newest checkpoint with the new settings; the change is appended to
``forced_changes.jsonl`` once a step runs). ``--no-resume`` on a folder holding a run needs ``--new-run``.

Settings that do not change what the steps compute are not compared (:data:`NOT_COMPARED`: the step
target, where outputs go, logging, checkpoint cadence, evaluation, worker counts, the device); changing
them is a normal resume (``--steps 8`` extends a finished run of 4).

Nothing is written here except by ``--new-run``; the trainer writes ``config.yaml`` (and a forced change)
only when it is about to run a step (:func:`record_settings`), so a rerun that does nothing, or is
refused, leaves the folder as it was (byte for byte; the lock file ``.arpo.lock`` excepted).

Not covered: a model file changed in place under the same path (paths are compared, not contents).
"""
from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from arpo_env.checkpoints import CHECKPOINTS, checkpoints
from arpo_env.trainers.config import TrainConfig

CONFIG = "config.yaml"
FORCED = "forced_changes.jsonl"
RUN_ENTRIES = (CONFIG, "metrics.jsonl", CHECKPOINTS, "tb", "eval", FORCED)
"""What a run writes into its folder (``--new-run`` archives these)."""
NOT_COMPARED = frozenset({"steps", "output_dir", "resume", "progress", "tensorboard", "save_every",
                          "keep_checkpoints", "eval_every", "eval_prompts", "eval_benchmark", "eval_env",
                          "eval_env_kwargs", "tool_workers", "max_batch_size", "device", "parallel",
                          "dist_timeout_s"})


class RunSettingsChanged(RuntimeError):
    """The output folder holds a run made with other settings."""

    def __init__(self, out: Path, diffs: list[str], hint: str | None = None):
        self.out, self.diffs = out, diffs
        fix = hint or ("Use another --output-dir, --new-run to archive it and start over, or --force to "
                       "continue with the new settings.")
        super().__init__(f"{out} holds a run made with other settings:\n  " + "\n  ".join(diffs) + "\n" + fix)


def _flat(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, Mapping) and k == "rollout":
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = list(v) if isinstance(v, tuple) else v
    return out


def previous_settings(out: Path) -> dict[str, Any] | None:
    """The settings of the run in ``out`` (``config.yaml``, else the newest checkpoint's), ``None`` if none."""
    if (out / CONFIG).is_file():
        data = yaml.safe_load((out / CONFIG).read_text())
        return data if isinstance(data, dict) else {}
    for ckpt in reversed(checkpoints(out / CHECKPOINTS)):
        try:
            state = json.loads((ckpt / "state.json").read_text())
        except (OSError, ValueError):
            continue
        if isinstance(state.get("config"), dict):
            return dict(state["config"])
    return None


def settings_diff(old: Mapping[str, Any], new: TrainConfig) -> list[str]:
    """``["lr: 1e-06 -> 0.001", ...]``: the compared settings that differ (fields missing from ``old``,
    written by an older version, count as their defaults)."""
    defaults = _flat(TrainConfig().to_dict())
    before = {**defaults, **_flat(old)}
    after = _flat(new.to_dict())
    return [f"{k}: {before.get(k)!r} -> {after[k]!r}" for k in after
            if k not in NOT_COMPARED and k.split(".")[0] not in NOT_COMPARED
            and json.dumps(before.get(k), sort_keys=True) != json.dumps(after[k], sort_keys=True)]


def check_run_folder(cfg: TrainConfig, *, force: bool = False, new_run: bool = False) -> list[str]:
    """Refuse (:class:`RunSettingsChanged`) or archive (``new_run``) as the module docstring says; returns
    the differences that ``force`` lets through (empty for a plain resume or a fresh folder)."""
    out = Path(cfg.output_dir)
    old = previous_settings(out) if out.is_dir() else None
    if old is None:
        return []
    if new_run:
        archive_run(out)
        return []
    diffs = settings_diff(old, cfg)
    if not cfg.resume:
        raise RunSettingsChanged(out, diffs or ["resume: True -> False"],
                                 "--no-resume would start over in a folder that holds a run: use --new-run to "
                                 "archive it first, or another --output-dir.")
    if diffs and not force:
        raise RunSettingsChanged(out, diffs)
    return diffs


def archive_run(out: Path) -> Path:
    """Move the run's entries (:data:`RUN_ENTRIES`) into ``out/archive/TIMESTAMP/``."""
    dest = out / "archive" / datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%f")
    dest.mkdir(parents=True)
    for name in RUN_ENTRIES:
        if (out / name).exists():
            shutil.move(str(out / name), str(dest / name))
    return dest


def record_settings(cfg: TrainConfig, forced: list[str], step: int) -> None:
    """Write ``config.yaml`` (only when its text changes) and append a forced change to
    ``forced_changes.jsonl``; called when the first step of this invocation is about to run."""
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    text = cfg.to_yaml()
    path = out / CONFIG
    if not path.is_file() or path.read_text() != text:
        path.write_text(text)
    if forced:
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        with open(out / FORCED, "a", encoding="utf-8") as f:
            f.write(json.dumps({"at": now, "from_step": step, "changes": forced}) + "\n")
