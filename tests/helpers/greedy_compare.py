"""Greedy tokens and their log-probs from transformers and from a vLLM engine, for the probes that compare
an engine with HF on the same weights (run as scripts under the vLLM venv's python; no import side effects)."""


def hf_greedy(model, ids, n):
    import torch
    with torch.no_grad():
        out = model.generate(torch.tensor([ids]), max_new_tokens=n, do_sample=False)[0, len(ids):]
        seq = torch.tensor([ids + out.tolist()])
        lp = torch.log_softmax(model(seq).logits[0, len(ids) - 1:-1].double(), -1)
    return out.tolist(), lp.gather(1, out[:, None])[:, 0].tolist()


def vllm_greedy(llm, ids, n):
    import vllm
    sp = vllm.SamplingParams(temperature=0.0, max_tokens=n, logprobs=1, ignore_eos=True)
    o = llm.generate([{"prompt_token_ids": ids}], sp, use_tqdm=False)[0].outputs[0]
    return list(o.token_ids), [d[t].logprob for t, d in zip(o.token_ids, o.logprobs)]
