"""Scale-out training: one SPMD program per rank (``torchrun``), each rank owning whole rollout trees.

Launch: ``torchrun --nproc_per_node=N -m arpo_env.cli train ...`` (or ``arpo train --nproc N``), with
``--nnodes M --rdzv-backend c10d --rdzv-endpoint HOST:PORT`` across machines. Every rank runs the same
trainer. World size 1 (no ``WORLD_SIZE`` in the environment, or 1) is the single-process trainer exactly:
no process group, no wrapping, nothing here is called on its hot path.

Per step (world size W > 1):

- data: every rank reads the same task stream at the same position; rank r takes the contiguous share
  :func:`shard` of the step's ``prompts_per_step`` prompts (sampling seeds ``seed + r``; rank 0's equal
  the single-process ones), runs the unchanged ARPO rollout with its own engine and envs (forks never
  leave the process) and computes its groups' GRPO advantages locally (a group is one prompt's tree, so
  they are exact). ``entropy_aware_advantage`` z-scores use the rank's own tokens (not the global batch);
- update: the loss of rank r is ``W * local_masked_sum / all_reduce(trained_tokens)``; DDP and FSDP2
  average gradients over ranks, so the gradient is the one of the single-process token mean over the
  global batch (:func:`token_mean_scale`). Every rank runs the same number of forward/backward passes:
  the short ones are padded with zero-mask micro-batches (:func:`pad_micro_batches`);
- metrics: the per-leaf lists of every rank are gathered and reduced with the single-process formulas
  (:mod:`arpo_env.trainers.step_metrics`); rank 0 writes logs, metrics, samples and checkpoints
  (:mod:`arpo_env.trainers.dist_checkpoint`: every rank writes its part, rank 0 commits atomically).

Process group: gloo on CPU, nccl on CUDA (``LOCAL_RANK`` picks the GPU), with ``dist_timeout_s``; a
collective that fails (a peer died, or did not arrive within the timeout) raises :class:`PeerFailure`
naming this rank, the operation and the fix, instead of hanging.

Models (:func:`wrap_model`): ``ddp`` (``DistributedDataParallel`` without buffer sync, so that
forwards never communicate) or ``fsdp2`` (``fully_shard`` per decoder layer, found by the model's
``_no_split_modules``, then the root; on CUDA bf16 parameters with fp32 gradient reduction). Rollouts and
old log-probs use a module that never communicates: DDP's inner module, and for FSDP2 a full, non-sharded
copy (:func:`sync_full_copy` refreshes it from the shards after every optimizer step; an FSDP-sharded model
cannot decode: ranks decoding different lengths would hang in its all-gathers). Gradient clipping on FSDP2
computes the norm over the shards (:func:`clip_grad_norm`).

Not covered: tensor/pipeline parallelism; resuming with another world size or ``parallel``; envs or forks
that move between ranks; ranks on machines without a shared output folder (checkpoints are one folder).
"""
from __future__ import annotations

import contextlib
import copy
import datetime
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from arpo_env.extras import missing_extra, require

try:
    import torch
    import torch.distributed as dist
except ModuleNotFoundError as exc:  # one line naming the extra instead of a traceback
    raise missing_extra("train", exc, needed_by=__name__) from None

PARALLEL = ("none", "ddp", "fsdp2")


class PeerFailure(RuntimeError):
    """A collective failed: another rank died, or did not reach it within ``dist_timeout_s``."""


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job (``torchrun`` sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    parallel: str = "none"
    """``none`` at world size 1, else ``ddp`` or ``fsdp2`` (``TrainConfig.parallel``)."""

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that writes logs, metrics, samples and commits checkpoints."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    def seed_seq(self, *seed: int) -> list[int]:
        """A NumPy seed sequence per rank (rank 0's is ``seed`` itself, as a single process uses)."""
        return [*seed, self.rank] if self.rank else list(seed)


def env_world() -> DistInfo:
    """The launcher's view from the environment (world size 1 when not launched by ``torchrun``)."""
    return DistInfo(int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1")),
                    int(os.environ.get("LOCAL_RANK", "0")))


def init(parallel: str, timeout_s: float, device: str = "auto") -> DistInfo:
    """Join the process group (gloo on CPU, nccl on CUDA) when launched with world size > 1; else world
    size 1 and nothing initialised. ``ValueError`` for ``parallel='none'`` under a multi-process launch."""
    if parallel not in PARALLEL:
        raise ValueError(f"TrainConfig.parallel: must be one of {PARALLEL}, got {parallel!r}")
    info = env_world()
    if info.world_size <= 1:
        return DistInfo()
    if parallel == "none":
        raise ValueError(f"TrainConfig.parallel: 'none' under a launch of world size {info.world_size}; "
                         "use --parallel ddp or --parallel fsdp2 (or launch one process)")
    cuda = torch.cuda.is_available() and device in ("auto", "cuda") or device.startswith("cuda")
    if cuda:
        torch.cuda.set_device(info.local_rank)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo", timeout=datetime.timedelta(seconds=timeout_s))
    return DistInfo(dist.get_rank(), dist.get_world_size(), info.local_rank, parallel)


def device_for(info: DistInfo, device: torch.device) -> torch.device:
    """``cuda:LOCAL_RANK`` for a CUDA run of world size > 1, else ``device``."""
    return torch.device("cuda", info.local_rank) if info.enabled and device.type == "cuda" else device


def close() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


@contextlib.contextmanager
def collective(what: str) -> Iterator[None]:
    """Turn a failed collective into :class:`PeerFailure` (one message: rank, operation, fix)."""
    try:
        yield
    except (RuntimeError, dist.DistError) as exc:
        if isinstance(exc, PeerFailure):
            raise
        rank = dist.get_rank() if dist.is_initialized() else 0
        raise PeerFailure(f"rank {rank}: {what} failed: another rank died or did not arrive within "
                          f"dist_timeout_s ({type(exc).__name__}: {str(exc).splitlines()[0][:300]}); "
                          "see that rank's log, then rerun: it resumes from the newest complete checkpoint"
                          ) from exc


def shard(n: int, info: DistInfo) -> range:
    """Rank ``info.rank``'s contiguous share of ``n`` items (sizes differ by at most one)."""
    if n < info.world_size:
        raise ValueError(f"TrainConfig.prompts_per_step: {n} prompts cannot be shared by {info.world_size} "
                         "ranks; use at least one prompt per rank")
    lo, hi = n * info.rank // info.world_size, n * (info.rank + 1) // info.world_size
    return range(lo, hi)


def _device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def all_reduce(values: list[float], op: str = "sum") -> list[float]:
    """Elementwise sum or max of ``values`` over ranks (float64)."""
    t = torch.tensor(values, dtype=torch.float64, device=_device())
    with collective(f"all_reduce({op})"):
        dist.all_reduce(t, op=dist.ReduceOp.SUM if op == "sum" else dist.ReduceOp.MAX)
    return [float(v) for v in t.cpu()]


def all_gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj`` (picklable), in rank order."""
    out: list[Any] = [None] * dist.get_world_size()
    with collective("all_gather_object"):
        dist.all_gather_object(out, obj)
    return out


def barrier(what: str = "barrier") -> None:
    with collective(what):
        dist.barrier()


class NoLock:
    """The folder lock of a rank other than 0 (rank 0 holds the real one)."""

    def release(self) -> None:
        pass


def rank0_first(info: DistInfo, fn: Callable[[], Any]) -> Any:
    """``fn()`` on rank 0 only (world size 1: just ``fn()``); when it raises, rank 0 re-raises and every
    other rank raises ``RuntimeError`` quoting it (instead of waiting for a rank that is gone)."""
    if not info.enabled:
        return fn()
    out, err = None, None
    if info.is_main:
        try:
            out = fn()
        except Exception as exc:  # noqa: BLE001 - re-raised below, after the other ranks know
            err = exc
    first = all_gather_objects(None if err is None else f"{type(err).__name__}: {err}")[0]
    if err is not None:
        raise err
    if first is not None:
        raise RuntimeError(f"rank {info.rank}: rank 0 failed: {first}")
    return out


def reseed(info: DistInfo, seed: int) -> None:
    """Per-rank sampling seeds ``seed + rank`` (Python, NumPy, torch) once the model is built and wrapped
    (its construction, LoRA init included, used ``seed`` on every rank); nothing at world size 1."""
    if info.enabled:
        import random

        import numpy as np
        random.seed(seed + info.rank)
        np.random.seed(seed + info.rank)
        torch.manual_seed(seed + info.rank)


def dummy_micro(pad: int, device: torch.device) -> dict[str, Any]:
    """A micro-batch of one two-token row and a zero mask (for a rank that has nothing to train)."""
    return {"ids": torch.full((1, 2), pad, dtype=torch.long, device=device),
            "attn": torch.ones((1, 2), dtype=torch.long, device=device),
            "mask": torch.zeros((1, 1), device=device), "adv": torch.zeros((1, 1), device=device)}


def reduce_stats(stats: dict[str, float], info: DistInfo, keep: tuple[str, ...] = ()) -> dict[str, float]:
    """Loss statistics summed over ranks (each rank's are its sums over the global token count), except
    ``keep`` (equal on every rank, e.g. the grad norm)."""
    if not info.enabled:
        return stats
    names = [k for k in stats if k not in keep]
    return {**stats, **dict(zip(names, all_reduce([stats[k] for k in names])))}


def token_mean_scale(local_tokens: float, info: DistInfo) -> tuple[float, float]:
    """``(global_tokens, scale)`` such that ``scale * local_masked_sum / global_tokens`` on every rank,
    gradients averaged over ranks, is the gradient of the token mean over the global batch
    (``scale = world_size``); world size 1: ``(local_tokens, 1)``."""
    if not info.enabled:
        return local_tokens, 1
    return all_reduce([local_tokens])[0], info.world_size


def pad_micro_batches(micro: list[dict[str, Any]], info: DistInfo,
                      dummy: Callable[[], dict[str, Any]]) -> list[dict[str, Any]]:
    """``micro`` padded with zero-mask micro-batches to the most any rank has (the same number of
    forward/backward passes everywhere: DDP and FSDP2 communicate in every one of them). ``dummy()``
    makes one for a rank that has none (a copy of the last one with its mask zeroed otherwise)."""
    if not info.enabled:
        return micro
    most = int(all_reduce([float(len(micro))], op="max")[0])
    out = list(micro)
    while len(out) < most:
        base = dict(out[-1]) if out else dummy()
        base["mask"] = torch.zeros_like(base["mask"])
        out.append(base)
    return out


def _decoder_layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    names: set[str] = set()
    for m in model.modules():
        names.update(getattr(m, "_no_split_modules", None) or [])
    return [m for m in model.modules() if type(m).__name__ in names]


def wrap_model(model: torch.nn.Module, info: DistInfo) -> torch.nn.Module:
    """The module the update runs through: ``model`` at world size 1; DDP of it; or ``model`` sharded in
    place by FSDP2 (per decoder layer, then the root; bf16 params with fp32 reduction on CUDA)."""
    if not info.enabled:
        return model
    device = next(model.parameters()).device
    if info.parallel == "ddp":
        ddp = require("train", "torch.nn.parallel", needed_by="parallel=ddp")
        ids = [device.index] if device.type == "cuda" else None
        import inspect  # no buffer sync in forwards (newer torch spells it forward_sync_buffers)
        quiet = "forward_sync_buffers" if "forward_sync_buffers" in inspect.signature(
            ddp.DistributedDataParallel).parameters else "broadcast_buffers"
        with collective("DDP construction"):
            return ddp.DistributedDataParallel(model, device_ids=ids, **{quiet: False})
    fsdp = require("train", "torch.distributed.fsdp", needed_by="parallel=fsdp2")
    fully_shard = fsdp.fully_shard
    kw: dict[str, Any] = {}
    if device.type == "cuda":
        kw["mp_policy"] = fsdp.MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    layers = _decoder_layers(model)
    if not layers:
        raise ValueError(f"parallel=fsdp2: no decoder layers found in {type(model).__name__} (its "
                         "_no_split_modules names none); use --parallel ddp")
    for layer in layers:
        fully_shard(layer, **kw)
    fully_shard(model, **kw)
    return model


def full_copy(model: torch.nn.Module, info: DistInfo) -> torch.nn.Module:
    """The non-sharded module rollouts and old log-probs use: a deep copy for FSDP2 (taken before
    sharding), ``model`` itself otherwise."""
    if info.enabled and info.parallel == "fsdp2":
        return copy.deepcopy(model).eval().requires_grad_(False)
    return model


def full_state_dict(model: torch.nn.Module, cpu_offload: bool = False) -> dict[str, torch.Tensor]:
    """The full (unsharded) state dict of an FSDP2 model, names as the unwrapped model has them (every
    rank gets it; with ``cpu_offload`` only rank 0, on CPU). A collective: every rank must call it."""
    sd = require("train", "torch.distributed.checkpoint.state_dict", needed_by="parallel=fsdp2")
    with collective("gathering the full state dict"):
        return sd.get_model_state_dict(model, options=sd.StateDictOptions(full_state_dict=True, cpu_offload=cpu_offload))


def sync_full_copy(copy_: torch.nn.Module, model: torch.nn.Module, info: DistInfo) -> None:
    """Refresh the FSDP2 rollout copy from the shards (no-op unless ``copy_`` is another module)."""
    if copy_ is model:
        return
    with torch.no_grad():
        sd = full_state_dict(model)
        copy_.load_state_dict({k: v.to(copy_.state_dict()[k].dtype) for k, v in sd.items()}, strict=True)


def clip_grad_norm(params: list[torch.nn.Parameter], max_norm: float) -> float:
    """``clip_grad_norm_`` that is correct on FSDP2 shards: the total norm is reduced over ranks (a
    DTensor's ``full_tensor``) before the clip factor is applied. Returns the total norm."""
    grads = [p.grad for p in params if p.grad is not None]
    DTensor = require("train", "torch.distributed.tensor", needed_by="gradient clipping").DTensor
    if not any(isinstance(g, DTensor) for g in grads):
        return float(torch.nn.utils.clip_grad_norm_(params, max_norm))
    with collective("gradient norm"):
        total = torch.nn.utils.get_total_norm(grads, 2.0)
        if isinstance(total, DTensor):
            total = total.full_tensor()
    torch.nn.utils.clip_grads_with_norm_(params, max_norm, total)
    return float(total)
