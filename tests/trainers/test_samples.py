"""``samples.jsonl``: a sample of each step's trajectories (text, tool calls, reward, branch points) written
by the trainer, resume-safe; ``arpo show RUN --step N`` prints it; TensorBoard gets it as text."""
import json
import shutil

import pytest
import typer
from typer.testing import CliRunner

from arpo_env.agents.testing import tiny_model_and_tokenizer
from arpo_env.trainers.checkpoint import latest_checkpoint
from arpo_env.trainers.config import BranchingConfig, TrainConfig
from arpo_env.trainers.samples import SAMPLES, read_samples
from arpo_env.trainers.show import BRANCH, register
from arpo_env.trainers.trainer import Trainer

pytestmark = pytest.mark.slow  # two small training runs (~20 s each on a CPU)

# alpha 1, beta 0: every tool call of a live trajectory forks while the prompt has room (M = 4, N = 1); the
# tiny model with stop_boost ends turns with closing tags, which the calculator env counts as (failed) calls
BRANCHY = dict(model="tiny", env_id="arpo/Calculator-v0", env_kwargs={"max_tool_calls": 3}, prompts_per_step=2,
               rollout=BranchingConfig(rollouts_per_prompt=4, initial_rollouts=1, alpha=1.0, beta=0.0),
               max_response_tokens=120, max_turn_tokens=24, micro_batch_size=4, lr=1e-3, progress=False)


@pytest.fixture(scope="module")
def branchy_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("samples") / "run"
    model, tok = tiny_model_and_tokenizer(stop_boost=3.0)
    cfg = TrainConfig(**BRANCHY, steps=1, save_every=0, output_dir=str(out), samples_per_step=3, tensorboard=True)
    with Trainer(cfg, model=model, tokenizer=tok) as tr:
        history = tr.train()
    return out, history


def test_samples_hold_text_tool_calls_reward_and_branch_points(branchy_run):
    out, history = branchy_run
    rows = read_samples(out / SAMPLES)
    assert history[0]["branches"] > 0, "the run needs branches"
    assert len(rows) == 3 and {r["step"] for r in rows} == {1}             # samples_per_step rows
    forked = [r for r in rows if r["branch"] is not None]
    assert forked, "leaves in a branch come first, so a branching step shows one"
    for r in forked:
        parent = next((p for p in rows if p["leaf"] == r["branch"]["parent"] and p["prompt"] == r["prompt"]), None)
        assert r["branch"]["probability"] == 1.0 and r["branch"]["at"] > 0
        shared = [s for s in r["segments"] if s["shared"]]
        assert shared and all(s["end"] <= r["branch"]["at"] for s in shared) and shared[-1]["kind"] == "tool"
        if parent is not None:  # the parent names the fork, and both hold the same text before it
            assert {"child": r["leaf"], "at": r["branch"]["at"]}.items() <= next(
                f for f in parent["forks"] if f["child"] == r["leaf"]).items()
            assert [s["text"] for s in shared] == [s["text"] for s in parent["segments"][:len(shared)]]
    for r in rows:
        assert isinstance(r["reward"], float) and r["question"] and r["gold"]
        kinds = [s["kind"] for s in r["segments"]]
        assert kinds[0] == "model" and "tool" in kinds and all(s["text"] for s in r["segments"])
        assert r["tool_calls"] and {"name", "args", "error", "turn"} <= set(r["tool_calls"][0])
        assert any("<result>" in s["text"] for s in r["segments"] if s["kind"] == "tool")   # tool results kept


def test_tensorboard_gets_the_samples_as_text(branchy_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out, _ = branchy_run
    acc = EventAccumulator(str(out / "tb"))
    acc.Reload()
    assert "samples/text_summary" in acc.Tags()["tensors"]
    text = acc.Tensors("samples/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "reward" in text and "branched from leaf" in text


def test_arpo_show_prints_reward_tool_calls_and_branch_points(branchy_run):
    out, _ = branchy_run
    app = typer.Typer()
    app.callback()(lambda: None)  # a group, so that ``show`` is a sub-command as under ``arpo``
    register(app)
    res = CliRunner().invoke(app, ["show", str(out), "--step", "1"])
    assert res.exit_code == 0, res.output
    rows = read_samples(out / SAMPLES)
    assert f"reward: {rows[0]['reward']:.3f}" in res.output
    assert f"{BRANCH}: forked from leaf" in res.output and f"{BRANCH} here: leaf" in res.output
    assert "tool call:" in res.output and "tool result" in res.output and "(shared)" in res.output
    missing = CliRunner().invoke(app, ["show", str(out), "--step", "7"])
    assert missing.exit_code == 2 and "sampled steps: 1..1" in missing.output
    assert CliRunner().invoke(app, ["show", str(out / "nope")]).exit_code == 2


def test_resume_redoes_steps_without_duplicating_samples(tmp_path):
    import tests.helpers.smoke_env  # noqa: F401  registers test/DigitsCalculator-v0
    from tests.trainers.test_trainer import TINY

    cfg = TrainConfig(**{**TINY, "imports": []}, steps=2, save_every=1, output_dir=str(tmp_path), samples_per_step=2)
    with Trainer(cfg) as tr:
        tr.train()
    first = read_samples(tmp_path / SAMPLES)
    assert [r["step"] for r in first] == [1, 1, 2, 2]
    newest = latest_checkpoint(tmp_path / "checkpoints")
    assert json.loads((newest / "state.json").read_text())["step"] == 2
    shutil.rmtree(newest)                                  # as if killed after writing step 2's samples
    with (tmp_path / SAMPLES).open("a") as f:
        f.write('{"step": 2, "torn')                       # and in the middle of a line
    with Trainer(cfg) as tr:
        assert tr.step == 1
        tr.train()
    rows = read_samples(tmp_path / SAMPLES)
    assert [r["step"] for r in rows] == [1, 1, 2, 2]        # step 2 redone once, the torn line gone
    assert rows[:2] == first[:2]
    assert all(line.startswith("{") and line.endswith("}") for line in (tmp_path / SAMPLES).read_text().splitlines())
    json.loads((tmp_path / SAMPLES).read_text().splitlines()[-1])
    # 0 disables
    with Trainer(TrainConfig(**{**TINY, "imports": []}, steps=1, save_every=0, resume=False,
                             output_dir=str(tmp_path / "off"), samples_per_step=0)) as tr:
        tr.train()
    assert not (tmp_path / "off" / SAMPLES).exists()
