"""``hf``: the embedded transformers backend (CPU or GPU), token-in/token-out with exact entropies.

Generation is our own decoding loop over a transformers causal LM (not ``model.generate``), so that every
step yields the exact log-prob of the sampled token and the entropy of the full next-token distribution
(see :mod:`arpo_env.agents.sampling` for which distribution), and so that each row stops on its own stop string,
EOS or length.

- Batching: contexts are sorted by length, cut into micro-batches of ``max_batch_size`` rows, left-padded,
  prefilled in one forward pass, then decoded one token per step for all rows of the micro-batch.
- CPU (and any non-CUDA device) uses a dynamic KV cache; rows that finish are dropped from the batch and
  the cache once at least ``compact_fraction`` of the rows are done. By default (``kv_buffer``) it is a
  :class:`arpo_env.agents.backends.kv_buffer.BufferedCache`: each call preallocates past + prompt +
  ``max_new_tokens`` positions per row and decode steps write in place (transformers' ``DynamicCache``
  copies the whole cache every step); same results within float tolerance. Memory: the call's full KV is
  allocated at its first step rather than grown step by step.
- Identical contexts in one call (a GRPO group's first turn; ARPO siblings) are prefilled once and their KV
  and last logits copied to each such row (``dedup_prefill``; dynamic cache, within a micro-batch). Every
  row still samples on its own from the shared generator, in the same order as without dedup, so a fixed
  seed gives the same samples. Distinct contexts that start alike (a system prompt with the tool descriptions,
  then different questions) have that prefix encoded once and reused from the KV reuse cache
  (``share_prefix_tokens``). ``kv_stats.dedup_tokens`` counts the context tokens both saved.
- CUDA takes the fast path: a static KV cache (shapes constant across steps) and a ``torch.compile``d
  decode step (``mode="reduce-overhead"``: CUDA graphs). Finished rows keep decoding (their tokens are
  ignored) because static shapes cannot shrink. The cache length is rounded up to ``cache_bucket`` so
  compiled graphs are reused across calls.
- KV reuse (dynamic cache only; on by default, ``kv_reuse``): after a call, every row's keys and values
  (context plus generated tokens) stay in a bounded token-prefix cache
  (:class:`arpo_env.agents.backends.kv_cache.PrefixKVCache`). A later context reuses the longest cached
  prefix it shares (the same episode's previous round, or for an ARPO fork its parent up to the branch
  point), so only its new tokens (the last generated token and the observation) are encoded. Rows with
  cached prefixes of different lengths share one batch: cached KV right-aligned in the past, new tokens
  right-aligned after it, padding masked out, explicit position ids. Results equal a full re-prefill within
  float tolerance. Memory: at most ``kv_reuse_tokens`` tokens (LRU eviction; an episode's previous round is
  dropped when its next round is stored), i.e. ``2 * layers * kv_heads * head_dim * dtype bytes`` per token
  (46 KB for SmolLM2-135M in float32). The cache empties itself when the weights change. The static-cache
  path (CUDA default) does not reuse: it prefills every context in full. ``kv_stats`` counts prefill,
  reused and decode tokens; ``clear_kv_cache()`` frees the cache.
- Live weights: the backend holds the model object and calls it on every ``generate``; a trainer that
  updates the parameters in place (optimizer steps, ``load_state_dict``) is sampled from at once.

Not covered: beam search, speculative decoding, multiple GPUs (use the ``vllm`` backend for those); KV reuse,
the in-place buffer and prefill dedup on the static-cache path; reuse and the buffer with sliding-window/hybrid
caches (stock cache then); reuse across processes; sharing more than one uncached prefix per micro-batch.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from arpo_env.extras import missing_extra, require

try:
    import torch
except ModuleNotFoundError as exc:  # one line naming the extra instead of a traceback
    raise missing_extra("agents", exc, needed_by=__name__) from None

from arpo_env.agent import EntropySource, Generation, SamplingParams
from arpo_env.agents.backends import kv_buffer
from arpo_env.agents.backends.kv_cache import (
    KVStats,
    LayerKV,
    PrefixKVCache,
    build_past,
    cache_layers,
    cache_name,
    extract_row,
    prefill_layout,
    returned_cache,
    share_prefix,
)
from arpo_env.agents.sampling import make_generator, sample_next
from arpo_env.agents.stopping import StopChecker
from arpo_env.config import build

log = logging.getLogger(__name__)


@dataclass
class HFBackendConfig:
    """Settings of :class:`HFBackend` (all optional)."""

    max_batch_size: int = 256
    """Rows decoded together; larger batches are split into micro-batches of this size."""
    cache: str = "auto"
    """KV cache: ``dynamic``, ``static``, or ``auto`` (static on CUDA, dynamic elsewhere)."""
    compile: bool | None = None
    """``torch.compile`` the decode step of the static-cache path; ``None`` means on CUDA only."""
    compile_mode: str = "reduce-overhead"
    """``torch.compile`` mode for the decode step (``reduce-overhead`` uses CUDA graphs)."""
    cache_bucket: int = 256
    """The static cache length is rounded up to a multiple of this (fewer recompilations)."""
    compact_fraction: float = 0.25
    """Dynamic cache: drop finished rows once this fraction of the micro-batch is finished."""
    kv_reuse: bool = True
    """Keep each row's KV after a call and reuse the longest cached token prefix of later contexts (multi-turn
    rounds, ARPO forks); dynamic cache only. ``False``: every context is prefilled in full."""
    kv_reuse_tokens: int = 16384
    """Token budget of the KV reuse cache over all stored rows (least recently used evicted beyond it)."""
    kv_buffer: bool = True
    """Dynamic cache: preallocate each call's KV (past + prompt + ``max_new_tokens`` positions per row) and write
    decode steps in place (:mod:`arpo_env.agents.backends.kv_buffer`) instead of ``torch.cat``-ing the whole
    cache every step. Models with sliding-window/hybrid layers keep the stock cache."""
    dedup_prefill: bool = True
    """Dynamic cache: prefill identical contexts of one call once (e.g. a GRPO group's first turn) and copy
    their KV and last logits to every row that has them; rows still sample independently."""
    share_prefix_tokens: int = 16
    """With KV reuse: when the distinct contexts of a micro-batch share a prefix of at least this many tokens
    not yet cached (the system prompt and tool descriptions before different questions), encode it once and
    start every row from it (:func:`~arpo_env.agents.backends.kv_cache.share_prefix`); 0: off."""


class HFBackend:
    """Token-in/token-out generation with a transformers causal LM (implements ``arpo_env.AgentBackend``).

    ``model`` is used live (see the module docstring); ``tokenizer`` is only used to detect stop strings and
    to fill ``Generation.text``. Entropies are exact (``EntropySource.EXACT``).
    """

    entropy_source = EntropySource.EXACT

    def __init__(self, model: Any, tokenizer: Any, config: HFBackendConfig | None = None, **overrides: Any):
        self.config = build(HFBackendConfig, config, overrides, owner="HFBackend")
        if self.config.cache not in ("auto", "dynamic", "static"):
            raise ValueError(f"cache must be 'auto', 'dynamic' or 'static', got {self.config.cache!r}")
        self.model = model
        self.tokenizer = tokenizer
        self.eos_ids = _eos_ids(model, tokenizer)
        pad = getattr(tokenizer, "pad_token_id", None)
        self.pad_id = int(pad if pad is not None else min(self.eos_ids) if self.eos_ids else 0)
        self._stop_candidates: dict[tuple[str, ...], torch.Tensor] = {}
        self._compiled: Any = None
        self._n_buffer_layers: int | None = None
        self.kv_stats = KVStats()
        self._prefix = PrefixKVCache(self.config.kv_reuse_tokens) if self.config.kv_reuse else None

    # ----- construction -----------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, path: str | None = None, device: str | None = None, dtype: Any = None,
                        base_only: bool = False, **config: Any) -> HFBackend:
        """Load a local model directory (or hub id); ``None`` loads the embedded SmolLM2-135M-Instruct.

        ``device`` defaults to CUDA when available, else CPU; ``dtype`` to bfloat16 on CUDA, float32 on CPU.
        The embedded model gets the shipped tool-use adapter merged in unless ``base_only``
        (:func:`arpo_env.agents.models.load_model_and_tokenizer`).
        """
        from arpo_env.agents.models import load_model_and_tokenizer
        model, tokenizer = load_model_and_tokenizer(path, device=device, dtype=dtype, base_only=base_only)
        return cls(model, tokenizer, **config)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _static(self) -> bool:
        mode = self.config.cache
        return mode == "static" or (mode == "auto" and self.device.type == "cuda")

    def _compile_enabled(self) -> bool:
        c = self.config.compile
        return (self.device.type == "cuda") if c is None else bool(c)

    def _buffer_layers(self) -> int:
        """Layers of the in-place KV buffer for this model; 0 when ``kv_buffer`` is off or not applicable."""
        if not self.config.kv_buffer:
            return 0
        if self._n_buffer_layers is None:
            self._n_buffer_layers = kv_buffer.buffer_layers(self.model.config)
        return self._n_buffer_layers

    @property
    def prefix_cache(self) -> PrefixKVCache | None:
        """The KV reuse cache (``None`` when ``kv_reuse`` is off)."""
        return self._prefix

    def clear_kv_cache(self) -> None:
        """Free the KV reuse cache (e.g. when a batch of episodes is finished)."""
        if self._prefix is not None:
            self._prefix.clear()
            self.kv_stats.evicted_entries = self._prefix.evicted

    # ----- generation -------------------------------------------------------------------------------
    def generate(self, contexts: Sequence[Sequence[int]], params: SamplingParams) -> list[Generation]:
        """One continuation per context, in order (see the module docstring)."""
        if not contexts:
            return []
        if any(len(c) == 0 for c in contexts):
            raise ValueError("every context needs at least one token")
        if params.max_new_tokens < 1:
            raise ValueError("max_new_tokens must be at least 1")
        order = sorted(range(len(contexts)), key=lambda i: len(contexts[i]))
        out: list[Generation | None] = [None] * len(contexts)
        generator = make_generator(params.seed, self.device)
        was_training = self.model.training
        self.model.eval()
        if self._prefix is not None:
            self._prefix.check_weights(self.model)
        try:
            with torch.no_grad():
                n = self.config.max_batch_size
                for start in range(0, len(order), n):
                    idx = order[start:start + n]
                    for i, g in zip(idx, self._generate_chunk([contexts[i] for i in idx], params, generator)):
                        out[i] = g
        finally:
            if self._prefix is not None:
                self.kv_stats.evicted_entries = self._prefix.evicted
            if was_training:
                self.model.train()
        return out  # type: ignore[return-value]

    def _candidates(self, stops: tuple[str, ...]) -> torch.Tensor | None:
        """Bool mask over the vocabulary: tokens whose text may complete a stop string (cheap pre-filter)."""
        if not stops:
            return None
        if stops not in self._stop_candidates:
            last = {s[-1] for s in stops}
            vocab = self.model.get_output_embeddings().weight.shape[0]
            texts = self.tokenizer.batch_decode([[i] for i in range(min(vocab, len(self.tokenizer)))])
            mask = torch.zeros(vocab, dtype=torch.bool)
            for i, t in enumerate(texts):
                mask[i] = any(c in t for c in last) or "\ufffd" in t
            self._stop_candidates[stops] = mask
        return self._stop_candidates[stops]

    def _generate_chunk(self, contexts: list[Sequence[int]], params: SamplingParams,
                        generator: torch.Generator | None) -> list[Generation]:
        model, device = self.model, self.device
        kv_kw = cache_name(model)  # `cache` or `past_key_values`, by transformers release
        b = len(contexts)
        max_new = params.max_new_tokens
        static = self._static()
        prefix = self._prefix if not static else None
        # rows with identical contexts are prefilled once (their first row, in ``uniq``) and expanded after
        src = list(range(b))
        if self.config.dedup_prefill and not static:
            first: dict[tuple[int, ...], int] = {}
            src = [first.setdefault(tuple(c), i) for i, c in enumerate(contexts)]
        uniq = sorted(set(src))
        cached: dict[int, LayerKV | None] = {i: None for i in uniq}
        n_cached = dict.fromkeys(uniq, 0)
        reused = n_cached
        if prefix is not None:
            for i in uniq:
                cached[i], n_cached[i] = prefix.lookup(contexts[i])
            reused = dict(n_cached)
            shared = share_prefix(model, prefix, [contexts[i] for i in uniq], [n_cached[i] for i in uniq],
                                  self.config.share_prefix_tokens)
            if shared:  # every row now finds the shared prefix (or a longer one) in the cache
                for i in uniq:
                    cached[i], n_cached[i] = prefix.lookup(contexts[i])
                self.kv_stats.prefill_tokens += shared
                self.kv_stats.dedup_tokens += sum(n_cached[s] - reused[s] for s in src) - shared
            hits = sum(n_cached[s] > 0 for s in src)
            self.kv_stats.hits += hits
            self.kv_stats.misses += b - hits
        ids, attn, pos = prefill_layout([contexts[i] for i in uniq], [n_cached[i] for i in uniq], self.pad_id)
        past_w, length = attn.shape[1] - ids.shape[1], ids.shape[1]
        new = {i: len(contexts[i]) - n_cached[i] for i in uniq}
        self.kv_stats.prefill_tokens += sum(new.values())
        self.kv_stats.dedup_tokens += sum(new[s] for i, s in enumerate(src) if s != i)
        self.kv_stats.reused_tokens += sum(reused[s] for s in src)
        ids, attn, pos = ids.to(device), attn.to(device), pos.to(device)
        vocab = model.get_output_embeddings().weight.shape[0]
        seen = None
        if params.repetition_penalty != 1.0:
            seen = torch.zeros((b, vocab), dtype=torch.bool, device=device)
            for i, c in enumerate(contexts):
                seen[i, torch.as_tensor(list(c), dtype=torch.long, device=device).clamp(max=vocab - 1)] = True
        if static:
            bucket = max(1, self.config.cache_bucket)
            total = -(-(length + max_new) // bucket) * bucket
            require("agents", "transformers", needed_by="the hf backend's static cache")
            from transformers import StaticCache
            cache = StaticCache(config=model.config, max_cache_len=total)
            mask = torch.ones((b, total), dtype=torch.long, device=device)
            mask[:, :length] = attn
            out = model(input_ids=ids, attention_mask=mask, position_ids=pos, **{kv_kw: cache},
                        cache_position=torch.arange(length, device=device), use_cache=True, logits_to_keep=1)
            step_fn = self._decode_fn()
        else:
            n_layers = self._buffer_layers()
            capacity = past_w + length + max_new - 1 if n_layers else 0  # every position a step writes
            like = next((kv for kv in cached.values() if kv is not None), None)
            past: Any = None
            if like is not None:
                past = build_past([cached[i] for i in uniq], [n_cached[i] for i in uniq], past_w, like, capacity)
            elif n_layers:
                past = kv_buffer.BufferedCache(n_layers, capacity)
            out = model(input_ids=ids, attention_mask=attn, position_ids=pos, **{kv_kw: past},
                        use_cache=True, logits_to_keep=1)
            cache = returned_cache(out)
            if prefix is not None and cache_layers(cache) is None:
                log.warning("KV reuse needs a plain DynamicCache; this model's cache is %s: reuse is off",
                            type(cache).__name__)
                self._prefix = prefix = None
            mask = attn
        logits = out.logits[:, -1, :]
        if len(uniq) < b:  # expand the deduplicated rows: row i gets the KV and logits of its first copy
            at = {u: j for j, u in enumerate(uniq)}
            expand = torch.tensor([at[s] for s in src], device=device)
            cache.batch_select_indices(expand)
            logits, mask, pos = logits[expand], mask[expand], pos[expand]
        next_pos = pos[:, -1] + 1

        stops = tuple(dict.fromkeys(params.stop))
        checker = StopChecker(self.tokenizer, stops)
        cand = self._candidates(stops)
        eos = torch.zeros(vocab, dtype=torch.bool)
        for e in self.eos_ids:
            if 0 <= e < vocab:
                eos[e] = True
        rows = list(range(b))  # original row of each current batch position
        toks: list[list[int]] = [[] for _ in range(b)]
        lps: list[list[float]] = [[] for _ in range(b)]
        ents: list[list[float]] = [[] for _ in range(b)]
        finish: list[str | None] = [None] * b
        stop_hit: list[str | None] = [None] * b
        active = torch.ones(b, dtype=torch.bool)
        for step in range(max_new):
            tok, lp, ent = sample_next(logits, seen, temperature=params.temperature, top_k=params.top_k,
                                       top_p=params.top_p, repetition_penalty=params.repetition_penalty,
                                       generator=generator)
            tok_c, lp_c, ent_c = tok.cpu(), lp.cpu().tolist(), ent.cpu().tolist()
            is_eos = eos[tok_c]
            maybe_stop = cand[tok_c] if cand is not None else torch.zeros_like(is_eos)
            tok_l = tok_c.tolist()
            for j, r in enumerate(rows):
                if finish[r] is not None:
                    continue
                toks[r].append(tok_l[j])
                lps[r].append(lp_c[j])
                ents[r].append(ent_c[j])
                if is_eos[j]:
                    finish[r] = "eos"
                elif maybe_stop[j] and (s := checker(toks[r])) is not None:
                    finish[r], stop_hit[r] = "stop", s
                elif len(toks[r]) >= max_new:
                    finish[r] = "length"
                if finish[r] is not None:
                    active[j] = False
            if not bool(active.any()):
                break
            if seen is not None:
                seen.scatter_(1, tok[:, None], True)
            self.kv_stats.decode_tokens += int(active.sum())
            if static:
                out_logits = step_fn(tok[:, None], mask, next_pos[:, None], cache,
                                     torch.tensor([length + step], device=device))
                logits = out_logits[:, -1, :].clone()
            else:
                done_frac = 1.0 - float(active.float().mean())
                if done_frac >= self.config.compact_fraction:
                    if prefix is not None:
                        self._store(prefix, cache, mask, rows, (~active).nonzero().squeeze(-1).tolist(),
                                    contexts, toks)
                    keep = active.nonzero().squeeze(-1)
                    keep_d = keep.to(device)
                    cache.batch_select_indices(keep_d)
                    tok, mask, next_pos = tok[keep_d], mask[keep_d], next_pos[keep_d]
                    seen = seen[keep_d] if seen is not None else None
                    rows = [rows[k] for k in keep.tolist()]
                    active = torch.ones(len(rows), dtype=torch.bool)
                mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=1)
                out = model(input_ids=tok[:, None], attention_mask=mask, position_ids=next_pos[:, None],
                            **{kv_kw: cache}, use_cache=True)
                logits = out.logits[:, -1, :]
            next_pos = next_pos + 1
        if prefix is not None:
            self._store(prefix, cache, mask, rows, list(range(len(rows))), contexts, toks)
        self.kv_stats.generated_tokens += sum(len(t) for t in toks)
        gens = []
        for r in range(b):
            text = self.tokenizer.decode(toks[r], skip_special_tokens=False)
            gens.append(Generation(token_ids=toks[r], logprobs=lps[r], entropies=ents[r],
                                   finish_reason=finish[r] or "length", stop_string=stop_hit[r],
                                   entropy_source=EntropySource.EXACT, text=text))
        return gens

    @staticmethod
    def _store(prefix: PrefixKVCache, cache: Any, mask: torch.Tensor, rows: list[int], positions: list[int],
               contexts: list[Sequence[int]], toks: list[list[int]]) -> None:
        """Put the KV of the finished rows at batch ``positions`` into the prefix cache: the context and the
        generated tokens fed back (all but the last, which was never fed)."""
        layers = cache_layers(cache)
        if layers is None:
            return
        for j in positions:
            r = rows[j]
            seq = [*contexts[r], *toks[r][:-1]]
            prefix.put(seq, extract_row(layers, j, mask[j], len(seq)))

    def _decode_fn(self) -> Any:
        """The static-cache decode step, compiled when enabled (compiled once per backend)."""
        model = self.model
        kv_kw = cache_name(model)

        def step(input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor,
                 cache: Any, cache_position: torch.Tensor) -> torch.Tensor:
            return model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                         **{kv_kw: cache}, cache_position=cache_position, use_cache=True).logits

        if not self._compile_enabled():
            return step
        if self._compiled is None:
            self._compiled = torch.compile(step, mode=self.config.compile_mode, fullgraph=False, dynamic=False)
        return self._compiled


def _eos_ids(model: Any, tokenizer: Any) -> set[int]:
    """EOS ids from the generation config (int or list) and the tokenizer."""
    ids: set[int] = set()
    gc = getattr(model, "generation_config", None)
    for src in (getattr(gc, "eos_token_id", None), getattr(tokenizer, "eos_token_id", None)):
        if isinstance(src, int):
            ids.add(src)
        elif isinstance(src, (list, tuple)):
            ids.update(int(x) for x in src)
    return ids
