"""A preallocated KV cache for the ``hf`` backend's dynamic-cache path: decode steps write in place.

transformers' ``DynamicLayer.update`` concatenates every step (``torch.cat([keys, new], dim=-2)``), so each
decode step copies the whole cache (for SmolLM2-135M in float32, 46 KB per cached token: ~184 MB per step at
batch 8 x 500 tokens). :class:`BufferedLayer` instead holds a buffer of ``capacity`` positions per row,
writes new keys and values into it and returns views of the filled part, so a step writes one position.

- Plugs into transformers' Cache API: :class:`BufferedCache` is a ``DynamicCache`` whose layers are
  :class:`BufferedLayer` (a ``DynamicLayer`` subclass); the model's attention and mask code see the same
  ``get_seq_length`` / ``get_mask_sizes`` / ``(B, kv_heads, T, head_dim)`` keys and values as before (views,
  contiguous in ``head_dim``; SDPA accepts them).
- Capacity: the backend sizes it to the call (past + prompt + ``max_new_tokens``), so no step reallocates;
  beyond it the buffer grows geometrically (x2, one copy of the filled part).
- ``batch_select_indices`` (row compaction, or expanding deduplicated rows) gathers the filled part; when
  the batch shrinks it is moved to the front of the same buffer (no new allocation; the dropped rows' memory
  is released with the cache at the end of the call), when it grows a new buffer is allocated.
- Memory: ``rows x capacity`` positions per layer from the first step (the dynamic cache reaches the same size
  only at the last step, but holds two copies during each ``torch.cat``).

Not covered: sliding-window, chunked or hybrid layers (:func:`buffer_layers` tells the backend to keep
the stock ``DynamicCache`` for such models), offloading, ``crop``/beam reordering beyond what ``DynamicLayer``
offers on the views, the static-cache (CUDA) path.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from arpo_env.extras import missing_extra

try:
    import torch
    from transformers.cache_utils import DynamicCache, DynamicLayer
except ModuleNotFoundError as exc:  # one line naming the extra instead of a traceback
    raise missing_extra("agents", exc, needed_by=__name__) from None


class BufferedLayer(DynamicLayer):
    """A ``DynamicLayer`` that writes into a preallocated ``(B, kv_heads, capacity, head_dim)`` buffer."""

    def __init__(self, capacity: int = 0):
        super().__init__()
        self.capacity = max(0, int(capacity))
        self._k: torch.Tensor | None = None
        self._v: torch.Tensor | None = None
        self._len = 0

    def _views(self) -> None:
        assert self._k is not None and self._v is not None
        self.keys, self.values = self._k[:, :, :self._len], self._v[:, :, :self._len]

    def set_buffers(self, keys: torch.Tensor, values: torch.Tensor, length: int) -> None:
        """Adopt ``keys``/``values`` (``(B, kv_heads, capacity, head_dim)``) of which the first ``length``
        positions are filled."""
        self.device, self.is_initialized = keys.device, True
        self._k, self._v, self._len = keys, values, int(length)
        self._views()

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any,
               **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        n = key_states.shape[-2]
        end = self._len + n
        if self._k is None or self._v is None or self._k.shape[0] != key_states.shape[0]:
            if self._len:
                raise ValueError("BufferedLayer: the batch size changed without batch_select_indices")
            self.set_buffers(_alloc(key_states, max(end, self.capacity)),
                             _alloc(value_states, max(end, self.capacity)), 0)
        elif end > self._k.shape[2]:  # past capacity: grow geometrically, copying the filled part once
            cap = max(end, 2 * self._k.shape[2])
            k, v = _alloc(self._k, cap), _alloc(self._v, cap)
            k[:, :, :self._len], v[:, :, :self._len] = self.keys, self.values
            self._k, self._v = k, v
        assert self._k is not None and self._v is not None
        self._k[:, :, self._len:end] = key_states
        self._v[:, :, self._len:end] = value_states
        self._len = end
        self._views()
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self._len

    def reset(self) -> None:
        self._k = self._v = None
        self._len = 0
        super().reset()

    def crop(self, tokens_to_remove: int) -> None:
        if tokens_to_remove > 0:
            raise ValueError("crop takes a negative number of tokens to remove")
        self._len = max(0, self._len + tokens_to_remove)  # tokens_to_remove <= 0
        if self._k is not None:
            self._views()

    def batch_repeat_interleave(self, repeats: int) -> None:
        if self._k is not None:
            self.batch_select_indices(torch.arange(self._k.shape[0], device=self._k.device)
                                      .repeat_interleave(repeats))

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        """Keep rows ``indices`` (in that order, repeats allowed) of the filled part."""
        if self._k is None or self._v is None:
            return
        indices = indices.to(self._k.device)
        n, t = int(indices.shape[0]), self._len
        if n <= self._k.shape[0]:  # in place: the right-hand side is gathered before it is written
            self._k[:n, :, :t] = self._k[indices, :, :t]
            self._v[:n, :, :t] = self._v[indices, :, :t]
            self._k, self._v = self._k[:n], self._v[:n]
        else:
            k, v = _alloc(self._k, self._k.shape[2], rows=n), _alloc(self._v, self._v.shape[2], rows=n)
            k[:, :, :t], v[:, :, :t] = self._k[indices, :, :t], self._v[indices, :, :t]
            self._k, self._v = k, v
        self._views()

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        self.batch_select_indices(beam_idx)


def _alloc(like: torch.Tensor, capacity: int, rows: int | None = None) -> torch.Tensor:
    b, h, _, d = like.shape
    return like.new_empty((b if rows is None else rows, h, capacity, d))


class BufferedCache(DynamicCache):
    """A ``DynamicCache`` of ``num_layers`` :class:`BufferedLayer` of ``capacity`` positions each."""

    def __init__(self, num_layers: int, capacity: int):
        super().__init__()
        self.layers = [BufferedLayer(capacity) for _ in range(num_layers)]
        self.layer_class_to_replicate = None

    @classmethod
    def from_past(cls, data: Sequence[tuple[torch.Tensor, torch.Tensor]], length: int) -> BufferedCache:
        """A cache over given per-layer buffers whose first ``length`` positions are the past."""
        cache = cls(len(data), 0)
        for layer, (k, v) in zip(cache.layers, data):
            layer.set_buffers(k, v, length)
        return cache


def buffer_layers(config: Any) -> int:
    """How many :class:`BufferedLayer` a :class:`BufferedCache` for a model of ``config`` needs; 0 when
    transformers would not give it a cache of plain full-attention ``DynamicLayer`` only (sliding, hybrid)."""
    try:
        layers = DynamicCache(config=config).layers
    except Exception:  # noqa: BLE001 - an unusual config: keep the stock cache
        return 0
    return len(layers) if layers and all(type(layer) is DynamicLayer for layer in layers) else 0
