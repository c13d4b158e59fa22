"""The ARPO / GRPO training loop, top to bottom.

One step:
1. take ``prompts_per_step`` tasks at the saved data position;
2. roll out (:class:`arpo_env.trainers.arpo_rollout.ARPORollout`): M leaves per prompt, branching for ``arpo``,
   M independent samples for ``grpo`` (the same code path with branching off);
3. advantages: GRPO per prompt, attributed ``soft`` or ``hard`` on the tree, optionally entropy-aware;
4. update: old log-probs recomputed by this model before the update (not the sampler's), reference
   log-probs only when ``kl_coef > 0``; dual-clip PPO per token, token-mean over every trained token of the
   step (exact under gradient accumulation over micro-batches), AdamW, grad-norm clip, ``ppo_epochs`` passes;
5. metrics (JSONL + TensorBoard), a sample of the step's trajectories (``samples.jsonl``, :mod:`arpo_env.trainers.samples`), checkpoint every ``save_every`` steps, evaluation hook every ``eval_every``.

Precision: weights and optimizer state stay float32; on CUDA the forward passes (rollout and update) run
under bf16 autocast (``dtype=auto``), so small AdamW updates are not lost to bf16 rounding.
Scale-out (``torchrun``, world size > 1): ranks own whole trees and the update is the exact global token
mean (:mod:`arpo_env.trainers.distributed`); world size 1 never touches it.
Rollouts come from ``rollout_backend`` (:mod:`arpo_env.trainers.rollout_engine`): the trainer's model
(``hf``) or a vLLM engine that holds the weight version of the trainer's step (checked before each rollout)
and gets every optimizer step's weights pushed (verified by fingerprint); ``rollout_logprob_gap`` is the mean
|sampler log-prob - recomputed old log-prob| over trained tokens.
vLLM engines colocated under torchrun: one ``external_launcher`` engine per rank (verified on CPU, 2 ranks).
"""
from __future__ import annotations

import contextlib
import copy
import importlib
import logging
import math
import random
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from arpo_env.extras import missing_extra, require
from arpo_env.folder_lock import FolderLock

try:
    import torch
except ModuleNotFoundError as exc:  # one line naming the extra instead of a traceback
    raise missing_extra("train", exc, needed_by=__name__) from None

from arpo_env.agent import SamplingParams
from arpo_env.env import TextEnv
from arpo_env.env_workers import EnvWorkerPool
from arpo_env.task import Task
from arpo_env.trainers import dist_checkpoint
from arpo_env.trainers import distributed as D
from arpo_env.trainers.advantages import entropy_aware, grpo_advantages, token_advantages
from arpo_env.trainers.arpo_rollout import ARPORollout, RolloutBatch
from arpo_env.trainers.checkpoint import load_latest_valid, save_checkpoint
from arpo_env.trainers.config import TrainConfig
from arpo_env.trainers.data import make_task_stream
from arpo_env.trainers.losses import kl_k3, ppo_dual_clip_loss, token_logprobs
from arpo_env.trainers.metrics import MetricsLogger
from arpo_env.trainers.packing import (
    Packed,
    attention_of,
    cost_model,
    estimated_gain,
    pack,
    packed_token_logprobs,
    supports_packing,
)
from arpo_env.trainers.rollout_engine import logprob_gap
from arpo_env.trainers.run_folder import check_run_folder, record_settings
from arpo_env.trainers.samples import SampleWriter
from arpo_env.trainers.step_metrics import merge, rollout_metrics, rollout_summary
from arpo_env.trainers.weight_sync import WeightSyncError

if TYPE_CHECKING:
    from arpo_env.agents.rollout import RolloutState

log = logging.getLogger(__name__)
EvalFn = Callable[["Trainer", int], dict[str, float]]


def load_policy(cfg: TrainConfig, device: torch.device) -> tuple[Any, Any]:
    """The model (float32, on ``device``) and tokenizer named by ``cfg.model``."""
    if cfg.model == "tiny":
        from arpo_env.agents.testing import tiny_model_and_tokenizer
        model, tok = tiny_model_and_tokenizer(seed=cfg.seed)
    else:
        from arpo_env.agents.models import load_model_and_tokenizer, load_tokenizer
        model, tok = load_model_and_tokenizer(cfg.model, device=str(device), dtype=torch.float32,
                                              base_only=cfg.base_only)
        if cfg.tokenizer:
            tok = load_tokenizer(cfg.tokenizer)
    return model.to(device), tok


def make_env_pool(cfg: TrainConfig) -> EnvWorkerPool | None:
    """The env worker pool of ``cfg.env_workers`` workers (``None`` for 0: envs in this process)."""
    if cfg.env_workers <= 0:
        return None
    if cfg.env_worker_backend not in ("process", "ray"):
        raise ValueError(f"env_worker_backend must be 'process' or 'ray', got {cfg.env_worker_backend!r}")
    factory = None
    if cfg.env_worker_backend == "ray":
        from arpo_env.env_workers_ray import ray_worker_factory
        factory = ray_worker_factory(cfg.env_id, dict(cfg.env_kwargs), threads=cfg.env_worker_threads,
                                     imports=tuple(cfg.imports))
    return EnvWorkerPool(cfg.env_id, dict(cfg.env_kwargs), workers=cfg.env_workers,
                         threads=cfg.env_worker_threads, imports=tuple(cfg.imports), worker_factory=factory)


class Trainer:
    """Builds everything from a :class:`TrainConfig` and runs :meth:`train`.

    ``eval_fn(trainer, step) -> metrics`` replaces the built-in evaluation (greedy rollouts of held-out
    tasks, no branching); plug the benchmark runner in here. ``model``/``tokenizer`` override ``cfg.model``.

    One trainer writes an output folder at a time: it holds the folder's lock (:mod:`arpo_env.folder_lock`)
    from construction until :meth:`close`, and another on the same folder raises
    :class:`~arpo_env.folder_lock.FolderBusy` before loading anything. Resuming takes the newest checkpoint
    that verifies (:func:`~arpo_env.trainers.checkpoint.load_latest_valid`); damaged ones are logged and
    skipped, and :class:`~arpo_env.trainers.checkpoint.NoValidCheckpoint` is raised when none is valid.

    A folder that holds a run made with other settings is refused before anything loads
    (:class:`~arpo_env.trainers.run_folder.RunSettingsChanged`); ``force`` continues with the new settings,
    ``new_run`` archives the old run first (:mod:`arpo_env.trainers.run_folder`). ``config.yaml``, the
    metrics and TensorBoard files are written only once a step runs.
    """

    def __init__(self, cfg: TrainConfig, *, eval_fn: EvalFn | None = None, model: Any = None,
                 tokenizer: Any = None, force: bool = False, new_run: bool = False):
        self.cfg = cfg
        self.out = Path(cfg.output_dir)
        self.dist = D.init(cfg.parallel, cfg.dist_timeout_s, cfg.device)  # world size 1: nothing joined
        lock = D.rank0_first(self.dist, lambda: FolderLock(self.out, "arpo train", hint="--output-dir"))
        self._lock = lock if lock is not None else D.NoLock()
        self.metrics: MetricsLogger | None = None
        self.samples: SampleWriter | None = None
        try:
            self._forced = D.rank0_first(self.dist, lambda: check_run_folder(cfg, force=force, new_run=new_run)) or []
            self._build(eval_fn, model, tokenizer)
        except BaseException:
            self._lock.release()
            raise

    def _build(self, eval_fn: EvalFn | None, model: Any, tokenizer: Any) -> None:
        import arpo_env
        from arpo_env.agents import Agent
        from arpo_env.trainers.rollout_engine import make_rollout_engine

        cfg = self.cfg
        for module in cfg.imports:
            importlib.import_module(module)
        random.seed(cfg.seed)
        np.random.seed(cfg.seed)
        torch.manual_seed(cfg.seed)
        self.device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if cfg.device == "auto"
                                   else cfg.device)
        self.device = D.device_for(self.dist, self.device)
        amp = {"auto": torch.bfloat16 if self.device.type == "cuda" else None, "float32": None,
               "bfloat16": torch.bfloat16, "float16": torch.float16}[cfg.dtype]
        self.amp_dtype = amp
        if model is None:
            model, tokenizer = load_policy(cfg, self.device)
        self.tokenizer = tokenizer
        self.ref_model = None
        if cfg.kl_coef > 0:  # built only when used
            self.ref_model = copy.deepcopy(model).eval().requires_grad_(False)
        if cfg.lora:
            require("train", "peft", needed_by="lora=True")
            from peft import LoraConfig, get_peft_model
            targets: Any = cfg.lora_target_modules
            if targets != "all-linear":
                targets = [t.strip() for t in targets.split(",")]
            layers = None
            if cfg.lora_layers:
                n_layers = int(model.config.num_hidden_layers)
                layers = sorted({i % n_layers for i in cfg.lora_layers})
                if any(not -n_layers <= i < n_layers for i in cfg.lora_layers):
                    raise ValueError(f"TrainConfig.lora_layers: {cfg.lora_layers} outside the model's "
                                     f"{n_layers} layers (use 0..{n_layers - 1} or negative indices)")
                if targets == "all-linear":  # peft needs names with layers_to_transform: the layers' linears
                    targets = sorted({n.rsplit(".", 1)[-1] for n, mod in model.named_modules()
                                      if isinstance(mod, torch.nn.Linear) and ".layers." in n})
            model = get_peft_model(model, LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha,
                                                     lora_dropout=cfg.lora_dropout, target_modules=targets,
                                                     layers_to_transform=layers, task_type="CAUSAL_LM"))
        if cfg.gradient_checkpointing:
            model.gradient_checkpointing_enable()
        self.policy_model = D.full_copy(model, self.dist)  # rollouts and old log-probs (never communicates)
        self.train_model = D.wrap_model(model, self.dist)  # the update's forwards (DDP / FSDP2 / model)
        self.model = model
        self._attention = attention_of(model)
        self._pack_costs = cost_model(model)
        self._pack_checked: tuple[bool, str] | None = None  # pack_prefixes: (usable, why not), probed once
        D.reseed(self.dist, cfg.seed)
        params = [p for p in model.parameters() if p.requires_grad]
        # fused AdamW (one kernel over all parameters; CPU and CUDA) on one process, as TRL's default
        # ``adamw_torch_fused``; the sharded / replicated paths keep torch's default (foreach)
        fused = {"fused": True} if not self.dist.enabled and self.device.type in ("cpu", "cuda") else {}
        self.optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay,
                                           betas=tuple(cfg.adam_betas), **fused)
        self.engine = make_rollout_engine(cfg, self.policy_model, tokenizer, self.device.type)  # holds version 0
        self.backend = self.engine.backend
        self.agent = Agent(self.backend, tokenizer, max_response_tokens=cfg.max_response_tokens,
                           tool_workers=cfg.tool_workers)
        self.branch_rng = np.random.default_rng(self.dist.seed_seq(cfg.seed, 1))
        env_id, env_kwargs = cfg.env_id, dict(cfg.env_kwargs)
        self.make_env: Callable[[], TextEnv] = lambda: arpo_env.make(env_id, **env_kwargs)
        self.env_pool = make_env_pool(cfg)
        if self.env_pool is not None:
            self.make_env = self.env_pool.make
        self.rollout: ARPORollout[RolloutState] = ARPORollout(self.agent, cfg.rollout, self.make_env,
                                                              self.branch_rng, vocab_size=len(tokenizer))
        self.tasks = make_task_stream(cfg)
        self.eval_fn = eval_fn
        self.step = 0
        self.data_pos = 0
        self.ckpt_dir = self.out / "checkpoints"
        self.resumed_from: Path | None = None
        found = None
        if cfg.resume and not self.dist.enabled:
            found = load_latest_valid(self.ckpt_dir, self.model, self.optimizer, self.branch_rng)
        elif cfg.resume:
            found = dist_checkpoint.load_latest(self.ckpt_dir, self.dist, self.model, self.policy_model,
                                                self.optimizer, self.branch_rng, report=log.warning)
        if found is not None:
            last, state = found
            self.step, self.data_pos = int(state["step"]), int(state["data_pos"])
            self.resumed_from = last
            self.engine.push(self.policy_model, self.step)
            log.info("resumed from %s (step %d)", last, self.step)

    # ----- helpers --------------------------------------------------------------------------------------
    def sampling_params(self, greedy: bool = False) -> SamplingParams:
        c = self.cfg
        return SamplingParams(temperature=0.0 if greedy else c.temperature, top_p=c.top_p, top_k=c.top_k,
                              repetition_penalty=c.repetition_penalty, max_new_tokens=c.max_turn_tokens)

    def _autocast(self) -> Any:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def _logprobs(self, model: Any, ids: torch.Tensor, attn: torch.Tensor) -> torch.Tensor:
        """log pi(x_t | x_<t) for t >= 1, shape [B, T-1], at the rollout temperature."""
        with self._autocast():
            logits = model(input_ids=ids, attention_mask=attn, use_cache=False).logits[:, :-1]
        temp = self.cfg.temperature if self.cfg.temperature > 0 else 1.0
        return token_logprobs(logits, ids[:, 1:], temperature=temp)

    def _micro_logprobs(self, model: Any, m: dict[str, Any]) -> torch.Tensor:
        """The flat ``[B, T-1]`` log-probs of micro-batch ``m``: from its packed trie when it has one
        (:mod:`arpo_env.trainers.packing`), else from the padded rows."""
        pk: Packed | None = m.get("pack")
        if pk is None:
            return self._logprobs(model, m["ids"], m["attn"])
        dtype = self.amp_dtype or next(self.model.parameters()).dtype
        with self._autocast():
            logits = model(input_ids=pk.ids, position_ids=pk.positions, use_cache=False,
                           attention_mask=pk.attention_mask(self._attention or "sdpa", dtype)).logits[0]
        temp = self.cfg.temperature if self.cfg.temperature > 0 else 1.0
        return packed_token_logprobs(logits, pk.source, m["ids"][:, 1:], temperature=temp)

    def _packing_ok(self, seqs: list[dict[str, Any]]) -> bool:
        """Whether this update packs (``pack_prefixes``, an attention that takes the mask, and a one-time
        probe that packed and flat log-probs agree on this model); logs the reason when it falls back."""
        if not self.cfg.pack_prefixes:
            return False
        if self._pack_checked is None:
            ok, why = supports_packing(self.model)
            if ok and seqs:
                ok, why = self._probe_packing(seqs[0]["ids"])
            self._pack_checked = (ok, why)
            if not ok:
                log.warning("pack_prefixes: falling back to flat micro-batches: %s", why)
        return self._pack_checked[0]

    def _probe_packing(self, ids: Sequence[int]) -> tuple[bool, str]:
        """Two short rows that branch after 8 tokens, packed and flat, on the policy model (no grad)."""
        if len(ids) < 12:
            return True, ""
        a, b = list(ids[:12]), list(ids[:8]) + [int(x) for x in reversed(ids[8:12])]
        if a == b:
            b[-1] = (b[-1] + 1) % max(2, len(self.tokenizer))
        flat = {"ids": torch.tensor([a, b], device=self.device), "attn": torch.ones((2, 12), dtype=torch.long,
                                                                                    device=self.device)}
        with torch.no_grad():
            want = self._logprobs(self.policy_model, flat["ids"], flat["attn"])
            try:
                got = self._micro_logprobs(self.policy_model, {**flat, "pack": pack([a, b], 12).to(self.device)})
            except Exception as exc:  # a model that rejects position ids or a 4D mask
                return False, f"the packed forward failed ({type(exc).__name__}: {exc})"
        err = float((got - want).abs().max())
        tol = 1e-3 if self.amp_dtype is None else 1e-1
        return (True, "") if err <= tol else (False, f"packed log-probs differ from flat ones by {err:.2e} "
                                                     f"(the model ignores the 4D mask or position ids)")

    # ----- one step ---------------------------------------------------------------------------------------
    def collect(self, tasks: Sequence[Task]) -> RolloutBatch:
        """Roll out ``tasks`` (from :attr:`tasks`; each played with the stream's ``reset`` options)."""
        options = [self.tasks.options(t) for t in tasks]
        with torch.no_grad(), self._autocast():
            return self.rollout.run(options, self.sampling_params())

    def build_sequences(self, batch: RolloutBatch) -> tuple[list[dict[str, Any]], dict[str, float]]:
        """Per leaf: ids, train mask, per-token advantages (GRPO per prompt, soft/hard, entropy-aware)."""
        seqs: list[dict[str, Any]] = []
        extra: dict[str, float] = {}
        for tree in batch.trees:
            adv = grpo_advantages([t.reward for t in tree.leaves], self.cfg.adv_eps)
            for leaf, ta in zip(tree.leaves, token_advantages(tree, adv, self.cfg.advantage)):
                seqs.append({"ids": leaf.token_ids, "mask": ta.train_mask, "adv": ta.advantages,
                             "ent": leaf.entropies, "lp": leaf.logprobs})
        if self.cfg.entropy_aware_advantage:
            new, extra = entropy_aware([s["adv"] for s in seqs], [s["ent"] for s in seqs],
                                       [s["mask"] for s in seqs], self.cfg.entropy_advantage_weight)
            for s, a in zip(seqs, new):
                s["adv"] = a
        return seqs, extra

    def update(self, seqs: list[dict[str, Any]]) -> dict[str, float]:
        """PPO update on the step's sequences (see module docstring); returns loss statistics."""
        cfg, dev = self.cfg, self.device
        seqs = [s for s in seqs if sum(s["mask"][1:]) > 0]
        if not seqs and not self.dist.enabled:
            return {"loss": 0.0, "trained_tokens": 0}
        packing = self._packing_ok(seqs)
        # packed: consecutive leaves (a prompt's group together); flat: by length (least padding)
        order = list(range(len(seqs))) if packing else sorted(range(len(seqs)), key=lambda i: len(seqs[i]["ids"]))
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        micro = []
        for k in range(0, len(order), cfg.micro_batch_size):
            rows = [seqs[i] for i in order[k:k + cfg.micro_batch_size]]
            t = max(len(r["ids"]) for r in rows)
            ids = torch.full((len(rows), t), pad, dtype=torch.long)
            attn = torch.zeros((len(rows), t), dtype=torch.long)
            mask = torch.zeros((len(rows), t - 1))
            adv = torch.zeros((len(rows), t - 1))
            rlp = torch.zeros((len(rows), t - 1))
            for j, r in enumerate(rows):
                n = len(r["ids"])
                ids[j, :n] = torch.tensor(r["ids"])
                attn[j, :n] = 1
                mask[j, :n - 1] = torch.tensor(r["mask"][1:], dtype=torch.float)
                adv[j, :n - 1] = torch.tensor(r["adv"][1:], dtype=torch.float)
                rlp[j, :n - 1] = torch.tensor(r["lp"][1:], dtype=torch.float)
            micro.append({"ids": ids.to(dev), "attn": attn.to(dev), "mask": mask.to(dev), "adv": adv.to(dev),
                          "rlp": rlp.to(dev)})
            if packing:
                pk = pack([r["ids"] for r in rows], t)
                if estimated_gain([r["ids"] for r in rows], pk.length, self._pack_costs) >= cfg.pack_min_gain:
                    micro[-1]["pack"] = pk.to(dev)
        flat_tokens = sum(len(s["ids"]) for s in seqs)
        packed_tokens = sum(m["pack"].length if "pack" in m else int(m["attn"].sum()) for m in micro)
        packed_share = sum("pack" in m for m in micro) / len(micro) if micro else 0.0
        total = float(sum(m["mask"].sum().item() for m in micro))
        total, scale = D.token_mean_scale(total, self.dist)  # world size W: loss W * local sum / global tokens
        if total == 0:
            return {"loss": 0.0, "trained_tokens": 0}
        micro = D.pad_micro_batches(micro, self.dist, lambda: D.dummy_micro(pad, dev))
        reuse = cfg.reuse_old_logprobs and cfg.ppo_epochs == 1
        self.model.eval()  # dropout off for old log-probs; the policy itself is unchanged
        gap = (0.0, 0)  # |sampler's log-probs - old log-probs| over trained tokens
        with torch.no_grad():
            for m in micro:
                if not reuse:
                    m["old"] = self._micro_logprobs(self.policy_model, m)
                    g = logprob_gap(m["old"], m["rlp"], m["mask"])
                    gap = (gap[0] + g[0], gap[1] + g[1])
                if self.ref_model is not None:
                    m["ref"] = self._micro_logprobs(self.ref_model, m)
        self.train_model.train()
        stats = {"loss": 0.0, "pg_loss": 0.0, "kl": 0.0, "clip_frac": 0.0, "dual_clip_frac": 0.0,
                 "ratio_mean": 0.0, "grad_norm": 0.0}
        for _ in range(cfg.ppo_epochs):
            self.optimizer.zero_grad(set_to_none=True)
            for m in micro:
                logp = self._micro_logprobs(self.train_model, m)
                old = logp.detach() if reuse else m["old"]
                if reuse:  # one epoch: the old log-probs are this forward's
                    g = logprob_gap(old, m["rlp"], m["mask"])
                    gap = (gap[0] + g[0], gap[1] + g[1])
                out = ppo_dual_clip_loss(logp, old, m["adv"], clip_low=cfg.clip_low, clip_high=cfg.clip_high,
                                         dual_clip_c=cfg.dual_clip_c, entropy_balanced=cfg.entropy_balanced_clip)
                per_token = out.per_token
                if self.ref_model is not None:
                    kl = kl_k3(logp, m["ref"])
                    per_token = per_token + cfg.kl_coef * kl
                    stats["kl"] += float((kl.detach() * m["mask"]).sum()) / total / cfg.ppo_epochs
                loss = (per_token * m["mask"]).sum() * scale / total
                loss.backward()
                w = m["mask"]
                stats["loss"] += float(loss.detach()) / scale / cfg.ppo_epochs
                stats["pg_loss"] += float((out.per_token.detach() * w).sum()) / total / cfg.ppo_epochs
                stats["clip_frac"] += float((out.clipped * w).sum()) / total / cfg.ppo_epochs
                stats["dual_clip_frac"] += float((out.dual_clipped * w).sum()) / total / cfg.ppo_epochs
                stats["ratio_mean"] += float((out.ratio * w).sum()) / total / cfg.ppo_epochs
            params = [p for p in self.model.parameters() if p.requires_grad]
            norm = D.clip_grad_norm(params, cfg.grad_clip if cfg.grad_clip > 0 else float("inf"))
            stats["grad_norm"] += float(norm) / cfg.ppo_epochs
            self.optimizer.step()
        self.model.eval()
        D.sync_full_copy(self.policy_model, self.model, self.dist)
        stats = D.reduce_stats(stats, self.dist, keep=("grad_norm",))
        stats["trained_tokens"] = int(total)
        stats["rollout_logprob_gap"] = gap[0] / gap[1] if gap[1] else math.nan
        stats["packed"] = packed_share  # share of this rank's micro-batches forwarded packed
        stats["pack_forward_tokens"] = packed_tokens  # tokens the update forwards (flat: sum of leaf lengths)
        stats["pack_shared_share"] = 1.0 - packed_tokens / flat_tokens if flat_tokens else 0.0
        stats["old_logprob_pass"] = float(not reuse)
        return stats

    def train_step(self) -> dict[str, float]:
        cfg = self.cfg
        share = D.shard(cfg.prompts_per_step, self.dist)  # this rank's prompts (all at world size 1)
        tasks = [self.tasks.get(self.data_pos + i) for i in share]
        held = self.engine.fingerprint()  # the rollout must sample from the newest weights
        if held.version != self.step:
            raise WeightSyncError(f"the rollout engine holds weight version {held.version}, "
                                  f"the trainer is at step {self.step}")
        t0 = time.perf_counter()
        batch = self.collect(tasks)
        t1 = time.perf_counter()
        seqs, extra = self.build_sequences(batch)
        stats = self.update(seqs)
        t2 = time.perf_counter()
        if self.samples is not None:  # None outside train() (a bare train_step writes no samples)
            self.samples.write(self.step + 1, batch, first_data_pos=self.data_pos + share.start)
        self.data_pos += cfg.prompts_per_step
        self.step += 1
        t3 = time.perf_counter()
        self.engine.push(self.policy_model, self.step)  # verified: raises WeightSyncError on a mismatch
        t4 = time.perf_counter()
        summary = rollout_summary(batch, t1 - t0, t2 - t1)
        if self.dist.enabled:  # the global step's lists: every rank's leaves
            summary = merge(D.all_gather_objects(summary))
        return {**rollout_metrics(summary), **stats, **extra, "world_size": self.dist.world_size,
                "prompts": summary["prompts"], "leaves": len(summary["rewards"]),
                "time_push": t4 - t3, "weight_version": held.version, "weight_checksum": held.checksum}

    def evaluate(self) -> dict[str, float]:
        """Built-in evaluation: greedy rollouts (no branching) of ``eval_prompts`` held-out tasks."""
        if self.eval_fn is not None:
            return self.eval_fn(self, self.step)
        if self.cfg.eval_benchmark:
            return self._evaluate_benchmarks()
        tasks = [self.tasks.get(10 ** 9 + i) for i in range(self.cfg.eval_prompts)]
        envs = [self.make_env() for _ in tasks]
        try:
            with torch.no_grad(), self._autocast():
                trajs = self.agent.rollout(envs, self.sampling_params(greedy=True),
                                           options=[self.tasks.options(t) for t in tasks])
        finally:
            for e in envs:
                e.close()
        return {"eval_reward": float(np.mean([t.reward for t in trajs])),
                "eval_accuracy": float(np.mean([t.reward >= 1.0 for t in trajs])),
                "eval_tool_calls_per_sample": float(np.mean([len(t.tool_calls) for t in trajs]))}

    def eval_env(self) -> tuple[str | None, dict[str, Any]]:
        """Env id and kwargs of benchmark evaluations: ``eval_env`` (``None``: the trained ``env_id``;
        ``benchmark``: each benchmark's own env, id ``None``) and ``eval_env_kwargs`` (merged over
        ``env_kwargs`` when the env is the trained one)."""
        c = self.cfg
        if c.eval_env == "benchmark":
            return None, dict(c.eval_env_kwargs)
        env = c.eval_env or c.env_id
        return env, {**(c.env_kwargs if env == c.env_id else {}), **c.eval_env_kwargs}

    def _evaluate_benchmarks(self) -> dict[str, float]:
        """Greedy evaluation through the benchmark runner: the first ``eval_prompts`` samples of each
        benchmark in ``eval_benchmark`` (comma-separated), played in :meth:`eval_env` (the trained env unless
        ``eval_env`` says otherwise), results in ``output_dir/eval/step_N/`` (a normal result folder:
        ``arpo leaderboard`` reads it). Returns the mean score and tool calls per benchmark."""
        from arpo_env.benchmarks.registry import get_benchmark
        from arpo_env.benchmarks.results import read_rows
        from arpo_env.benchmarks.runner import EvalConfig, run_eval

        names = [get_benchmark(n.strip()).name for n in (self.cfg.eval_benchmark or "").split(",") if n.strip()]
        out = Path(self.cfg.output_dir) / "eval" / f"step_{self.step}"
        env, env_kwargs = self.eval_env()
        ecfg = EvalConfig(out=str(out), benchmarks=names, model=self.cfg.model, method=self.cfg.rollout.algorithm,
                          env=env, env_kwargs=env_kwargs,
                          limit=self.cfg.eval_prompts, sampling=self.sampling_params(greedy=True),
                          concurrency=max(1, min(self.cfg.eval_prompts, 16)), progress=False, force=True)
        with torch.no_grad(), self._autocast():
            run_eval(ecfg, self.agent)
        rows = read_rows(out / "results.jsonl")
        metrics: dict[str, float] = {}
        for name in names:
            mine = [r for r in rows if r["benchmark"] == name]
            metrics[f"eval_{name}_score"] = float(np.mean([r["score"] for r in mine])) if mine else math.nan
            metrics[f"eval_{name}_tool_calls"] = float(np.mean([r["tool_calls"] for r in mine])) if mine else math.nan
        return metrics

    def save(self) -> Path:
        if self.dist.enabled:  # every rank writes its part, rank 0 commits
            return dist_checkpoint.save(self.ckpt_dir, self.step, self.dist, self.model, self.policy_model,
                                        self.optimizer, {"data_pos": self.data_pos, "config": self.cfg.to_dict()},
                                        self.branch_rng, self.cfg.keep_checkpoints, self.tokenizer)
        return save_checkpoint(self.ckpt_dir, self.step, self.model, self.optimizer,
                               {"data_pos": self.data_pos, "config": self.cfg.to_dict()}, self.branch_rng,
                               keep=self.cfg.keep_checkpoints, tokenizer=self.tokenizer)

    def train(self) -> list[dict[str, float]]:
        """Run until ``cfg.steps``; returns the metrics of the steps run by this call."""
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        cfg = self.cfg
        history: list[dict[str, float]] = []
        if self.step >= cfg.steps:  # nothing to do: the folder stays as it is
            return history
        main = self.dist.is_main  # rank 0 writes the folder; other ranks only compute
        if main:
            record_settings(cfg, self._forced, self.step)
            self._forced = []
            self.metrics = MetricsLogger(self.out, cfg.tensorboard,
                                         resume_step=self.step if self.resumed_from else None)
            tokenizer = self.tokenizer
            self.samples = SampleWriter(self.out, cfg.samples_per_step, lambda ids: str(tokenizer.decode(list(ids))),
                                        resume_step=self.step if self.resumed_from else None,
                                        tensorboard=self.metrics.writer)
        progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[info]}"), TimeRemainingColumn(),
                            disable=not (cfg.progress and main))
        with progress:
            bar = progress.add_task(cfg.rollout.algorithm, total=cfg.steps, completed=self.step, info="")
            while self.step < cfg.steps:
                m = self.train_step()
                if cfg.eval_every and self.step % cfg.eval_every == 0 and main:
                    m.update(self.evaluate())
                if self.metrics is not None:
                    self.metrics.log(self.step, m)
                history.append(m)
                if cfg.save_every and (self.step % cfg.save_every == 0 or self.step == cfg.steps):
                    self.save()
                progress.update(bar, completed=self.step,
                                info=f"reward {m['reward']:.3f} acc {m['accuracy']:.2f} "
                                     f"calls {m['tool_calls_per_sample']:.2f} br {m['branches']}")
        if self.metrics is not None:
            self.metrics.close()
        return history

    def close(self) -> None:
        """Close the agent's tool workers and release the output folder's lock (idempotent)."""
        try:
            self.agent.close()
            if getattr(self, "engine", None) is not None:
                self.engine.close()
            pool, self.env_pool = getattr(self, "env_pool", None), None
            if pool is not None:
                pool.close()
        finally:
            self._lock.release()
            if self.dist.enabled:
                D.close()

    def __enter__(self) -> Trainer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
