"""The ``hf`` backend's in-place KV buffer and per-call prefill deduplication: same tokens and log-probs as the
stock ``DynamicCache`` path (single-turn, multi-turn with reuse, compaction, identical contexts), per-row sampling
kept, and the dedup saving counted in ``kv_stats``."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from transformers import DynamicLayer, MistralConfig  # noqa: E402

from arpo_env import SamplingParams  # noqa: E402
from arpo_env.agents.backends.hf import HFBackend  # noqa: E402
from arpo_env.agents.backends.kv_buffer import BufferedCache, BufferedLayer, buffer_layers  # noqa: E402
from arpo_env.agents.testing import tiny_model_and_tokenizer  # noqa: E402

GREEDY = SamplingParams(temperature=0.0, max_new_tokens=12, seed=0)
OLD = dict(kv_buffer=False, dedup_prefill=False)


@pytest.fixture(scope="module")
def tiny():
    torch.set_num_threads(1)
    return tiny_model_and_tokenizer("llama", seed=1, dtype=torch.float64)  # float64: no argmax ties


def _enc(tok, *texts):
    return [tok.encode(t, add_special_tokens=False) for t in texts]


def _prompts(tok):
    return _enc(tok, "<|im_start|>user\nWhat is 17 * 23?<|im_end|>\n<|im_start|>assistant\n<think>",
                "hello there, the quick brown fox", "<calculator>1 + 2</calculator> so the answer is", "a b c")


def _group(tok, g=4):
    """A GRPO-style call: ``g`` copies of one prompt, then two other prompts (one of them twice)."""
    p = _prompts(tok)
    return [p[0]] * g + [p[1], p[2], p[1]]


def _assert_same(a, b, atol=1e-5):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.token_ids == y.token_ids
        assert x.finish_reason == y.finish_reason
        for u, v in ((x.logprobs, y.logprobs), (x.entropies, y.entropies)):
            assert torch.allclose(torch.tensor(u, dtype=torch.float64), torch.tensor(v, dtype=torch.float64),
                                  atol=atol)


def _play(backend, tok, ctxs, rounds=3, params=GREEDY):
    out = []
    for k in range(rounds):
        gens = backend.generate(ctxs, params)
        out.append(gens)
        ctxs = [c + g.token_ids + tok.encode(f"<result>\n{k * 7 + i}\n</result> then", add_special_tokens=False)
                for i, (c, g) in enumerate(zip(ctxs, gens))]
    return out


# ----- the buffer layer itself -----------------------------------------------------------------------------
def test_buffered_layer_writes_in_place_and_matches_a_dynamic_layer():
    g = torch.Generator().manual_seed(0)
    ref, buf = DynamicLayer(), BufferedLayer(capacity=6)
    for n in (3, 1, 1):
        k, v = torch.randn(4, 2, n, 8, generator=g), torch.randn(4, 2, n, 8, generator=g)
        rk, rv = ref.update(k, v)
        bk, bv = buf.update(k, v)
        assert torch.equal(rk, bk) and torch.equal(rv, bv)
    assert buf.get_seq_length() == ref.get_seq_length() == 5
    ptr = buf.keys.data_ptr()
    buf.update(torch.randn(4, 2, 1, 8), torch.randn(4, 2, 1, 8))
    assert buf.keys.data_ptr() == ptr  # written in place, no new tensor
    ref.update(buf.keys[:, :, -1:], buf.values[:, :, -1:])
    for idx in ([3, 1, 2], [1, 1, 0, 2, 2, 0]):  # compaction (shrink) and expansion with repeats
        i = torch.tensor(idx)
        ref.batch_select_indices(i)
        buf.batch_select_indices(i)
        assert torch.equal(ref.keys, buf.keys) and torch.equal(ref.values, buf.values)
    k, v = torch.randn(6, 2, 3, 8), torch.randn(6, 2, 3, 8)  # past the capacity (6 + 2 > 6): grows
    assert torch.equal(ref.update(k, v)[0], buf.update(k, v)[0]) and buf.get_seq_length() == 9
    assert buf.get_mask_sizes(1) == ref.get_mask_sizes(1) == (10, 0)


def test_buffer_is_used_only_for_plain_full_attention(tiny):
    assert buffer_layers(tiny[0].config) == tiny[0].config.num_hidden_layers
    assert buffer_layers(MistralConfig(num_hidden_layers=2, sliding_window=4)) == 0
    cache = BufferedCache(2, capacity=8)
    assert cache.get_seq_length() == 0 and all(isinstance(layer, BufferedLayer) for layer in cache.layers)


# ----- the backend: new path == old path ---------------------------------------------------------------------
@pytest.mark.parametrize("knobs", [dict(kv_buffer=True, dedup_prefill=False), dict(kv_buffer=True),
                                   dict(kv_buffer=False, dedup_prefill=True)])
def test_single_and_multi_turn_equal_the_stock_cache(tiny, knobs):
    model, tok = tiny
    params = SamplingParams(temperature=0.0, max_new_tokens=12, seed=0, repetition_penalty=1.2)
    for reuse in (True, False):
        new = HFBackend(model, tok, cache="dynamic", kv_reuse=reuse, **knobs)
        old = HFBackend(model, tok, cache="dynamic", kv_reuse=reuse, **OLD)
        for a, b in zip(_play(new, tok, _group(tok), params=params), _play(old, tok, _group(tok), params=params)):
            _assert_same(a, b)
        assert new.kv_stats.generated_tokens == old.kv_stats.generated_tokens
    # micro-batches cut through a group: still equal
    new = HFBackend(model, tok, cache="dynamic", max_batch_size=3, **knobs)
    old = HFBackend(model, tok, cache="dynamic", max_batch_size=3, **OLD)
    _assert_same(new.generate(_group(tok), GREEDY), old.generate(_group(tok), GREEDY))


def test_eager_attention_reads_the_buffer_views_too():
    # float32: in float64, eager attention gives NaN for left-padded rows on the stock path as well
    model, tok = tiny_model_and_tokenizer("llama", seed=3, dtype=torch.float32)
    model.set_attn_implementation("eager")
    assert model.config._attn_implementation == "eager"
    new, old = HFBackend(model, tok, cache="dynamic"), HFBackend(model, tok, cache="dynamic", **OLD)
    for a, b in zip(_play(new, tok, _group(tok), rounds=2), _play(old, tok, _group(tok), rounds=2)):
        assert all(torch.isfinite(torch.tensor(g.logprobs)).all() for g in a)
        _assert_same(a, b)


def test_compaction_with_rows_finishing_at_different_steps():
    model, tok = tiny_model_and_tokenizer("qwen2", seed=2, stop_boost=3.0, dtype=torch.float64)
    params = SamplingParams(temperature=0.0, max_new_tokens=24, seed=0, stop=("</calculator>", "</answer>"))
    ctxs = _enc(tok, "<think>", "<calculator>", "1 + 2", "What is", "a b") + _enc(tok, "<think>")
    new = HFBackend(model, tok, cache="dynamic", compact_fraction=0.1)
    old = HFBackend(model, tok, cache="dynamic", compact_fraction=0.1, **OLD)
    got, want = _play(new, tok, ctxs, params=params), _play(old, tok, ctxs, params=params)
    for a, b in zip(got, want):
        _assert_same(a, b)
    assert any(len({len(g.token_ids) for g in gens}) > 1 for gens in got)  # rows did finish apart
    assert new.kv_stats.hits == old.kv_stats.hits == 2 * len(ctxs)


def test_sampling_stays_per_row_and_equals_the_old_path(tiny):
    """Same seed: the same samples as without dedup/buffer (the generator draws per row in the same order);
    G identical contexts still give G different samples."""
    model, tok = tiny
    params = SamplingParams(temperature=1.0, max_new_tokens=12, seed=7)
    new = HFBackend(model, tok, cache="dynamic")
    old = HFBackend(model, tok, cache="dynamic", **OLD)
    got, want = _play(new, tok, _group(tok), rounds=2, params=params), _play(old, tok, _group(tok), rounds=2,
                                                                             params=params)
    for a, b in zip(got, want):
        _assert_same(a, b)
    first = [tuple(g.token_ids) for g in got[0][:4]]
    assert len(set(first)) == 4
    # each row's log-probs are its own: a fresh forward pass over its sequence gives them
    ctx = _group(tok)[0]
    for g in got[0][:4]:
        with torch.no_grad():
            logits = model(torch.tensor([ctx + g.token_ids])).logits[0, len(ctx) - 1:-1]
        lp = torch.log_softmax(logits, -1).gather(-1, torch.tensor(g.token_ids)[:, None]).squeeze(-1)
        assert torch.allclose(torch.tensor(g.logprobs, dtype=torch.float64), lp, atol=1e-6)


def test_kv_stats_count_a_group_as_one_prefill(tiny):
    model, tok = tiny
    ctxs = _group(tok, g=5)
    unique = {tuple(c) for c in ctxs}
    new = HFBackend(model, tok, cache="dynamic", kv_reuse=False)
    old = HFBackend(model, tok, cache="dynamic", kv_reuse=False, **OLD)
    new.generate(ctxs, GREEDY)
    old.generate(ctxs, GREEDY)
    total = sum(len(c) for c in ctxs)
    assert new.kv_stats.prefill_tokens == sum(len(c) for c in unique)
    assert new.kv_stats.dedup_tokens == total - new.kv_stats.prefill_tokens
    assert old.kv_stats.prefill_tokens == total and old.kv_stats.dedup_tokens == 0
    assert new.kv_stats.decode_tokens == old.kv_stats.decode_tokens
    # with reuse, a second round of the group: prefill + reused + dedup still covers every context token
    reuse = HFBackend(model, tok, cache="dynamic")
    first = reuse.generate(ctxs, GREEDY)
    assert all(g.token_ids[0] != 5 for g in first)  # so each cached entry shares exactly the context
    again = [c + [5, 6] for c in ctxs]
    before = reuse.kv_stats.as_dict()
    reuse.generate(again, GREEDY)
    d = {k: v - before[k] for k, v in reuse.kv_stats.as_dict().items()}
    assert d["prefill_tokens"] + d["reused_tokens"] + d["dedup_tokens"] == sum(len(c) for c in again)
    assert d["prefill_tokens"] == 2 * len(unique) and d["hits"] == len(again)  # 5, 6 once per distinct one
