"""Trie packing for the update: every shared prefix of a micro-batch is forwarded once.

The leaves of one prompt share its prompt (GRPO and ARPO alike; all prompts share the system prompt with
the tool descriptions), and an ARPO fork also shares its parent's tokens up to the branch point. The flat
update forwards and back-propagates each of these tokens once per leaf. :func:`pack` instead builds the
token trie of the micro-batch's sequences (one node per distinct prefix) and lays its nodes out as ONE
sequence, parents before children, with

- position ids = each node's depth (its index in every sequence that passes through it), and
- a 4D attention mask in which a node sees exactly its ancestors and itself,

so each node's hidden states are those of the flat forward of any sequence through it. Leaf ``j``'s
log-prob of token ``t`` is read from the logits of the node holding its token ``t - 1``
(:func:`packed_token_logprobs`), which gives the flat ``[B, T-1]`` log-probs; the loss is computed on
them unchanged, and the gradient of a shared node is the sum over the leaves through it, as in the flat
computation. Sharing is by token values (a trie), which is exact whatever the tree says: equal prefixes
give equal hidden states.

The mask is boolean for ``sdpa`` attention and additive float (0 / dtype min) for ``eager``; other
attention kernels (flash-attention, flex) cannot take an arbitrary mask, and :func:`supports_packing`
says so, so that the trainer falls back to flat micro-batches and logs it.

Not covered: several packed rows per micro-batch (one row holds the whole micro-batch, its mask is
``L x L`` for ``L`` packed tokens); models whose position encoding is not given by ``position_ids``.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from arpo_env.extras import missing_extra

try:
    import torch
except ModuleNotFoundError as exc:  # one line naming the extra instead of a traceback
    raise missing_extra("train", exc, needed_by=__name__) from None

PACKABLE_ATTENTION = ("sdpa", "eager")
"""Attention implementations that take an arbitrary 4D mask."""


@dataclass
class Packed:
    """One micro-batch as a packed trie (see the module docstring)."""

    ids: torch.Tensor
    """``[1, L]`` token of each trie node."""
    positions: torch.Tensor
    """``[1, L]`` depth of each node (its position id)."""
    visible: torch.Tensor
    """``[L, L]`` bool: node ``i`` attends to node ``j`` (its ancestors and itself)."""
    source: torch.Tensor
    """``[B, T-1]`` long: the node whose logits predict token ``t + 1`` of flat row ``b`` (0 at padding)."""

    @property
    def length(self) -> int:
        return int(self.ids.shape[1])

    def attention_mask(self, attention: str, dtype: torch.dtype) -> torch.Tensor:
        """The ``[1, 1, L, L]`` mask in the form ``attention`` takes (bool for sdpa, additive for eager)."""
        mask = self.visible[None, None]
        if attention == "eager":
            zero = torch.zeros((), dtype=dtype, device=mask.device)
            return torch.where(mask, zero, torch.finfo(dtype).min)
        return mask

    def to(self, device: torch.device) -> Packed:
        return Packed(self.ids.to(device), self.positions.to(device), self.visible.to(device),
                      self.source.to(device))


def pack(rows: Sequence[Sequence[int]], width: int) -> Packed:
    """The trie of ``rows`` (token id lists) packed into one sequence; ``width`` is the flat batch's ``T``."""
    if not rows or any(len(r) == 0 for r in rows):
        raise ValueError("pack needs non-empty sequences")
    children: list[dict[int, int]] = [{}]  # node 0 is a virtual root; real nodes are 1..L
    tokens: list[int] = []
    depth: list[int] = []
    paths: list[list[int]] = []
    for row in rows:
        node, path = 0, []
        for d, tok in enumerate(row):
            nxt = children[node].get(tok)
            if nxt is None:
                nxt = len(children)
                children[node][tok] = nxt
                children.append({})
                tokens.append(int(tok))
                depth.append(d)
            path.append(nxt - 1)  # packed index
            node = nxt
        paths.append(path)
    n = len(tokens)
    visible = torch.zeros((n, n), dtype=torch.bool)
    source = torch.zeros((len(rows), width - 1), dtype=torch.long)
    for j, path in enumerate(paths):
        p = torch.tensor(path, dtype=torch.long)
        k = len(path)
        tri = torch.ones((k, k), dtype=torch.bool).tril()
        visible[p[:, None], p[None, :]] |= tri  # the path's earlier nodes are exactly each node's ancestors
        source[j, :k - 1] = p[:-1]
    return Packed(torch.tensor([tokens]), torch.tensor([depth]), visible, source)


def shared_share(rows: Sequence[Sequence[int]]) -> float:
    """1 - packed tokens / flat tokens: the share of the flat forward that packing saves."""
    flat = sum(len(r) for r in rows)
    seen: set[tuple[int, ...]] = set()
    for r in rows:
        for k in range(1, len(r) + 1):
            seen.add(tuple(r[:k]))
    return 1.0 - len(seen) / flat if flat else 0.0


def packed_token_logprobs(logits: torch.Tensor, source: torch.Tensor, targets: torch.Tensor,
                          temperature: float = 1.0) -> torch.Tensor:
    """Flat ``[B, T-1]`` log-probs from packed ``[L, V]`` logits: log softmax(logits[source] / T)[target].
    The log-normaliser is computed once per packed node, in float32."""
    logits = logits.float()
    if temperature not in (0.0, 1.0):
        logits = logits / temperature
    lse = torch.logsumexp(logits, dim=-1)  # [L]
    picked = logits[source, targets]  # [B, T-1]
    return picked - lse[source]


def cost_model(model: Any) -> tuple[float, float]:
    """(forward FLOPs per token of the matmuls, FLOPs per token per attended position) of ``model``:
    2 x the parameters a token multiplies (all but the input embedding; the LM head counted even when
    tied) and 4 x layers x heads x head_dim. ``(1, 0)`` when the config does not say (packing always
    looks cheaper then)."""
    cfg: Any = getattr(model, "config", None)
    if cfg is None:
        return 1.0, 0.0
    try:
        h, layers = int(cfg.hidden_size), int(cfg.num_hidden_layers)
        heads = int(cfg.num_attention_heads)
        head_dim = int(getattr(cfg, "head_dim", None) or h // heads)
        vocab = int(cfg.vocab_size)
    except (AttributeError, TypeError, ValueError):
        return 1.0, 0.0
    params = sum(p.numel() for p in model.parameters())
    emb = vocab * h  # the input embedding is a lookup; the LM head (tied or not) is a matmul of this size
    tied = bool(getattr(cfg, "tie_word_embeddings", False))
    matmul = params - emb + (emb if tied else 0)
    return 2.0 * matmul, 4.0 * layers * heads * head_dim


def estimated_gain(rows: Sequence[Sequence[int]], packed_len: int, costs: tuple[float, float]) -> float:
    """Estimated flat forward cost / packed forward cost of one micro-batch (:func:`cost_model`): the flat
    batch forwards ``B x T`` padded positions each attending ``T``, the packed row ``L`` attending ``L``
    (the mask is dense: masked pairs are computed too, which is why packing can lose when little is shared)."""
    lin, att = costs
    t = max(len(r) for r in rows)
    flat = len(rows) * t * (lin + att * t)
    packed = packed_len * (lin + att * packed_len)
    return flat / packed if packed else 1.0


def attention_of(model: Any) -> str | None:
    """The attention implementation a (possibly wrapped) HF model runs, ``None`` when unknown."""
    inner = model
    for attr in ("module", "base_model", "model"):  # DDP, PEFT wrappers
        cfg = getattr(inner, "config", None)
        if cfg is not None:
            break
        inner = getattr(inner, attr, inner)
    cfg = getattr(inner, "config", None)
    impl = getattr(cfg, "_attn_implementation", None) if cfg is not None else None
    return impl if isinstance(impl, str) else None


def supports_packing(model: Any) -> tuple[bool, str]:
    """(whether ``model``'s attention takes the packed 4D mask, why not)."""
    impl = attention_of(model)
    if impl in PACKABLE_ATTENTION:
        return True, ""
    return False, f"attention implementation {impl!r} cannot take a 4D trie mask (needs one of {PACKABLE_ATTENTION})"
