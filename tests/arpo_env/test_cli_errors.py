"""User errors on the ``arpo`` command line: each bad input prints at most three lines naming the flag, key or
file, exits with status 2 and shows no traceback (``--debug`` shows it); plus the shared CLI conventions
(``python -m arpo_env``, ``--imports``/``-m`` with the current folder importable, ``--env``/``--env-id``, the
policy backend) and the helpers behind them."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from arpo_env import registry
from arpo_env.cli import main
from arpo_env.config import check_types, flatten_tyro_error
from arpo_env.env import EnvConfig
from arpo_env.errors import ConfigError, UserError, check_model_path
from arpo_env.trainers.cli import normalize_args

EVAL = ["eval", "--benchmarks", "gsm8k", "--limit", "1", "--no-progress"]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def files(tmp_path, monkeypatch):
    """Bad YAML files, a plugin env whose module needs a missing extra, and HF kept offline."""
    (tmp_path / "bad.yaml").write_text("steps: [1, 2\nlr: 3\n")
    (tmp_path / "unknown.yaml").write_text("stepz: 3\n")
    (tmp_path / "wrongtype.yaml").write_text("steps: abc\n")
    (tmp_path / "negative.yaml").write_text("steps: -3\n")
    (tmp_path / "notmap.yaml").write_text("- a\n- b\n")
    (tmp_path / "arpo_cli_needs_vllm.py").write_text(
        "from arpo_env.extras import require\nrequire('vllm', 'arpo_no_such_vllm', needed_by='the test env')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.delenv("ARPO_DEBUG", raising=False)
    registry.register("test/NeedsVllm-v0", "arpo_cli_needs_vllm:Env")
    yield tmp_path
    registry._RECORDS.pop("test/NeedsVllm-v0", None)
    registry.gym.registry.pop("test/NeedsVllm-v0", None)
    sys.modules.pop("arpo_cli_needs_vllm", None)


#: (probe, arguments ({t}: the temporary folder), text the message must hold)
PROBES = [
    ("unknown env id", ["episode", "arpo/Nope-v0"], "no arpo-env environment 'arpo/Nope-v0'"),
    ("unknown env id, eval --env", EVAL + ["--backend", "oracle", "--env", "arpo/Nope-v0", "-o", "{t}/o"], "arpo/Nope-v0"),
    ("unknown env id, eval --env-id", EVAL + ["--backend", "oracle", "--env-id", "arpo/Nope-v0", "-o", "{t}/o"], "arpo/Nope-v0"),
    ("unknown env id, train", ["train", "--model", "tiny", "--env", "arpo/Nope-v0", "--output-dir", "{t}/r"], "arpo/Nope-v0"),
    ("unknown benchmark", ["eval", "--backend", "oracle", "--benchmarks", "gsm8kk", "-o", "{t}/o"], "Did you mean gsm8k"),
    ("missing .jsonl", ["eval", "--backend", "oracle", "--benchmarks", "{t}/missing.jsonl", "-o", "{t}/o"],
     "--benchmarks: file not found: {t}/missing.jsonl"),
    ("missing model path, eval", EVAL + ["--model", "{t}/no/such/model", "-o", "{t}/o"],
     "model path {t}/no/such/model does not exist"),
    ("missing model path, train", ["train", "--model", "./no/such/model", "--output-dir", "{t}/r"],
     "--model: model path ./no/such/model does not exist"),
    ("hub id while offline", EVAL + ["--model", "someorg/some-model", "-o", "{t}/o"], "hub is offline"),
    ("missing judge path", EVAL + ["--backend", "oracle", "--judge", "./no/judge", "-o", "{t}/o"], "--judge: model path"),
    ("wrong type in --set", EVAL + ["--backend", "oracle", "--set", "max_tool_calls=abc", "-o", "{t}/o"],
     "EnvConfig.max_tool_calls: expected int, got 'abc'"),
    ("unknown key in --set", EVAL + ["--backend", "oracle", "--set", "max_tool_callz=3", "-o", "{t}/o"],
     "did you mean 'max_tool_calls'"),
    ("--set without =", EVAL + ["--backend", "oracle", "--set", "max_tool_calls", "-o", "{t}/o"], "--set needs KEY=VALUE"),
    ("malformed --env-kwargs", EVAL + ["--backend", "oracle", "--env-kwargs", "{{bad", "-o", "{t}/o"], "--env-kwargs: not JSON"),
    ("wrong type in YAML", ["train", "--config", "{t}/wrongtype.yaml", "--print-config"], "TrainConfig.steps"),
    ("range in YAML", ["train", "--config", "{t}/negative.yaml", "--print-config"], "TrainConfig.steps: must be >= 0"),
    ("wrong type in a flag", ["train", "--steps", "abc", "--print-config"], "--steps: expected an int, got 'abc'"),
    ("train --steps -3", ["train", "--steps", "-3", "--print-config"], "--steps: must be >= 0, got -3"),
    ("nested range", ["train", "--rollout.algorithm", "ppo", "--print-config"], "--rollout.algorithm: must be one of"),
    ("unknown key in YAML", ["train", "--config", "{t}/unknown.yaml", "--print-config"], "no field 'stepz'; did you mean 'steps'"),
    ("unknown train flag", ["train", "--stepz", "3", "--print-config"], "did you mean --steps"),
    ("malformed YAML", ["train", "--config", "{t}/bad.yaml", "--print-config"], "{t}/bad.yaml: malformed YAML at line 2"),
    ("YAML not a mapping", ["train", "--config", "{t}/notmap.yaml", "--print-config"], "a YAML mapping"),
    ("missing YAML file", ["train", "--config", "{t}/nope.yaml", "--print-config"], "--config {t}/nope.yaml: file not found"),
    ("missing extra", ["episode", "test/NeedsVllm-v0"], "pip install 'arpo-env[vllm]'"),
    ("unreachable server", EVAL + ["--backend", "openai", "--model", "m", "--base-url", "http://127.0.0.1:{port}/v1",
                                   "-o", "{t}/o"], "--base-url http://127.0.0.1:{port}/v1: cannot reach the server"),
    ("--backend typo", EVAL + ["--backend", "opnai", "-o", "{t}/o"], "did you mean 'openai'"),
    ("--judge-backend typo", EVAL + ["--backend", "oracle", "--judge", "j", "--judge-backend", "vlm", "-o", "{t}/o"],
     "--judge-backend: unknown backend 'vlm'; did you mean 'vllm'"),
    ("policy not module:function", EVAL + ["--backend", "policy", "--model", "nocolon", "-o", "{t}/o"], "module:function"),
    ("policy module missing", EVAL + ["--backend", "policy", "--model", "no_such_mod_x:f", "-o", "{t}/o"], "no_such_mod_x"),
    ("envs -m unknown module", ["envs", "-m", "no_such_mod_x"], "--imports no_such_mod_x: no module"),
    ("episode --imports unknown", ["episode", "--imports", "no_such_mod_x"], "--imports no_such_mod_x"),
    ("train -m unknown", ["train", "-m", "no_such_mod_x", "--model", "tiny", "--output-dir", "{t}/r"], "no_such_mod_x"),
    ("eval --attempts 0", EVAL + ["--backend", "oracle", "--attempts", "0", "-o", "{t}/o"], "'--attempts'"),
    ("eval --temperature -1", EVAL + ["--backend", "oracle", "--temperature", "-1", "-o", "{t}/o"], "'--temperature'"),
    ("bad int flag", ["episode", "--seed", "x"], "'--seed'"),
    ("unknown option", ["episode", "--nope"], "No such option: --nope"),
    ("missing corpus", ["index", "build", "--corpus", "{t}/no.jsonl"], "'--corpus'"),
    ("leaderboard missing folder", ["leaderboard", "{t}/no/folder"], "{t}/no/folder is not a result folder"),
]


@pytest.mark.parametrize("name,args,needle", PROBES, ids=[p[0] for p in PROBES])
def test_a_user_error_is_at_most_three_lines_and_exit_2(name, args, needle, files, capsys):
    port = _closed_port()
    fill = {"t": str(files), "port": port}
    with pytest.raises(SystemExit) as info:
        main([a.format(**fill) for a in args])
    captured = capsys.readouterr()
    text = (captured.out + captured.err).strip()
    assert info.value.code == 2, text
    assert len(text.splitlines()) <= 3 and "Traceback" not in text, text
    assert needle.format(**fill) in text, text


def test_debug_shows_the_traceback(files, capsys, monkeypatch):
    with pytest.raises(SystemExit) as info:
        main(["episode", "arpo/Nope-v0", "--debug"])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "Traceback" in err and err.strip().endswith("entry_point='module:Class').")
    monkeypatch.setenv("ARPO_DEBUG", "1")
    with pytest.raises(SystemExit):
        main(["train", "--steps", "-3"])
    assert "--steps: must be >= 0" in capsys.readouterr().err


def test_python_m_arpo_env_runs_the_cli_and_the_console_script_imports_from_the_current_folder(tmp_path):
    (tmp_path / "my_cwd_envs.py").write_text(textwrap.dedent("""
        import arpo_env
        arpo_env.register("cwd/Calc-v0", "arpo_env.envs.calculator:CalculatorEnv", description="from the cwd")
    """))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "ARPO_DEBUG")}
    proc = subprocess.run([sys.executable, "-m", "arpo_env", "episode", "arpo/Nope-v0"], capture_output=True,
                          text=True, cwd=tmp_path, env=env, timeout=120)
    assert proc.returncode == 2 and proc.stderr.startswith("arpo: no arpo-env environment 'arpo/Nope-v0'"), proc.stderr
    arpo = Path(sys.executable).parent / "arpo"
    if not arpo.exists():
        pytest.skip("no arpo console script next to this python")
    proc = subprocess.run([str(arpo), "envs", "-m", "my_cwd_envs", "--json"], capture_output=True, text=True,
                          cwd=tmp_path, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "cwd/Calc-v0" in {r["id"] for r in json.loads(proc.stdout)}


def test_eval_plays_a_module_function_policy(tmp_path, monkeypatch, capsys):
    (tmp_path / "my_policy_mod.py").write_text(textwrap.dedent("""
        CALLS = []
        def policy(env, turn, observation):
            CALLS.append(turn)
            gold = env.unwrapped.episode.task.answer[0]
            return "<think>known</think><answer>\\\\boxed{" + gold + "}</answer>"
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(SystemExit) as info:
        main(EVAL + ["--backend", "policy", "--model", "my_policy_mod:policy", "--env", "arpo/Calculator-v0",
                     "-o", str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert info.value.code == 0, out
    assert json.loads(out.splitlines()[0])["done"] == 1
    rows = [json.loads(line) for line in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    assert [r["correct"] for r in rows] == [True], rows
    assert sys.modules["my_policy_mod"].CALLS == [0]
    sys.modules.pop("my_policy_mod")


def test_check_types_names_the_field_and_converts_what_fits():
    with pytest.raises(ConfigError, match=r"^EnvConfig\.max_turns: expected int, got 'many'$"):
        check_types(EnvConfig, {"max_turns": "many"})
    assert check_types(EnvConfig, {"max_turns": "4", "format_tools": ["python"]}) == {
        "max_turns": 4, "format_tools": ("python",)}
    with pytest.raises(ConfigError, match="EnvConfig.reward"):
        check_types(EnvConfig, {"reward": "f1"})
    ok = {"max_turns": 3, "reward": "arpo", "format_tools": ("search",)}
    assert check_types(EnvConfig, ok) == ok


def test_tyro_boxes_are_flattened_to_one_line():
    box = ("╭─ Unrecognized options ─────╮\n│ Unrecognized options: --stepz │\n│ ──────── │\n"
           "│ Perhaps you meant: │\n│     --steps INT │\n│         Training steps. │\n│ ──────── │\n"
           "│ For full helptext, run arpo train --help │\n╰────────╯\n")
    assert flatten_tyro_error(box) == "unknown flags: --stepz; did you mean --steps?"


def test_train_flag_spellings_are_normalised():
    assert normalize_args(["--env", "a/B-v0", "-m", "x", "--steps", "2", "--module=y", "--imports", "z", "w"]) == [
        "--env-id", "a/B-v0", "--steps", "2", "--imports", "x", "y", "z", "w"]
    assert normalize_args(["--env=a/B-v0"]) == ["--env-id=a/B-v0"]


def test_model_paths_are_checked_before_hugging_face(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    check_model_path(None)
    check_model_path("tiny", names=("tiny",))
    check_model_path(str(tmp_path))
    check_model_path("org/model")  # online: a hub id is Hugging Face's to resolve
    for bad in ("./nope", "/no/such/dir", "a/b/c", "model.gguf", "~/no-such-model-dir"):
        with pytest.raises(UserError, match="does not exist"):
            check_model_path(bad, "--model")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(UserError, match="offline"):
        check_model_path("org/model")
    (tmp_path / "hub" / "models--org--model").mkdir(parents=True)
    check_model_path("org/model")  # cached: fine offline


def test_every_agents_backend_is_an_eval_backend():
    from arpo_env.agents.backends import BACKENDS as AGENT_BACKENDS
    from arpo_env.benchmarks.agents_bridge import BACKENDS

    assert set(AGENT_BACKENDS) <= set(BACKENDS) and {"oracle", "policy"} <= set(BACKENDS)


@pytest.mark.slow
def test_eval_takes_the_tiny_model_as_train_does(tmp_path, capsys):
    pytest.importorskip("torch")
    with pytest.raises(SystemExit) as info:
        main(EVAL + ["--model", "tiny", "--max-new-tokens", "8", "--env", "arpo/Calculator-v0", "-o", str(tmp_path / "o")])
    assert info.value.code == 0, capsys.readouterr().err[-2000:]
    rows = [json.loads(line) for line in (tmp_path / "o" / "results.jsonl").read_text().splitlines()]
    assert len(rows) == 1 and rows[0]["benchmark"] == "gsm8k"
