"""``arpo train`` and ``arpo export`` (loaded by ``arpo_env.cli``; torch and transformers imported inside).

``arpo train --config run.yaml --steps 2 --rollout.algorithm grpo``: flags are :class:`TrainConfig` fields
(parsed by tyro; ``--help-config`` lists them all with their docstrings) and override the file. A folder
holding a run with other settings is refused (exit 2, the differences listed) unless ``--force`` or
``--new-run`` (:mod:`arpo_env.trainers.run_folder`). torch and transformers are imported inside.

Spellings shared with the other commands: ``--env X`` is ``--env-id X``; ``-m X``/``--module X`` add ``X`` to
``--imports``. Before the model loads, the config's imports are imported, ``env_id`` must be registered
and ``model``/``tokenizer`` must be a folder that exists, ``tiny`` or (online) a hub id; every problem is
one line naming the flag or key, exit status 2.

``arpo train --nproc N ...`` runs the same command as N ranks under ``torchrun --standalone`` (one machine;
across machines run ``torchrun --nnodes`` yourself: docs/scaling.md).

``arpo export RUN_DIR|STEP_DIR --out DIR [--dtype bf16]``: a standalone model folder (safetensors, LoRA
merged, no training state) of a checkpoint (:mod:`arpo_env.trainers.export`).
"""
from __future__ import annotations

import os
import subprocess
import sys
from typing import TYPE_CHECKING, Optional

import typer

from arpo_env.errors import check_model_path, import_modules, user_message

if TYPE_CHECKING:
    from arpo_env.trainers.config import TrainConfig


def normalize_args(args: list[str]) -> list[str]:
    """``--env`` as ``--env-id``, and every ``-m X``/``--module X`` (and ``--imports A B``) into one
    ``--imports`` flag at the end (tyro keeps only the last of a repeated list flag)."""
    out: list[str] = []
    imports: list[str] | None = None
    i = 0
    while i < len(args):
        a = args[i]
        flag, eq, value = a.partition("=")
        if flag == "--env":
            out.append("--env-id" + (eq + value if eq else ""))
        elif flag in ("-m", "--module"):
            imports = imports or []
            if eq:
                imports.append(value)
            elif i + 1 < len(args):
                imports.append(args[i + 1])
                i += 1
        elif flag == "--imports":
            imports = imports or []
            if eq:
                imports.append(value)
            while not eq and i + 1 < len(args) and not args[i + 1].startswith("-"):
                imports.append(args[i + 1])
                i += 1
        else:
            out.append(a)
        i += 1
    return out + (["--imports", *imports] if imports is not None else [])


def launch(nproc: int, argv: list[str]) -> int:
    """Run ``arpo ARGV`` (``--nproc`` removed) as ``nproc`` ranks under ``torchrun --standalone``; returns
    its exit status (non-zero when any rank failed: torchrun then stops the others)."""
    rest, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--nproc":
            skip = True
        elif not a.startswith("--nproc="):
            rest.append(a)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "arpo_env.cli", *rest]
    return subprocess.call(cmd)


def _precheck(cfg: TrainConfig) -> None:
    """What can fail before the model loads (see the module docstring)."""
    from arpo_env.registry import get_record

    import_modules(list(cfg.imports), "--imports")
    get_record(cfg.env_id)
    check_model_path(cfg.model, "--model", names=("tiny",))
    check_model_path(cfg.tokenizer, "--tokenizer")


def register(app: typer.Typer) -> None:
    from arpo_env.trainers.show import register as register_show

    register_show(app)  # ``arpo show RUN --step N``: the sampled trajectories of a step
    register_sft(app)  # ``arpo sft`` and ``arpo traces``
    @app.command("train", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
    def train(ctx: typer.Context,
              config: Optional[str] = typer.Option(None, "--config", "-c", help="YAML file of TrainConfig fields."),
              help_config: bool = typer.Option(False, "--help-config", help="List every config field (flag, default, meaning) and exit."),
              print_config: bool = typer.Option(False, "--print-config", help="Print the resolved config and exit."),
              force: bool = typer.Option(False, "--force", help="Continue a run in --output-dir although settings changed (recorded in forced_changes.jsonl)."),
              new_run: bool = typer.Option(False, "--new-run", help="Archive the run in --output-dir (to archive/TIMESTAMP/) and start over."),
              nproc: int = typer.Option(1, "--nproc", help="Processes (ranks) on this machine: runs this command under torchrun --standalone --nproc_per_node N (one per GPU; see docs/scaling.md).")
              ) -> None:
        """Train a tool-using agent with ARPO (or the GRPO baseline). Any TrainConfig field is a flag
        (--help-config lists them with their meaning)."""
        from arpo_env.trainers.config import TrainConfig

        if help_config:
            print(TrainConfig.help_text())
            return
        if nproc > 1 and "LOCAL_RANK" not in os.environ:  # relaunch this command as N ranks
            raise typer.Exit(launch(nproc, sys.argv[1:]))
        args = normalize_args(list(ctx.args))
        try:
            cfg = TrainConfig.from_yaml(config, args) if config else TrainConfig.from_args(args)
        except FileNotFoundError:
            typer.echo(f"arpo train: --config {config}: file not found", err=True)
            raise typer.Exit(2) from None
        except ValueError as exc:  # the message names the flag or key (and a close match)
            text = str(exc)
            if config and text.startswith("TrainConfig"):  # a key of the file
                text = f"--config {config}: {text}"
            typer.echo(f"arpo train: {text}", err=True)
            raise typer.Exit(2) from None
        except Exception as exc:
            message = user_message(exc)  # a malformed YAML file
            if message is None:
                raise
            typer.echo(f"arpo train: --config {config}: {message}", err=True)
            raise typer.Exit(2) from None
        if print_config:
            print(cfg.to_yaml())
            return
        _precheck(cfg)
        import logging
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        from arpo_env.folder_lock import FolderBusy
        from arpo_env.trainers.checkpoint import NoValidCheckpoint
        from arpo_env.trainers.run_folder import RunSettingsChanged
        from arpo_env.trainers.trainer import Trainer

        if force and new_run:
            typer.echo("arpo train: --force and --new-run exclude each other", err=True)
            raise typer.Exit(2)
        try:
            trainer = Trainer(cfg, force=force, new_run=new_run)
        except (FolderBusy, NoValidCheckpoint, RunSettingsChanged) as exc:  # short, no traceback
            typer.echo(f"arpo train: {exc}", err=True)
            raise typer.Exit(2) from None
        main = trainer.dist.is_main  # other ranks print nothing
        if trainer.resumed_from is not None and main:
            print(f"resumed from {trainer.resumed_from} at step {trainer.step}", flush=True)
        try:
            history = trainer.train()
        finally:
            trainer.close()
        if not main:
            return
        if history:
            last = history[-1]
            print(f"done: step {trainer.step}, reward {last['reward']:.4f}, accuracy {last['accuracy']:.3f}, "
                  f"tool calls/sample {last['tool_calls_per_sample']:.2f}; outputs in {cfg.output_dir}", flush=True)
        else:
            print(f"nothing to do: already at step {trainer.step} of {cfg.steps}", flush=True)

    @app.command("export")
    def export(source: str = typer.Argument(..., help="A run folder (its newest valid checkpoint) or a checkpoint step folder."),
               out: str = typer.Option(..., "--out", "-o", help="The model folder to write (must not exist, or be empty)."),
               dtype: str = typer.Option("auto", help="Weights dtype: auto (as trained), bf16, fp16 or fp32."),
               force: bool = typer.Option(False, "--force", help="Replace OUT if it holds files.")) -> None:
        """Write a checkpoint as a standalone Hugging Face model folder (safetensors, LoRA merged) for
        vLLM, transformers and other tools."""
        from arpo_env.checkpoints import CheckpointInvalid, NoValidCheckpoint
        from arpo_env.trainers.export import ExportError, export_checkpoint

        try:
            info = export_checkpoint(source, out, dtype=dtype, force=force)
        except (CheckpointInvalid, NoValidCheckpoint, ExportError) as exc:
            typer.echo(f"arpo export: {exc}", err=True)
            raise typer.Exit(2) from None
        print(f"exported {info['checkpoint']} ({info['dtype']}) to {out}", flush=True)


def register_sft(app: typer.Typer) -> None:
    """``arpo sft`` and ``arpo traces`` (see :mod:`arpo_env.trainers.sft`, :mod:`arpo_env.trainers.traces`)."""

    @app.command("sft", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
    def sft(ctx: typer.Context,
            config: Optional[str] = typer.Option(None, "--config", "-c", help="YAML file of SFTConfig fields."),
            help_config: bool = typer.Option(False, "--help-config", help="List every SFTConfig field and exit."),
            adapter_out: Optional[str] = typer.Option(None, "--adapter-out", help="Also write the LoRA adapter (fp16) here.")
            ) -> None:
        """Supervised fine-tuning on tool trajectories (loss on model tokens only). Any SFTConfig field is a
        flag, e.g. --data traces.jsonl --lora-r 8 --epochs 1."""
        from arpo_env.trainers.sft import SFTConfig, export_adapter, run_sft

        if help_config:
            print(SFTConfig.help_text())
            return
        try:
            cfg = SFTConfig.from_yaml(config, list(ctx.args)) if config else SFTConfig.from_args(list(ctx.args))
            history = run_sft(cfg)
        except (ValueError, FileNotFoundError) as exc:
            typer.echo(f"arpo sft: {exc}", err=True)
            raise typer.Exit(2) from None
        if history:
            print(f"done: step {history[-1]['step']}, loss {history[-1]['loss']:.4f}; outputs in {cfg.output_dir}")
        if adapter_out:
            print(f"adapter written to {export_adapter(cfg.output_dir, adapter_out)}")

    @app.command("traces")
    def traces(out: str = typer.Option("traces.jsonl", "--out", "-o", help="ShareGPT JSONL to write."),
               env: list[str] = typer.Option(["arpo/Calculator-v0=100"], "--env",
                                             help="ENV_ID=N or ENV_ID:TEACHER=N (repeatable): N teacher trajectories in "
                                                  "ENV_ID; TEACHER: calculator, python, search, qa, fact, word."),
               seed: int = typer.Option(0, help="Seed of tasks and wording."),
               search_backend: Optional[str] = typer.Option(
                   None, help="Search backend of Search-v0/MultiTool-v0 (bm25, hybrid, ...; default: auto).")) -> None:
        """Teacher demonstrations played through the real envs, decontaminated against the benchmarks."""
        import json

        from arpo_env.trainers.traces import DecontaminationError, write_traces
        try:
            counts = {e.split("=")[0]: int(e.split("=")[1]) if "=" in e else 100 for e in env}
            report = write_traces(out, counts, seed, search_backend)
        except (ValueError, DecontaminationError) as exc:
            typer.echo(f"arpo traces: {exc}", err=True)
            raise typer.Exit(2) from None
        print(json.dumps(report))
