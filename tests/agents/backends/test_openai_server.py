"""A real OpenAI-compatible server (``vllm serve`` on the embedded SmolLM2) driven through the ``openai``
backend and the rollout loop.

Needs the vLLM venv (``bash scripts/setup_vllm_venv.sh``; its python is found at ``$ARPO_VLLM_PYTHON`` or
the script's default path); skipped when it is absent, a failure when ``ARPO_REQUIRE_VLLM=1`` (CI). Marked slow: the server takes ~1 min to start on CPU.
"""
from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.helpers.vllm_support import vllm_env, vllm_python

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server():
    py = vllm_python()
    from arpo_env.agents.models import embedded_model_dir
    model_dir = str(embedded_model_dir())
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = vllm_env()
    log = open(Path(os.environ.get("TMPDIR", "/tmp")) / f"vllm-serve-{port}.log", "w")
    proc = subprocess.Popen([py, "-m", "vllm.entrypoints.openai.api_server", "--model", model_dir,
                             "--served-model-name", "smollm2", "--host", "127.0.0.1", "--port", str(port),
                             "--max-model-len", "2048", "--max-logprobs", "20", "--dtype", "float32"],
                            stdout=log, stderr=subprocess.STDOUT, env=env)
    import httpx
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.time() + 420
        while True:
            if proc.poll() is not None:
                pytest.fail(f"vllm serve exited with {proc.returncode}; see {log.name}")
            try:
                if httpx.get(f"{url}/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.time() > deadline:
                pytest.fail(f"vllm serve did not start in time; see {log.name}")
            time.sleep(2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def test_rollout_through_a_real_openai_compatible_server(server):
    import arpo_env
    from arpo_env.agents import Agent
    from arpo_env.agents.backends.openai import OpenAIBackend
    from arpo_env.agents.models import load_tokenizer
    from arpo_env import EntropySource, SamplingParams

    tok = load_tokenizer(None)
    backend = OpenAIBackend(tokenizer=tok, base_url=server)
    assert backend.model == "smollm2"
    agent = Agent(backend, tok, max_response_tokens=160)
    envs = [arpo_env.make("arpo/Calculator-v0") for _ in range(3)]
    trajs = agent.rollout(envs, SamplingParams(temperature=0.6, max_new_tokens=64, seed=0), seeds=[0, 1, 2])
    for t in trajs:
        t.check()
        assert t.entropy_source is EntropySource.TOPK and (t.terminated or t.truncated)
        for s, e in t.turn_spans:
            assert all(0 <= i < len(tok) for i in t.token_ids[s:e])
            assert all(lp <= 0 for lp in t.logprobs[s:e]) and all(h >= 0 for h in t.entropies[s:e])
    # a stop string ends generation and is kept
    ids = agent.prompt_ids([{"role": "user", "content": "Write exactly: <calculator>1+1</calculator>"}])
    (g,) = backend.generate([ids + tok.encode("<calculator>1+1", add_special_tokens=False)],
                            SamplingParams(temperature=0.0, max_new_tokens=8, stop=("</calculator>",)))
    assert g.finish_reason in ("stop", "eos", "length")
    if g.finish_reason == "stop":
        assert g.text.endswith("</calculator>") and g.stop_string == "</calculator>"
