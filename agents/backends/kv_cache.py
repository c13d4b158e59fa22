"""A bounded token-prefix KV cache for the ``hf`` backend: multi-turn episodes and ARPO forks reuse the KV
of tokens they share with an earlier generation, so only new tokens are encoded.

- An entry is one row's token sequence (its context plus the tokens it generated and fed back) and the
  per-layer keys and values of exactly those tokens, ``(kv_heads, T, head_dim)`` each, copied out of the batch
  cache when the row finishes.
- Lookup takes the entry with the longest common prefix with a new context (so a fork, whose context is its
  parent's up to the branch point, reuses the parent's entry up to there), capped at ``len(context) - 1``:
  the last context token is always encoded, because its logits start the generation.
- Bounded: ``budget_tokens`` over all entries, least recently used evicted first; an entry whose tokens are a
  prefix of a newly stored one (the previous round of the same episode) is dropped at once; an entry longer
  than the budget is not stored. Prefixes shared by several entries (siblings of a fork) are stored once per
  entry (copied, not shared blocks), and the budget counts them once per entry.
- Stale weights: the owner calls :meth:`PrefixKVCache.check_weights` before each use; the cache empties when
  the model's parameters changed (in-place optimizer steps and ``load_state_dict`` bump tensor versions).

- Shared prefixes of one call (:func:`share_prefix`): when the distinct contexts of a micro-batch start with
  the same tokens not yet cached (a system prompt with the tool descriptions, then different questions), that
  prefix is encoded once (a batch of one) and stored here, so every row reuses it; identical contexts are
  prefilled once by the backend (``dedup_prefill``).

Not covered: paged/block-shared storage, sliding-window or hybrid (recurrent) caches (the backend turns reuse
off for them); several different shared prefixes in one micro-batch (only the prefix common to all its
distinct contexts is shared).
"""
from __future__ import annotations

import inspect
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from arpo_env.extras import missing_extra, require

try:
    import torch
except ModuleNotFoundError as exc:  # one line naming the extra instead of a traceback
    raise missing_extra("agents", exc, needed_by=__name__) from None

#: Per-layer (keys, values), each ``(kv_heads, T, head_dim)``.
LayerKV = list[tuple[torch.Tensor, torch.Tensor]]


@dataclass
class KVStats:
    """Token counts of the ``hf`` backend, cumulative since construction or :meth:`reset`."""

    prefill_tokens: int = 0
    """Context tokens encoded in prefill forward passes (padding not counted)."""
    reused_tokens: int = 0
    """Context tokens whose keys and values came from the prefix cache instead (not encoded)."""
    dedup_tokens: int = 0
    """Context tokens not encoded because the same tokens of another row of the same call were: the new
    tokens of copies of an identical context, and a shared prefix encoded once for several rows (its one
    encoding counts in ``prefill_tokens``). Cached prefixes count in ``reused_tokens``:
    prefill + reused + dedup = all context tokens."""
    decode_tokens: int = 0
    """Generated tokens fed back through a decode step while their row was still running."""
    generated_tokens: int = 0
    """Tokens returned to callers."""
    hits: int = 0
    """Contexts that reused at least one cached token."""
    misses: int = 0
    """Contexts looked up with reuse on that found no shared prefix."""
    evicted_entries: int = 0
    """Entries dropped by the token budget (LRU) or by weight changes (not counting superseded ones)."""

    @property
    def encoded_tokens(self) -> int:
        """Every token the model encoded: prefill plus decode steps."""
        return self.prefill_tokens + self.decode_tokens

    def reset(self) -> None:
        for f in self.__dataclass_fields__:
            setattr(self, f, 0)

    def as_dict(self) -> dict[str, int]:
        d = {f: int(getattr(self, f)) for f in self.__dataclass_fields__}
        d["encoded_tokens"] = self.encoded_tokens
        return d


@dataclass
class _Entry:
    tokens: torch.Tensor  # (T,) long, CPU
    kv: LayerKV = field(repr=False)

    def __len__(self) -> int:
        return int(self.tokens.shape[0])


class PrefixKVCache:
    """LRU store of per-row KV keyed by token sequence, bounded by ``budget_tokens`` (see module docstring)."""

    def __init__(self, budget_tokens: int):
        if budget_tokens < 1:
            raise ValueError(f"kv_reuse_tokens must be at least 1, got {budget_tokens}; set kv_reuse=False "
                             "to turn KV reuse off")
        self.budget_tokens = budget_tokens
        self._entries: OrderedDict[int, _Entry] = OrderedDict()
        self._next = 0
        self._weights: tuple[int, ...] | None = None
        self.evicted = 0

    @property
    def tokens(self) -> int:
        """Tokens held over all entries."""
        return sum(len(e) for e in self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        """Drop every entry (e.g. after the episodes that filled it are done)."""
        self.evicted += len(self._entries)
        self._entries.clear()

    def check_weights(self, model: Any) -> None:
        """Empty the cache when ``model`` or its parameters changed since the last call."""
        params = list(model.parameters())
        key = (id(model), _storage(params[0]) if params else 0, *(p._version for p in params))
        if key != self._weights:
            if self._entries:
                self.clear()
            self._weights = key

    def lookup(self, context: Sequence[int]) -> tuple[LayerKV | None, int]:
        """KV of the longest cached prefix of ``context`` (at most ``len(context) - 1`` tokens) and its length;
        ``(None, 0)`` when nothing is shared. The entry becomes most recently used."""
        if not self._entries or len(context) < 2:
            return None, 0
        ctx = torch.as_tensor(list(context), dtype=torch.long)
        best, best_n = None, 0
        for key, e in self._entries.items():
            m = min(len(e), len(ctx) - 1)
            if m <= best_n:
                continue
            n = _common_prefix(e.tokens[:m], ctx[:m])
            if n > best_n:
                best, best_n = key, n
        if best is None:
            return None, 0
        self._entries.move_to_end(best)
        kv = self._entries[best].kv
        return [(k[:, :best_n], v[:, :best_n]) for k, v in kv], best_n

    def put(self, tokens: Sequence[int], kv: LayerKV) -> None:
        """Store ``kv`` (exactly ``len(tokens)`` positions per layer); drops entries it supersedes, then
        evicts least recently used entries beyond the budget. Longer than the budget: not stored."""
        t = torch.as_tensor(list(tokens), dtype=torch.long)
        if len(t) == 0 or len(t) > self.budget_tokens:
            return
        for key in [k for k, e in self._entries.items()
                    if len(e) <= len(t) and _common_prefix(e.tokens, t[:len(e)]) == len(e)]:
            del self._entries[key]
        self._entries[self._next] = _Entry(t, kv)
        self._next += 1
        total = self.tokens
        while total > self.budget_tokens:
            _, old = self._entries.popitem(last=False)
            total -= len(old)
            self.evicted += 1


_CACHE_NAME: dict[type, str] = {}


def cache_name(model: Any) -> str:
    """The model forward's keyword for its KV cache: ``cache`` in transformers releases that renamed it
    (``past_key_values`` is deprecated there and goes in 5.40), ``past_key_values`` in older ones (the vLLM
    venv's). A PEFT or ``torch.compile`` wrapper is looked through; the answer is kept per model class."""
    inner = getattr(model, "_orig_mod", model)
    if hasattr(inner, "get_base_model"):
        inner = inner.get_base_model()
    cls = type(inner)
    if cls not in _CACHE_NAME:
        _CACHE_NAME[cls] = "cache" if "cache" in inspect.signature(inner.forward).parameters else "past_key_values"
    return _CACHE_NAME[cls]


def returned_cache(out: Any) -> Any:
    """The KV cache a forward returned (``out.cache``, or ``out.past_key_values`` in older releases)."""
    cache = getattr(out, "cache", None)
    return cache if cache is not None else getattr(out, "past_key_values", None)


def share_prefix(model: Any, prefix: PrefixKVCache, contexts: Sequence[Sequence[int]], n_cached: Sequence[int],
                 min_tokens: int) -> int:
    """Encode the prefix common to all ``contexts`` once and store it in ``prefix``, when at least two rows
    have less than it cached (``n_cached``) and at least ``min_tokens`` of it are new; the caller then looks
    its rows up again. Returns the tokens encoded (0: nothing done). Capped at the shortest context minus one
    (its last token's logits start the generation). A model whose cache is not plain full attention: 0."""
    if min_tokens < 1 or len(contexts) < 2:
        return 0
    shortest = min(len(c) for c in contexts)
    first = torch.as_tensor(list(contexts[0][:shortest]), dtype=torch.long)
    n = shortest - 1
    for c in contexts[1:]:
        n = min(n, _common_prefix(first[:n], torch.as_tensor(list(c[:n]), dtype=torch.long)))
    if n < min_tokens or n > prefix.budget_tokens or sum(k < n for k in n_cached) < 2:
        return 0  # too short, too long to store, or fewer than two rows would use it
    kv0, n0 = prefix.lookup(contexts[0][:n + 1])  # at most n tokens of it already cached
    if n - n0 < min_tokens:
        return 0
    device = next(model.parameters()).device
    past = None
    if kv0 is not None:
        past = build_past([kv0], [n0], n0, kv0)
    out = model(input_ids=first[None, n0:n].to(device), attention_mask=torch.ones((1, n), dtype=torch.long,
                device=device), position_ids=torch.arange(n0, n, device=device)[None], **{cache_name(model): past},
                use_cache=True, logits_to_keep=1)
    layers = cache_layers(returned_cache(out))
    if layers is None:
        return 0
    prefix.put(first[:n].tolist(), [(k[0].clone(), v[0].clone()) for k, v in layers])
    return n - n0


def _storage(t: torch.Tensor) -> int:
    """Where a tensor's data lives (catches ``model.to(...)``); 0 for tensors without storage (DTensor)."""
    try:
        return int(t.data_ptr())
    except RuntimeError:
        return 0


def _common_prefix(a: torch.Tensor, b: torch.Tensor) -> int:
    """Length of the common prefix of two equally long 1-D tensors."""
    diff = (a != b).nonzero()
    return int(diff[0, 0]) if len(diff) else int(a.shape[0])


def cache_layers(cache: Any) -> list[tuple[torch.Tensor, torch.Tensor]] | None:
    """The ``(keys, values)`` of every layer of a transformers ``DynamicCache`` of plain full-attention
    layers (or a :class:`~arpo_env.agents.backends.kv_buffer.BufferedCache`: views of the filled part),
    ``(B, kv_heads, T, head_dim)`` each; ``None`` for any other cache (sliding, hybrid, legacy)."""
    layers = getattr(cache, "layers", None)
    if not layers or any(type(layer).__name__ not in ("DynamicLayer", "BufferedLayer") for layer in layers):
        return None
    return [(layer.keys, layer.values) for layer in layers]


def build_past(cached: Sequence[LayerKV | None], lengths: Sequence[int], width: int, like: LayerKV,
               capacity: int = 0) -> Any:
    """A cache of ``width`` positions for a batch: row ``i``'s ``lengths[i]`` cached positions right-aligned
    (zeros before them, masked out by the caller's attention mask). ``like`` gives the per-layer head count,
    head size, dtype and device. ``capacity`` > 0: a
    :class:`~arpo_env.agents.backends.kv_buffer.BufferedCache` with room for that many positions per row;
    0: a ``DynamicCache``."""
    b = len(cached)
    data = []
    for layer, (k0, v0) in enumerate(like):
        k = k0.new_empty((b, k0.shape[0], max(width, capacity), k0.shape[-1]))
        v = v0.new_empty((b, v0.shape[0], max(width, capacity), v0.shape[-1]))
        k[:, :, :width], v[:, :, :width] = 0, 0
        for i, (kv, n) in enumerate(zip(cached, lengths)):
            if kv is not None and n:
                k[i, :, width - n:width] = kv[layer][0]
                v[i, :, width - n:width] = kv[layer][1]
        data.append((k, v))
    if capacity:
        from arpo_env.agents.backends.kv_buffer import BufferedCache
        return BufferedCache.from_past(data, width)
    DynamicCache = require("agents", "transformers", needed_by="KV reuse").DynamicCache
    return DynamicCache(ddp_cache_data=data)


def extract_row(layers: list[tuple[torch.Tensor, torch.Tensor]], row: int, mask_row: torch.Tensor,
                n: int) -> LayerKV:
    """Copies of row ``row``'s first ``n`` unmasked positions (in order) of every layer."""
    idx = mask_row.nonzero().squeeze(-1)[:n]
    return [(k[row][:, idx], v[row][:, idx]) for k, v in layers]  # advanced indexing copies


def prefill_layout(contexts: Sequence[Sequence[int]], n_cached: Sequence[int],
                   pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Prefill inputs ``(ids, attention_mask, position_ids)``; per row ``[pad | cached prefix]`` (the past,
    ``max(n_cached)`` wide) then ``[pad | new tokens]``: ids and positions cover the new part only."""
    b, new = len(contexts), [len(c) - n for c, n in zip(contexts, n_cached)]
    past_w, length = max(n_cached), max(new)
    ids = torch.full((b, length), pad_id, dtype=torch.long)
    attn = torch.zeros((b, past_w + length), dtype=torch.long)
    pos = torch.zeros((b, length), dtype=torch.long)
    for i, c in enumerate(contexts):
        n, m = n_cached[i], new[i]
        ids[i, length - m:] = torch.as_tensor(list(c[n:]), dtype=torch.long)
        attn[i, past_w - n:past_w] = 1
        attn[i, past_w + length - m:] = 1
        pos[i, length - m:] = torch.arange(n, len(c))
    return ids, attn, pos
