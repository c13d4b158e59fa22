"""KV reuse in the ``hf`` backend: multi-turn rounds and forks reuse cached prefixes, with the same greedy
tokens and log-probs as a full re-prefill, counted tokens, a bounded cache, and invalidation on new weights."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

# every forward passes the KV cache under the name this transformers expects (`cache` since the rename;
# the deprecated `past_key_values` would warn, and stop working in 5.40)
pytestmark = pytest.mark.filterwarnings("error:`past_key_values` is deprecated:FutureWarning")

from arpo_env import SamplingParams  # noqa: E402
from arpo_env.agents.backends.hf import HFBackend  # noqa: E402
from arpo_env.agents.backends.kv_cache import PrefixKVCache  # noqa: E402
from arpo_env.agents.testing import tiny_model_and_tokenizer  # noqa: E402

GREEDY = SamplingParams(temperature=0.0, max_new_tokens=12, seed=0)


@pytest.fixture(scope="module")
def tiny():
    torch.set_num_threads(1)
    model, tok = tiny_model_and_tokenizer("llama", seed=1, dtype=torch.float64)  # float64: no argmax ties
    return model, tok


def _prompts(tok):
    texts = ["<|im_start|>user\nWhat is 17 * 23?<|im_end|>\n<|im_start|>assistant\n<think>",
             "hello there, the quick brown fox",
             "<calculator>1 + 2</calculator><result>\n3\n</result> so the answer is",
             "a b c"]
    return [tok.encode(t, add_special_tokens=False) for t in texts]


def _obs(tok, k):
    return tok.encode(f"<result>\n{k * 7}\n</result> then", add_special_tokens=False)


def _assert_same(a, b):
    for x, y in zip(a, b):
        assert x.token_ids == y.token_ids
        assert torch.allclose(torch.tensor(x.logprobs, dtype=torch.float64),
                              torch.tensor(y.logprobs, dtype=torch.float64), atol=1e-6)
        assert torch.allclose(torch.tensor(x.entropies, dtype=torch.float64),
                              torch.tensor(y.entropies, dtype=torch.float64), atol=1e-6)


def _play(backend, tok, rounds=3, params=GREEDY):
    """Multi-turn: context grows by the generated tokens and an observation each round."""
    ctxs = _prompts(tok)
    all_gens = []
    for k in range(rounds):
        gens = backend.generate(ctxs, params)
        all_gens.append(gens)
        ctxs = [c + g.token_ids + _obs(tok, k + i) for i, (c, g) in enumerate(zip(ctxs, gens))]
    return all_gens, ctxs


@pytest.mark.parametrize("max_batch_size", [256, 3])
def test_multi_turn_reuse_equals_full_prefill(tiny, max_batch_size):
    model, tok = tiny
    reuse = HFBackend(model, tok, cache="dynamic", max_batch_size=max_batch_size)
    full = HFBackend(model, tok, cache="dynamic", kv_reuse=False, max_batch_size=max_batch_size)
    params = SamplingParams(temperature=0.0, max_new_tokens=12, seed=0, repetition_penalty=1.2)
    g_reuse, ctxs = _play(reuse, tok, params=params)
    g_full, ctxs_full = _play(full, tok, params=params)
    for a, b in zip(g_reuse, g_full):
        _assert_same(a, b)
    assert ctxs == ctxs_full
    st = reuse.kv_stats
    prompt = sum(len(p) for p in _prompts(tok))
    generated = sum(len(g.token_ids) for gens in g_reuse for g in gens)
    obs = sum(len(_obs(tok, k + i)) for k in range(2) for i in range(len(ctxs)))  # the 3rd round's: unused
    # rounds 2 and 3 reuse everything but the last generated token (never fed) and the observation
    assert st.hits == 2 * len(ctxs) and st.reused_tokens > 0
    assert st.encoded_tokens == prompt + obs + generated - len(ctxs)  # the last round's last tokens: never fed
    assert st.generated_tokens == generated
    assert full.kv_stats.reused_tokens == 0 and full.kv_stats.prefill_tokens > st.prefill_tokens
    assert full.prefix_cache is None
    # the previous round's entry of each episode is superseded by the next: one entry per episode
    assert len(reuse.prefix_cache) == len(ctxs)


def test_fork_reuses_the_parent_up_to_the_branch_point(tiny):
    model, tok = tiny
    reuse = HFBackend(model, tok, cache="dynamic")
    full = HFBackend(model, tok, cache="dynamic", kv_reuse=False)
    parents = _prompts(tok)[:2]
    first = reuse.generate(parents, GREEDY)
    full.generate(parents, GREEDY)
    # forks: parent context + part of its generated tokens (the branch point), then a different continuation
    forks = [p + g.token_ids[:5] + _obs(tok, 9) for p, g in zip(parents, first)]
    forks += [p + g.token_ids[:8] for p, g in zip(parents, first)]
    before = reuse.kv_stats.reused_tokens
    _assert_same(reuse.generate(forks, GREEDY), full.generate(forks, GREEDY))
    reused = reuse.kv_stats.reused_tokens - before
    assert reused == 2 * sum(len(p) for p in parents) + 5 * 2 + 7 * 2  # exact fork 8: last token encoded


def test_sampled_rows_match_a_separate_forward_pass(tiny):
    """Sampling with reuse: each token's log-prob equals a fresh forward pass over the whole sequence."""
    model, tok = tiny
    backend = HFBackend(model, tok, cache="dynamic")
    params = SamplingParams(temperature=0.8, top_k=20, max_new_tokens=10, seed=3)
    gens, ctxs = _play(backend, tok, rounds=2, params=params)
    prev = _prompts(tok)
    for i, g in enumerate(gens[1]):
        ctx = prev[i] + gens[0][i].token_ids + _obs(tok, i)
        with torch.no_grad():
            logits = model(torch.tensor([ctx + g.token_ids])).logits[0, len(ctx) - 1:-1] / 0.8
        lp = torch.log_softmax(logits, -1).gather(-1, torch.tensor(g.token_ids)[:, None]).squeeze(-1)
        assert torch.allclose(torch.tensor(g.logprobs, dtype=torch.float64), lp, atol=1e-6)


def test_budget_evicts_least_recently_used_and_skips_oversized(tiny):
    model, tok = tiny
    prompts = _prompts(tok)
    longest = max(len(p) for p in prompts) + GREEDY.max_new_tokens
    backend = HFBackend(model, tok, cache="dynamic", kv_reuse_tokens=2 * longest)
    backend.generate(prompts, GREEDY)
    cache = backend.prefix_cache
    assert cache is not None and 1 <= len(cache) < len(prompts) and cache.tokens <= 2 * longest
    assert backend.kv_stats.evicted_entries >= 1
    tiny_budget = PrefixKVCache(budget_tokens=4)
    kv = [(torch.zeros(2, 5, 8), torch.zeros(2, 5, 8))]
    tiny_budget.put([1, 2, 3, 4, 5], kv)
    assert len(tiny_budget) == 0  # longer than the budget: not stored
    with pytest.raises(ValueError, match="kv_reuse=False"):
        HFBackend(model, tok, kv_reuse_tokens=0)


def test_cache_lookup_prefers_the_longest_prefix_and_supersedes():
    cache = PrefixKVCache(budget_tokens=100)

    def kv(n, fill):
        return [(torch.full((1, n, 2), float(fill)), torch.full((1, n, 2), float(fill)))]

    cache.put([1, 2, 3], kv(3, 1))
    cache.put([1, 2, 9, 9], kv(4, 2))
    got, n = cache.lookup([1, 2, 9, 9, 7])
    assert n == 4 and float(got[0][0][0, 0, 0]) == 2
    got, n = cache.lookup([1, 2, 9])  # a full match still leaves the last token to encode
    assert n == 2
    assert cache.lookup([5, 6]) == (None, 0)
    cache.put([1, 2, 3, 4, 5], kv(5, 3))  # supersedes [1, 2, 3]
    assert len(cache) == 2 and cache.tokens == 9


def test_weight_change_empties_the_cache(tiny):
    model, tok = tiny
    model = type(model)(model.config).to(torch.float64).eval()
    model.load_state_dict(tiny[0].state_dict())
    backend = HFBackend(model, tok, cache="dynamic")
    prompts = _prompts(tok)
    backend.generate(prompts, GREEDY)
    assert len(backend.prefix_cache) == len(prompts)
    with torch.no_grad():
        model.lm_head.weight.mul_(1.5)  # an in-place update, as an optimizer step does
    ctxs = [p + [5] for p in prompts]
    before = backend.kv_stats.reused_tokens
    got = backend.generate(ctxs, GREEDY)
    assert backend.kv_stats.reused_tokens == before  # nothing stale reused
    _assert_same(got, HFBackend(model, tok, cache="dynamic", kv_reuse=False).generate(ctxs, GREEDY))
    backend.clear_kv_cache()
    assert len(backend.prefix_cache) == 0


def test_static_cache_path_prefills_in_full(tiny):
    model, tok = tiny
    backend = HFBackend(model, tok, cache="static", compile=False)
    _play(backend, tok, rounds=2)
    assert backend.kv_stats.reused_tokens == 0 and len(backend.prefix_cache) == 0


def test_rows_finishing_early_are_cached_too():
    """Rows that stop early leave the batch (compaction) and are stored then; reuse still matches."""
    model, tok = tiny_model_and_tokenizer("qwen2", seed=2, stop_boost=3.0, dtype=torch.float64)
    params = SamplingParams(temperature=0.0, max_new_tokens=24, seed=0, stop=("</calculator>", "</answer>"))
    ctxs = [tok.encode(t, add_special_tokens=False) for t in ("<think>", "<calculator>", "1 + 2", "What is", "a b")]
    reuse = HFBackend(model, tok, cache="dynamic", compact_fraction=0.1)
    full = HFBackend(model, tok, cache="dynamic", kv_reuse=False, compact_fraction=0.1)
    for k in range(3):
        a, b = reuse.generate(ctxs, params), full.generate(ctxs, params)
        _assert_same(a, b)
        ctxs = [c + g.token_ids + _obs(tok, k) for c, g in zip(ctxs, a)]
    lengths = {len(g.token_ids) for g in a}
    assert len(lengths) > 1  # rows did finish at different steps
    assert reuse.kv_stats.hits == 2 * len(ctxs)


@pytest.mark.parametrize("max_batch_size", [256, 3])
def test_a_prefix_shared_by_different_questions_is_encoded_once(tiny, max_batch_size):
    """A system prompt before different questions (an eval batch, GRPO with several prompts): encoded once,
    the rows start from it; same tokens and log-probs as full prefills, and the counts add up."""
    model, tok = tiny
    system = tok.encode("<|im_start|>system\nYou can call <calculator>expression</calculator> and <search>query"
                        "</search>; the results come back in <result></result>.<|im_end|>\n",
                        add_special_tokens=False)
    questions = [tok.encode(f"<|im_start|>user\n{q}<|im_end|>\n<|im_start|>assistant\n", add_special_tokens=False)
                 for q in ("What is 17 * 23?", "Who wrote Dracula?", "What is 2 + 2?", "Capital of Peru?",
                           "What is 17 * 23?")]  # the last repeats the first: dedup and sharing together
    ctxs = [system + q for q in questions]
    shared = HFBackend(model, tok, cache="dynamic", max_batch_size=max_batch_size)
    off = HFBackend(model, tok, cache="dynamic", max_batch_size=max_batch_size, share_prefix_tokens=0)
    full = HFBackend(model, tok, cache="dynamic", kv_reuse=False, max_batch_size=max_batch_size)
    a, b, c = (x.generate(ctxs, GREEDY) for x in (shared, off, full))
    _assert_same(a, c)
    _assert_same(b, c)
    s, o = shared.kv_stats, off.kv_stats
    total = sum(len(x) for x in ctxs)
    for st in (s, o, full.kv_stats):
        assert st.prefill_tokens + st.reused_tokens + st.dedup_tokens == total
    if max_batch_size == 256:  # one micro-batch: nothing cached before it, so the sharing is dedup within it
        assert s.reused_tokens == 0 and s.dedup_tokens >= 3 * len(system)
        assert s.prefill_tokens <= total - 3 * len(system)  # 4 distinct contexts, the system prompt once
        assert o.prefill_tokens == total - len(ctxs[-1])  # only the identical copy saved
    else:  # micro-batches of 3: the first shares within itself, the second reuses the first's stored rows
        assert s.reused_tokens >= len(system) and s.prefill_tokens < o.prefill_tokens
    # a second call with new questions reuses the stored rows' system prompt from the cache
    again = shared.generate([system + questions[1][:-1]], GREEDY)
    _assert_same(again, full.generate([system + questions[1][:-1]], GREEDY))
    assert shared.kv_stats.reused_tokens >= len(system)


def test_share_prefix_needs_two_rows_and_enough_new_tokens(tiny):
    from arpo_env.agents.backends.kv_cache import share_prefix
    model, tok = tiny
    cache = PrefixKVCache(4096)
    head = list(range(5, 45))
    ctxs = [head + [50, 51], head + [60, 61, 62]]
    assert share_prefix(model, cache, ctxs, [0, 0], min_tokens=41) == 0  # 40 shared < 41
    assert share_prefix(model, cache, ctxs[:1], [0], min_tokens=8) == 0  # one row: nothing to share
    assert share_prefix(model, cache, ctxs, [40, 0], min_tokens=8) == 0  # one row already has it
    with torch.no_grad():
        assert share_prefix(model, cache, ctxs, [0, 0], min_tokens=8) == 40
        kv, n = cache.lookup(ctxs[1])
        assert n == 40 and kv[0][0].shape[1] == 40
        # half of it cached already: only the rest is encoded, extending the cached entry
        cache2 = PrefixKVCache(4096)
        cache2.put(head[:20], [(k[:, :20].clone(), v[:, :20].clone()) for k, v in kv])
        assert share_prefix(model, cache2, ctxs, [20, 20], min_tokens=8) == 20
        kv2, n2 = cache2.lookup(ctxs[0])
        assert n2 == 40 and all(torch.allclose(x[0], y[0], atol=1e-10) and torch.allclose(x[1], y[1], atol=1e-10)
                                for x, y in zip(kv, kv2))
