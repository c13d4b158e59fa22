"""``vllm``: the offline ``vllm.LLM`` engine (optional extra ``arpo-env[vllm]``), token-in/token-out.

Prompts go in as token ids (``TokensPrompt``), prefix caching is on (sibling ARPO branches share their
prefix), and every sampled token comes back with its id, its log-prob and the top-``logprobs_topk``
log-probs, from which the entropy is renormalised (``EntropySource.TOPK``: a lower bound, badly biased at
high temperature; 1.48 vs 2.96 nats measured at T=1 with top-20 on SmolLM2). vLLM's log-probs are those
of the raw model distribution by default (``logprobs_mode="raw_logprobs"``: before temperature and
penalties). Stop strings are kept in the output (``include_stop_str_in_output``).

vLLM is imported when a backend is built, never at module import; without it, building raises an
``ImportError`` that says how to install it. vLLM runs normal checkpoints, not GGUF files: the default
model is the embedded SmolLM2 converted to safetensors (``arpo_env.agents.models.embedded_model_dir``).
Scripts that build the engine need an ``if __name__ == "__main__":`` guard (vLLM starts worker processes).

Not covered: LoRA adapters, weight syncing from a trainer (reload the engine or use the ``hf`` backend).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from arpo_env.agent import EntropySource, Generation, SamplingParams
from arpo_env.agents.backends.openai import topk_entropy
from arpo_env.extras import require

#: Added to the missing-vLLM message: the GPU build installs as an extra, the CPU build in a venv of its own.
INSTALL_HINT = "on CPU: bash scripts/setup_vllm_venv.sh and run under that venv's python"


def _import_vllm() -> Any:
    return require("vllm", "vllm", needed_by="the vllm backend", hint=INSTALL_HINT)


class VLLMBackend:
    """Token-in/token-out over a ``vllm.LLM`` (``arpo_env.AgentBackend``)."""

    entropy_source = EntropySource.TOPK

    def __init__(self, llm: Any, tokenizer: Any = None):
        self.llm = llm
        self.tokenizer = tokenizer if tokenizer is not None else llm.get_tokenizer()

    @classmethod
    def from_pretrained(cls, path: str | None = None, **engine_kwargs: Any) -> VLLMBackend:
        """Build ``vllm.LLM(model=path, enable_prefix_caching=True, **engine_kwargs)``; ``None`` is the
        embedded SmolLM2 (converted from its GGUF on first use)."""
        vllm = _import_vllm()
        from arpo_env.agents.models import resolve_model_path
        engine_kwargs.setdefault("enable_prefix_caching", True)
        engine_kwargs.setdefault("max_logprobs", 20)
        llm = vllm.LLM(model=resolve_model_path(path), **engine_kwargs)
        return cls(llm)

    def sampling_params(self, params: SamplingParams) -> Any:
        """The ``vllm.SamplingParams`` for our settings."""
        vllm = _import_vllm()
        return vllm.SamplingParams(
            temperature=max(0.0, params.temperature), top_p=params.top_p if params.temperature > 0 else 1.0,
            top_k=params.top_k if params.top_k > 0 else -1, repetition_penalty=params.repetition_penalty,
            max_tokens=params.max_new_tokens, stop=list(params.stop) or None, include_stop_str_in_output=True,
            seed=params.seed, logprobs=max(1, params.logprobs_topk), skip_special_tokens=False)

    def clear_kv_cache(self) -> None:
        """Drop vLLM's cached prefix blocks (``LLM.reset_prefix_cache``), as ``HFBackend.clear_kv_cache`` does."""
        reset = getattr(self.llm, "reset_prefix_cache", None)
        if reset is not None:
            reset()

    def generate(self, contexts: Sequence[Sequence[int]], params: SamplingParams) -> list[Generation]:
        """One continuation per context, in order (one ``LLM.generate`` call for the batch)."""
        if not contexts:
            return []
        prompts = [{"prompt_token_ids": list(c)} for c in contexts]
        outs = self.llm.generate(prompts, self.sampling_params(params), use_tqdm=False)
        gens = []
        for out in outs:
            o = out.outputs[0]
            ids = list(o.token_ids)
            lps, ents = [], []
            for tid, dist in zip(ids, o.logprobs or [{}] * len(ids)):
                entry = dist.get(tid) if dist else None
                lps.append(float(entry.logprob) if entry is not None else math.nan)
                ents.append(topk_entropy(v.logprob for v in dist.values()) if dist else math.nan)
            stop_string = o.stop_reason if isinstance(o.stop_reason, str) else None
            if o.finish_reason == "length":
                finish = "length"
            else:
                finish = "stop" if stop_string else "eos"
            gens.append(Generation(token_ids=ids, logprobs=lps, entropies=ents, finish_reason=finish,
                                   stop_string=stop_string, entropy_source=EntropySource.TOPK,
                                   text=self.tokenizer.decode(ids, skip_special_tokens=False)))
        return gens
