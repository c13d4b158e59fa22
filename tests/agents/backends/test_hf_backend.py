"""The ``hf`` backend on tiny random models: exact entropies, stop strings, caches, live weights."""
from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

# every forward passes the KV cache under the name this transformers expects (`cache` since the rename;
# the deprecated `past_key_values` would warn, and stop working in 5.40)
pytestmark = pytest.mark.filterwarnings("error:`past_key_values` is deprecated:FutureWarning")

from arpo_env import EntropySource, SamplingParams  # noqa: E402
from arpo_env.agents.backends.hf import HFBackend  # noqa: E402
from arpo_env.agents.sampling import filter_top_k_top_p  # noqa: E402
from arpo_env.agents.testing import tiny_model_and_tokenizer  # noqa: E402

STOPS = ("</calculator>", "</answer>")


@pytest.fixture(scope="module", params=["llama", "qwen2"])
def tiny(request):
    return tiny_model_and_tokenizer(request.param, stop_boost=3.0)


def _contexts(tok):
    texts = ["<|im_start|>user\nWhat is 17 * 23?<|im_end|>\n<|im_start|>assistant\n<think>",
             "hello", "<calculator>1 + 2</calculator><result>\n3\n</result> so the answer is"]
    return [tok.encode(t, add_special_tokens=False) for t in texts]


def test_factory_is_small_and_complete():
    model, tok = tiny_model_and_tokenizer("llama", seed=3)
    # cheap enough to build in every test: built from a config (no download), about 0.1 M parameters
    assert sum(p.numel() for p in model.parameters()) < 200_000
    assert not model.training and next(model.parameters()).device.type == "cpu"
    assert tok.chat_template and model.config.vocab_size == len(tok)
    assert tok.encode("hi")[0] == tok.bos_token_id  # the llama variant adds BOS: the fragment trap
    assert tok.encode("hi", add_special_tokens=False)[0] != tok.bos_token_id
    again, _ = tiny_model_and_tokenizer("llama", seed=3)
    assert torch.equal(again.lm_head.weight, model.lm_head.weight)


@pytest.mark.parametrize("temperature", [0.0, 0.7, 1.3])
def test_entropy_and_logprobs_match_a_separate_forward_pass(tiny, temperature):
    model, tok = tiny
    backend = HFBackend(model, tok)
    ctxs = _contexts(tok)
    params = SamplingParams(temperature=temperature, top_p=0.9, top_k=30, repetition_penalty=1.1,
                            max_new_tokens=24, seed=1, stop=STOPS)
    gens = backend.generate(ctxs, params)
    t = temperature if temperature > 0 else 1.0
    for ctx, g in zip(ctxs, gens):
        assert g.entropy_source is EntropySource.EXACT
        assert len(g.token_ids) == len(g.logprobs) == len(g.entropies) >= 1
        full = torch.tensor([list(ctx) + g.token_ids])
        with torch.no_grad():
            logits = model(full).logits[0, len(ctx) - 1:-1].float() / t
        logp = torch.log_softmax(logits, -1)
        ent = -(logp.exp() * logp).sum(-1)
        lp = logp.gather(-1, torch.tensor(g.token_ids)[:, None]).squeeze(-1)
        assert torch.allclose(torch.tensor(g.entropies), ent, atol=1e-4), (g.entropies, ent)
        assert torch.allclose(torch.tensor(g.logprobs), lp, atol=1e-4)
        assert g.text == tok.decode(g.token_ids, skip_special_tokens=False)


def test_stop_strings_end_rows_and_are_kept(tiny):
    model, tok = tiny
    backend = HFBackend(model, tok)
    gens = backend.generate(_contexts(tok) * 4, SamplingParams(temperature=1.0, max_new_tokens=48, seed=0,
                                                               stop=STOPS))
    reasons = {g.finish_reason for g in gens}
    assert "stop" in reasons
    for g in gens:
        if g.finish_reason == "stop":
            assert g.stop_string in STOPS and g.stop_string in g.text
            # the stop string ends in the last token: no earlier prefix contains it
            assert g.stop_string not in tok.decode(g.token_ids[:-1])
        elif g.finish_reason == "eos":
            assert g.token_ids[-1] == tok.eos_token_id
        else:
            assert g.finish_reason == "length" and len(g.token_ids) == 48


def test_seeded_sampling_is_reproducible_and_batch_order_is_kept(tiny):
    model, tok = tiny
    backend = HFBackend(model, tok)
    ctxs = _contexts(tok)
    p = SamplingParams(temperature=1.0, max_new_tokens=16, seed=7)
    a, b = backend.generate(ctxs, p), backend.generate(ctxs, p)
    assert [g.token_ids for g in a] == [g.token_ids for g in b]
    greedy = SamplingParams(temperature=0.0, max_new_tokens=16, repetition_penalty=1.0)
    batched = backend.generate(ctxs, greedy)
    for ctx, g in zip(ctxs, batched):
        assert backend.generate([ctx], greedy)[0].token_ids == g.token_ids


def test_static_cache_path_matches_dynamic(tiny):
    model, tok = tiny
    ctxs = _contexts(tok)
    # sampling draws the same random numbers only while the batch keeps its rows (no compaction)
    for p, compact in ((SamplingParams(temperature=0.8, max_new_tokens=20, seed=3, stop=STOPS), 2.0),
                       (SamplingParams(temperature=0.0, max_new_tokens=20, stop=STOPS), 0.01)):
        dyn = HFBackend(model, tok, cache="dynamic", compact_fraction=compact).generate(ctxs * 2, p)
        sta = HFBackend(model, tok, cache="static", cache_bucket=16).generate(ctxs * 2, p)
        for d, s in zip(dyn, sta):
            assert d.token_ids == s.token_ids and d.finish_reason == s.finish_reason
            assert all(math.isclose(x, y, abs_tol=1e-4) for x, y in zip(d.entropies, s.entropies))


def test_micro_batches_give_the_same_result(tiny):
    model, tok = tiny
    ctxs = _contexts(tok) * 2
    p = SamplingParams(temperature=0.0, max_new_tokens=10)
    whole = HFBackend(model, tok).generate(ctxs, p)
    parts = HFBackend(model, tok, max_batch_size=2).generate(ctxs, p)
    assert [g.token_ids for g in whole] == [g.token_ids for g in parts]


def test_backend_uses_live_weights():
    model, tok = tiny_model_and_tokenizer("qwen2", seed=1)
    backend = HFBackend(model, tok)
    target = tok.convert_tokens_to_ids("</answer>")
    p = SamplingParams(temperature=0.0, max_new_tokens=3, repetition_penalty=1.0)
    assert backend.generate([[5, 6, 7]], p)[0].token_ids != [target] * 3
    with torch.no_grad():  # an in-place update, as an optimizer step does
        model.lm_head.weight.zero_()
        model.lm_head.weight[target] = 1.0
    model.train()
    g = backend.generate([[5, 6, 7]], p)[0]
    assert g.token_ids == [target] * 3 and model.training  # training mode is restored


def test_top_k_top_p_filter_keeps_the_right_tokens():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    kept = torch.isfinite(filter_top_k_top_p(logits, 0, 0.7))
    assert kept.tolist() == [[True, True, False, False]]
    kept = torch.isfinite(filter_top_k_top_p(logits, 1, 1.0))
    assert kept.tolist() == [[True, False, False, False]]


def test_top_k_sampling_draws_from_the_filtered_distribution():
    """The top-k fast path (draws among the k candidates) samples the distribution of the full-vocabulary
    filter: frequencies over 20,000 draws match the filtered softmax, and nothing outside it is drawn."""
    from arpo_env.agents.sampling import sample_next
    torch.manual_seed(0)
    logits = torch.randn(1, 50) * 2
    for top_k, top_p in ((5, 1.0), (8, 0.6), (50, 0.6)):
        want = torch.softmax(filter_top_k_top_p(logits / 0.7, top_k, top_p), -1)[0]
        g = torch.Generator().manual_seed(1)
        rows = logits.repeat(20000, 1)
        tok, lp, ent = sample_next(rows, None, temperature=0.7, top_k=top_k, top_p=top_p, repetition_penalty=1.0,
                                   generator=g)
        freq = torch.bincount(tok, minlength=50).double() / len(tok)
        assert bool((freq[want == 0] == 0).all())
        assert torch.allclose(freq, want.double(), atol=0.015), (top_k, top_p)
        full = torch.log_softmax(logits / 0.7, -1)[0]
        assert torch.allclose(lp, full[tok], atol=1e-6)  # log-probs stay those of the policy, unfiltered
