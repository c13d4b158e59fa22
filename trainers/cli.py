"""``arpo train``: run ARPO or GRPO from a YAML config and/or flags (loaded by ``arpo_env.cli``).

``arpo train --config run.yaml --steps 2 --rollout.algorithm grpo``: flags are :class:`TrainConfig` fields
(parsed by tyro; ``--help-config`` lists them all with their docstrings) and override the file.
torch and transformers are imported inside.
"""
from __future__ import annotations

from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    from arpo_env.trainers.show import register as register_show

    register_show(app)  # ``arpo show RUN --step N``: the sampled trajectories of a step
    @app.command("train", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
    def train(ctx: typer.Context,
              config: Optional[str] = typer.Option(None, "--config", "-c", help="YAML file of TrainConfig fields."),
              help_config: bool = typer.Option(False, "--help-config", help="List every config field (flag, default, meaning) and exit."),
              print_config: bool = typer.Option(False, "--print-config", help="Print the resolved config and exit.")
              ) -> None:
        """Train a tool-using agent with ARPO (or the GRPO baseline). Any TrainConfig field is a flag
        (--help-config lists them with their meaning)."""
        from arpo_env.trainers.config import TrainConfig

        if help_config:
            print(TrainConfig.help_text())
            return
        try:
            cfg = TrainConfig.from_yaml(config, ctx.args) if config else TrainConfig.from_args(ctx.args)
        except (ValueError, FileNotFoundError) as exc:  # the message names the flag or key (and a close match)
            typer.echo(f"arpo train: {exc}", err=True)
            raise typer.Exit(2) from None
        if print_config:
            print(cfg.to_yaml())
            return
        import logging
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        from arpo_env.folder_lock import FolderBusy
        from arpo_env.trainers.checkpoint import NoValidCheckpoint
        from arpo_env.trainers.trainer import Trainer

        try:
            trainer = Trainer(cfg)
        except (FolderBusy, NoValidCheckpoint) as exc:  # one line, no traceback
            typer.echo(f"arpo train: {exc}", err=True)
            raise typer.Exit(2) from None
        if trainer.resumed_from is not None:
            print(f"resumed from {trainer.resumed_from} at step {trainer.step}", flush=True)
        try:
            history = trainer.train()
        finally:
            trainer.close()
        if history:
            last = history[-1]
            print(f"done: step {trainer.step}, reward {last['reward']:.4f}, accuracy {last['accuracy']:.3f}, "
                  f"tool calls/sample {last['tool_calls_per_sample']:.2f}; outputs in {cfg.output_dir}", flush=True)
        else:
            print(f"nothing to do: already at step {trainer.step} of {cfg.steps}", flush=True)
