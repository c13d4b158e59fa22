"""arpo sft on a tiny model: loss only on model tokens, LoRA and full, ShareGPT and eval-folder inputs,
resume after SIGKILL."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from arpo_env.agents import Agent  # noqa: E402
from arpo_env.agents.testing import tiny_model_and_tokenizer  # noqa: E402
from arpo_env.trainers.sft import SFTConfig, run_sft, sft_loss  # noqa: E402
from arpo_env.trainers.sft_data import load_examples, split_results, tokenize_example  # noqa: E402
from tests.helpers.waiting import wait_until  # noqa: E402

FIXTURE = Path(__file__).parent / "data" / "sharegpt_fixture.json"


def test_sharegpt_fixture_parses_and_inline_results_are_observations():
    ex = load_examples([FIXTURE])
    assert len(ex) == 2
    assert [m for _, m in ex[0].segments] == [True, False, True]
    assert [m for _, m in ex[1].segments] == [True, False, True]  # the inline <result> was split out
    assert ex[1].segments[1][0].startswith("<result>")
    assert split_results("a<result>x</result>b") == [("a", True), ("<result>x</result>", False), ("b", True)]


def test_sequence_matches_the_agent_and_mask_covers_model_tokens_only():
    _, tok = tiny_model_and_tokenizer()
    agent = Agent(backend=None, tokenizer=tok)  # type: ignore[arg-type]
    ex = load_examples([FIXTURE])[0]
    ids, mask = tokenize_example(ex, agent)
    n = len(agent.prompt_ids(ex.messages()))
    assert ids[:n] == agent.prompt_ids(ex.messages()) and mask[:n] == [0] * n
    obs = agent.observation_ids("<result>\n391\n</result>")
    first = len(tok.encode(ex.segments[0][0], add_special_tokens=False))
    assert ids[n + first:n + first + len(obs)] == obs
    assert mask[n + first:n + first + len(obs)] == [0] * len(obs)
    assert all(mask[n:n + first])


def test_perturbing_a_tool_result_token_leaves_the_loss_unchanged():
    model, tok = tiny_model_and_tokenizer()
    agent = Agent(backend=None, tokenizer=tok)  # type: ignore[arg-type]
    ids, mask = tokenize_example(load_examples([FIXTURE])[0], agent)
    # the loss is on model tokens; a perturbed observation token changes only later positions' context,
    # so compare a sequence cut right after the observation's first token (the last masked target)
    obs_pos = [i for i in range(1, len(ids)) if mask[i] == 0 and mask[i - 1] == 1][-1]
    cut = obs_pos + 1
    a, b = list(ids[:cut]), list(ids[:cut])
    b[obs_pos] = (b[obs_pos] + 1) % len(tok)
    with torch.no_grad():
        la, na = sft_loss(model, [(a, mask[:cut])], 0)
        lb, nb = sft_loss(model, [(b, mask[:cut])], 0)
        assert na == nb > 0 and torch.equal(la, lb)
        # ... while perturbing a model token does change it
        m_pos = max(i for i in range(cut) if mask[i] == 1)
        c = list(a)
        c[m_pos] = (c[m_pos] + 1) % len(tok)
        lc, _ = sft_loss(model, [(c, mask[:cut])], 0)
    assert not torch.equal(la, lc)


def _rows(folder: Path) -> None:
    folder.mkdir()
    rows = [{"benchmark": "gsm8k", "sample_id": "1", "attempt": 0, "question": "What is 2 + 3?", "score": 1.0,
             "error": None, "model_text": "<calculator>2 + 3</calculator><result>\n5\n</result><answer>\\boxed{5}</answer>"},
            {"benchmark": "gsm8k", "sample_id": "2", "attempt": 0, "question": "What is 2 + 4?", "score": 0.0,
             "error": None, "model_text": "<answer>\\boxed{7}</answer>"}]
    (folder / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.mark.parametrize("lora", [True, False])
def test_lora_and_full_train_on_fixture_and_eval_folder(tmp_path, lora):
    _rows(tmp_path / "eval")
    assert len(load_examples([tmp_path / "eval"], min_score=0.5)) == 1  # rejection sampling
    cfg = SFTConfig(data=[str(FIXTURE), str(tmp_path / "eval")], model="tiny", lora=lora, lr=1e-2, epochs=6,
                    batch_size=3, micro_batch_size=2, output_dir=str(tmp_path / "run"), progress=False)
    hist = run_sft(cfg)
    assert len(hist) == 6 and hist[-1]["loss"] < hist[0]["loss"]
    step = tmp_path / "run" / "checkpoints" / "step_00000006"
    assert (step / "model.safetensors").exists() and (step / "adapter").exists() == lora


def test_resume_after_sigkill(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "arpo_env", "sft", "--data", str(FIXTURE), "--model", "tiny", "--epochs", "4000",
           "--batch-size", "1", "--save-every", "1", "--output-dir", str(out), "--no-progress", "--threads", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_until(lambda: len(list((out / "checkpoints").glob("step_*"))) >= 2, timeout=120)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    from arpo_env.checkpoints import checkpoints
    done = int(checkpoints(out / "checkpoints")[-1].name.split("_")[1])
    cfg = SFTConfig(data=[str(FIXTURE)], model="tiny", epochs=(done + 2) / 2, batch_size=1,
                    output_dir=str(out), progress=False)
    hist = run_sft(cfg)
    assert [h["step"] for h in hist] == [done + 1, done + 2]
    steps = [json.loads(x)["step"] for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps)) and steps[-1] == done + 2
