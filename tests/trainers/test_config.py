"""TrainConfig: the same run from Python, YAML and CLI flags (nested rollout fields included); errors name the
key and suggest close matches; every field's docstring is in ``--help-config``."""
import dataclasses
import subprocess
import sys

import pytest

from arpo_env.trainers.config import BranchingConfig, TrainConfig


def _all_fields():
    """Every flag name: the TrainConfig fields, the rollout's as ``rollout.NAME``."""
    for f in dataclasses.fields(TrainConfig):
        if f.name == "rollout":
            yield from ("rollout." + g.name for g in dataclasses.fields(BranchingConfig))
        else:
            yield f.name


def test_python_yaml_cli_agree(tmp_path):
    py = TrainConfig(rollout=BranchingConfig(algorithm="grpo", alpha=0.6, rollouts_per_prompt=4, initial_rollouts=2),
                     steps=2, lora=True, clip_high=0.28, env_kwargs={"max_tool_calls": 2}, adam_betas=(0.9, 0.95),
                     eval_benchmark=None, imports=["json", "math"])
    path = tmp_path / "run.yaml"
    py.to_yaml(path)
    assert TrainConfig.from_yaml(path) == py
    assert "rollout:\n  algorithm: grpo\n" in path.read_text()
    cli = TrainConfig.from_args(["--rollout.algorithm", "grpo", "--rollout.alpha", "0.6", "--steps", "2", "--lora",
                                 "--rollout.rollouts-per-prompt", "4", "--rollout.initial_rollouts", "2",
                                 "--clip-high=0.28", "--env_kwargs", '{"max_tool_calls": 2}',
                                 "--adam-betas", "0.9", "0.95", "--imports", "json", "math"])
    assert cli == py
    hand = tmp_path / "hand.yaml"
    hand.write_text("steps: 2\nlora: true\nclip_high: 0.28\nenv_kwargs: {max_tool_calls: 2}\nadam_betas: [0.9, 0.95]\n"
                    "imports: [json, math]\nrollout:\n  algorithm: grpo\n  alpha: 0.6\n  rollouts_per_prompt: 4\n"
                    "  initial_rollouts: 2\n")
    assert TrainConfig.from_yaml(hand) == py


def test_flags_override_yaml_and_booleans(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("steps: 5\nlora: true\nlr: 1e-5\nrollout: {alpha: 0.9, beam_size: 3}\n")
    cfg = TrainConfig.from_yaml(path, ["--steps", "7", "--no-lora", "--no-tensorboard", "--rollout.alpha", "0.1"])
    assert (cfg.steps, cfg.lora, cfg.lr, cfg.tensorboard) == (7, False, 1e-5, False)
    assert (cfg.rollout.alpha, cfg.rollout.beam_size) == (0.1, 3)  # the file's other rollout fields stay


def test_unknown_keys_suggest_and_wrong_types_name_the_key():
    with pytest.raises(ValueError, match="--clip-high"):
        TrainConfig.from_args(["--clip-hgh", "0.3"])
    with pytest.raises(ValueError, match="--rollout.alpha"):
        TrainConfig.from_args(["--rollout.alpah", "0.3"])
    with pytest.raises(ValueError, match="--steps"):
        TrainConfig.from_args(["--steps", "many"])
    with pytest.raises(ValueError, match="no field 'step'; did you mean 'steps'"):
        TrainConfig.from_dict({"step": 3})
    with pytest.raises(ValueError, match="no field 'rollout.alpah'; did you mean 'alpha'"):
        TrainConfig.from_dict({"rollout": {"alpah": 0.3}})
    with pytest.raises(ValueError, match=r"TrainConfig\.rollout\.beam_size: .*integer"):
        TrainConfig.from_dict({"rollout": {"beam_size": "two"}})
    with pytest.raises(ValueError, match=r"TrainConfig\.lora: .*boolean"):
        TrainConfig.from_dict({"lora": "maybe"})


def test_validation_names_the_field():
    with pytest.raises(ValueError, match="initial_rollouts"):
        BranchingConfig(rollouts_per_prompt=4, initial_rollouts=5)
    with pytest.raises(ValueError, match="algorithm"):
        BranchingConfig(algorithm="ppo")
    with pytest.raises(ValueError, match=r"rollout.*initial_rollouts"):
        TrainConfig.from_dict({"rollout": {"rollouts_per_prompt": 4, "initial_rollouts": 5}})
    for name, bad in [("steps", -1), ("save_every", -1), ("keep_checkpoints", 0), ("micro_batch_size", 0),
                      ("dtype", "int8")]:
        with pytest.raises(ValueError, match=rf"TrainConfig\.{name}:"):  # not "steps/save_every/keep"
            TrainConfig(**{name: bad})


def test_help_config_shows_every_field_with_its_doc():
    text = " ".join(TrainConfig.help_text().split())  # rich wraps lines: compare whitespace-normalised
    for name in _all_fields():
        assert "--" + name.replace("_", "-") in text, name
    for cls in (TrainConfig, BranchingConfig):  # a docstring fragment under every field
        import ast
        import inspect
        import textwrap
        body = ast.parse(textwrap.dedent(inspect.getsource(cls))).body[0].body
        docs = [n.value.value for p, n in zip(body, body[1:]) if isinstance(p, ast.AnnAssign)
                and not str(p.target.id).startswith("__") and isinstance(n, ast.Expr)]
        fields = [f.name for f in dataclasses.fields(cls)]
        assert len(docs) == len(fields)
        for doc in docs:
            assert " ".join(doc.split())[:30] in text, doc
    assert "Base branch probability alpha" in text


def test_cli_help_config_and_print_config(tmp_path):
    path = tmp_path / "run.yaml"
    TrainConfig(steps=3, rollout=BranchingConfig(algorithm="grpo")).to_yaml(path)
    run = lambda *a: subprocess.run([sys.executable, "-m", "arpo_env.cli", "train", *a], capture_output=True,
                                    text=True)
    out = run("--help-config")
    assert out.returncode == 0 and "--rollout.dynamic-split" in out.stdout and "AEPO" in out.stdout
    out = run("--config", str(path), "--steps", "2", "--rollout.alpha", "0.7", "--print-config")
    assert out.returncode == 0, out.stderr
    printed = TrainConfig.from_dict(__import__("yaml").safe_load(out.stdout))
    assert (printed.steps, printed.rollout.algorithm, printed.rollout.alpha) == (2, "grpo", 0.7)
    out = run("--stpes", "2", "--print-config")
    assert out.returncode != 0 and "--steps" in out.stdout + out.stderr


def test_defaults_are_arpo():
    c = TrainConfig()
    r = c.rollout
    assert (r.algorithm, r.rollouts_per_prompt, r.initial_rollouts, r.beam_size, r.alpha, r.beta,
            r.entropy_window) == ("arpo", 16, 8, 2, 0.5, 0.2, 20)
    assert (c.clip_low, c.clip_high, c.dual_clip_c, c.kl_coef, c.lr, c.grad_clip) == (0.2, 0.2, 3.0, 0.0, 1e-6, 1.0)
    assert r.branching and not BranchingConfig(algorithm="grpo").branching
