"""TrainConfig: the same run from Python, YAML and CLI flags; helpful errors; a docstring per field."""
from dataclasses import fields

import pytest

from arpo_env.trainers.config import TrainConfig, field_docs


def test_python_yaml_cli_agree(tmp_path):
    py = TrainConfig(algorithm="grpo", steps=2, lora=True, clip_high=0.28, env_kwargs={"max_tool_calls": 2},
                     adam_betas=(0.9, 0.95), eval_benchmark=None)
    path = tmp_path / "run.yaml"
    py.to_yaml(path)
    assert TrainConfig.from_yaml(path) == py
    cli = TrainConfig.from_args(["--algorithm", "grpo", "--steps", "2", "--lora", "--clip-high=0.28",
                                 "--env_kwargs", '{"max_tool_calls": 2}', "--adam-betas", "0.9,0.95"])
    assert cli == py


def test_flags_override_yaml_and_booleans(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("steps: 5\nlora: true\nlr: 1.0e-5\n")
    cfg = TrainConfig.from_yaml(path, ["--steps", "7", "--no-lora", "--tensorboard", "false"])
    assert (cfg.steps, cfg.lora, cfg.lr, cfg.tensorboard) == (7, False, 1e-5, False)


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="did you mean --clip-high"):
        TrainConfig.from_args(["--clip-hgh", "0.3"])
    with pytest.raises(ValueError, match="did you mean 'steps'"):
        TrainConfig.from_dict({"step": 3})
    with pytest.raises(ValueError, match="initial_rollouts"):
        TrainConfig(rollouts_per_prompt=4, initial_rollouts=5)
    with pytest.raises(ValueError, match="algorithm"):
        TrainConfig(algorithm="ppo")


def test_every_field_documented():
    docs = field_docs()
    missing = [f.name for f in fields(TrainConfig) if not docs.get(f.name)]
    assert not missing
    assert "--rollouts-per-prompt" in TrainConfig.help_text()


def test_defaults_are_arpo():
    c = TrainConfig()
    assert (c.rollouts_per_prompt, c.initial_rollouts, c.beam_size, c.branch_alpha, c.branch_beta,
            c.entropy_window) == (16, 8, 2, 0.5, 0.2, 20)
    assert (c.clip_low, c.clip_high, c.dual_clip_c, c.kl_coef, c.lr, c.grad_clip) == (0.2, 0.2, 3.0, 0.0, 1e-6, 1.0)
    assert TrainConfig(algorithm="grpo").initial_n == 16
