"""The embedded model's one-time conversion under concurrent starts (torchrun ranks call it together)."""
from __future__ import annotations

import threading
import time

from arpo_env.agents import models


def test_concurrent_first_uses_convert_once_and_all_get_the_finished_folder(tmp_path, monkeypatch):
    gguf = tmp_path / "pkg" / "SmolLM2-135M-Instruct.Q4_1.gguf"
    gguf.parent.mkdir()
    gguf.write_bytes(b"gguf")
    monkeypatch.setattr(models, "smollm2_gguf_path", lambda: gguf)
    monkeypatch.setattr(models, "cache_dir", lambda: tmp_path / "cache")
    calls = []

    def convert(_gguf, target):  # a slow conversion: without the lock the others would start their own
        calls.append(target)
        time.sleep(0.3)
        target.mkdir()
        (target / "config.json").write_text("{}")
        (target / "model.safetensors").write_bytes(b"w")
        return target

    monkeypatch.setattr(models, "_convert_gguf", convert)
    got = []
    threads = [threading.Thread(target=lambda: got.append(models.embedded_model_dir())) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and len(got) == 3 and len(set(got)) == 1
    assert (got[0] / "model.safetensors").is_file()
