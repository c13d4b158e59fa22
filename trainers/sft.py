"""``arpo sft``: supervised fine-tuning on multi-turn tool trajectories (ARPO's cold-start stage).

Loss: token-mean cross-entropy over the model's own tokens only; tool results (observations), the system
prompt and the question are masked exactly as the RL update masks them (the sequences come from
:func:`arpo_env.trainers.sft_data.tokenize_example`, which uses the agent's own prompt/observation
tokenisation). Full fine-tuning or LoRA (peft), AdamW with linear warm-up then a constant rate, grad-norm
clip, micro-batches accumulated into one optimizer step (the token-mean is over the whole step).

Shared with ``arpo train``: the config system (a dataclass that is Python, YAML and flags), atomic
resumable checkpoints that are HF model folders (:mod:`arpo_env.trainers.checkpoint`, LoRA adapters in
``adapter/``), ``metrics.jsonl`` + TensorBoard (:mod:`arpo_env.trainers.metrics`), a progress bar, the
output folder lock. ``export_adapter`` writes the LoRA adapter alone (fp16 safetensors) for shipping.

Not covered: packing, sequence parallelism, multi-GPU, learning-rate decay schedules.
"""
from __future__ import annotations

import json
import logging
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import yaml

from arpo_env.config import from_argv, from_mapping, help_text, to_mapping
from arpo_env.extras import require

log = logging.getLogger(__name__)


@dataclass
class SFTConfig:
    """Every setting of an SFT run (flags ``--NAME``, YAML keys, or Python)."""

    __pydantic_config__: ClassVar[dict[str, Any]] = {"extra": "forbid"}

    data: list[str] = field(default_factory=list)
    """ShareGPT ``.json``/``.jsonl`` files (ARPO's cold-start format, ``arpo traces`` output) or ``arpo eval``
    result folders (rows with ``score >= min_score``)."""
    min_score: float = 1.0
    """Rejection-sampling threshold for ``arpo eval`` folders."""
    model: str | None = None
    """Local path or hub id; ``None`` the raw embedded SmolLM2-135M-Instruct (without the shipped adapter);
    ``tiny`` a random tiny Llama."""
    lora: bool = True
    """Train LoRA adapters (peft) instead of all weights (``--no-lora``: full fine-tuning)."""
    lora_r: int = 16
    """LoRA rank."""
    lora_alpha: int = 32
    """LoRA scaling numerator."""
    lora_target_modules: str = "all-linear"
    """peft ``target_modules``: ``all-linear`` or comma-separated module names."""
    lr: float = 2e-4
    """Peak AdamW learning rate (use ~1e-5 for full fine-tuning)."""
    warmup_steps: int = 5
    """Linear warm-up steps."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    grad_clip: float = 1.0
    """Global gradient-norm clip (0 disables)."""
    batch_size: int = 8
    """Sequences per optimizer step."""
    micro_batch_size: int = 4
    """Sequences per forward/backward."""
    max_len: int = 1024
    """Sequences are cut to this many tokens."""
    epochs: float = 1.0
    """Passes over the data (fractional allowed); the step count is ceil(epochs * n / batch_size)."""
    seed: int = 0
    """Seed of the data order and of torch."""
    output_dir: str = "runs/sft"
    """Checkpoints, ``metrics.jsonl``, TensorBoard events, ``config.yaml``."""
    save_every: int = 50
    """Checkpoint every this many steps (and at the end); 0: only at the end."""
    keep_checkpoints: int = 2
    """Newest checkpoints kept."""
    resume: bool = True
    """Resume from the newest valid checkpoint in ``output_dir``."""
    tensorboard: bool = False
    """Also write TensorBoard events."""
    progress: bool = True
    """Show a progress bar."""
    threads: int = 0
    """torch CPU threads (0: torch's default)."""

    def __post_init__(self) -> None:
        for ok, name in [(self.batch_size >= 1, "batch_size"), (self.micro_batch_size >= 1, "micro_batch_size"),
                         (self.max_len >= 8, "max_len"), (self.lr > 0, "lr"), (self.epochs > 0, "epochs")]:
            if not ok:
                raise ValueError(f"SFTConfig.{name}: out of range")

    def to_dict(self) -> dict[str, Any]:
        return to_mapping(self)

    @classmethod
    def from_args(cls, argv: Sequence[str], base: Mapping[str, Any] | None = None) -> SFTConfig:
        default = from_mapping(cls, base) if base else cls()
        return from_argv(cls, argv, default=default, prog="arpo sft")

    @classmethod
    def from_yaml(cls, path: str | Path, overrides: Sequence[str] = ()) -> SFTConfig:
        data = yaml.safe_load(Path(path).read_text()) or {}
        return cls.from_args(overrides, base=data)

    @classmethod
    def help_text(cls) -> str:
        return help_text(cls, prog="arpo sft")


def sft_loss(model: Any, batch: Sequence[tuple[list[int], list[int]]], pad_id: int) -> tuple[Any, int]:
    """Summed next-token cross-entropy over masked-in target tokens of ``batch`` and their count."""
    require("train", "torch", needed_by="arpo sft")
    import torch
    width = max(len(ids) for ids, _ in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    attn = torch.zeros((len(batch), width), dtype=torch.long)
    tgt_mask = torch.zeros((len(batch), width), dtype=torch.bool)
    for i, (x, m) in enumerate(batch):
        ids[i, :len(x)] = torch.tensor(x)
        attn[i, :len(x)] = 1
        tgt_mask[i, :len(m)] = torch.tensor(m, dtype=torch.bool)
    dev = next(model.parameters()).device
    ids, attn, tgt_mask = ids.to(dev), attn.to(dev), tgt_mask.to(dev)
    logits = model(input_ids=ids, attention_mask=attn, use_cache=False).logits[:, :-1].float()
    nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), ids[:, 1:], reduction="none")
    keep = tgt_mask[:, 1:]
    return (nll * keep).sum(), int(keep.sum())


def _load(cfg: SFTConfig) -> tuple[Any, Any]:
    require("train", "torch", needed_by="arpo sft")
    if cfg.lora:
        require("train", "peft", needed_by="arpo sft with LoRA")
    import torch
    if cfg.model == "tiny":
        from arpo_env.agents.testing import tiny_model_and_tokenizer
        model, tok = tiny_model_and_tokenizer(seed=cfg.seed)
    else:
        from arpo_env.agents.models import load_model_and_tokenizer
        model, tok = load_model_and_tokenizer(cfg.model, device="cpu" if not torch.cuda.is_available() else None,
                                              dtype=torch.float32, base_only=True)  # SFT starts from the raw model
    if cfg.lora:
        from peft import LoraConfig, get_peft_model
        targets: Any = cfg.lora_target_modules
        if targets != "all-linear":
            targets = [t.strip() for t in targets.split(",")]
        model = get_peft_model(model, LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, target_modules=targets,
                                                 lora_dropout=0.0, task_type="CAUSAL_LM"))
    return model, tok


def run_sft(cfg: SFTConfig, *, model: Any = None, tokenizer: Any = None) -> list[dict[str, Any]]:
    """Train; returns the metrics rows of the steps run now. Resumes from ``output_dir`` when it can."""
    import torch

    from arpo_env.agents import Agent
    from arpo_env.folder_lock import FolderLock
    from arpo_env.trainers.checkpoint import load_latest_valid, save_checkpoint
    from arpo_env.trainers.metrics import MetricsLogger
    from arpo_env.trainers.sft_data import data_hash, load_examples, tokenize_example

    if not cfg.data:
        raise ValueError("arpo sft: give --data FILE_OR_FOLDER (ShareGPT json/jsonl or an arpo eval folder)")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.output_dir)
    lock = FolderLock(out, "arpo sft", hint="--output-dir")
    try:
        random.seed(cfg.seed)
        np.random.seed(cfg.seed)
        torch.manual_seed(cfg.seed)
        examples = load_examples(cfg.data, cfg.min_score)
        if not examples:
            raise ValueError(f"arpo sft: no usable examples in {cfg.data} (lower --min-score?)")
        if model is None:
            model, tokenizer = _load(cfg)
        elif cfg.lora and not hasattr(model, "peft_config"):
            from peft import LoraConfig, get_peft_model
            model = get_peft_model(model, LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha,
                                                     target_modules=cfg.lora_target_modules, task_type="CAUSAL_LM"))
        agent = Agent(backend=None, tokenizer=tokenizer)  # type: ignore[arg-type]  # tokenisation only
        seqs = [tokenize_example(e, agent, cfg.max_len) for e in examples]
        seqs = [s for s in seqs if sum(s[1]) > 0]
        order = np.random.default_rng(cfg.seed).permutation(
            np.concatenate([np.random.default_rng([cfg.seed, k]).permutation(len(seqs))
                            for k in range(int(np.ceil(cfg.epochs)))]))[: int(np.ceil(cfg.epochs * len(seqs)))]
        steps = int(np.ceil(len(order) / cfg.batch_size))
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / max(1, cfg.warmup_steps)))
        step = 0
        found = load_latest_valid(out / "checkpoints", model, opt) if cfg.resume else None
        if found is not None:
            step = int(found[1]["step"])
            sched.last_epoch = step
            log.info("resumed from %s (step %d)", found[0], step)
        out.mkdir(parents=True, exist_ok=True)
        meta = {"config": cfg.to_dict(), "data_sha256": data_hash(cfg.data), "examples": len(seqs), "steps": steps}
        (out / "config.yaml").write_text(yaml.safe_dump(meta, sort_keys=False))
        metrics = MetricsLogger(out, tensorboard=cfg.tensorboard, resume_step=step if found else None)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        history: list[dict[str, Any]] = []
        from tqdm import tqdm
        bar = tqdm(total=steps, initial=step, disable=not cfg.progress, desc="arpo sft")
        model.train()
        while step < steps:
            batch = [seqs[int(i)] for i in order[step * cfg.batch_size:(step + 1) * cfg.batch_size]]
            total = sum(sum(m[1:]) for _, m in batch)
            opt.zero_grad(set_to_none=True)
            loss_sum = 0.0
            for j in range(0, len(batch), cfg.micro_batch_size):
                loss, _ = sft_loss(model, batch[j:j + cfg.micro_batch_size], pad)
                (loss / max(1, total)).backward()
                loss_sum += float(loss.detach())
            norm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip if cfg.grad_clip > 0 else float("inf"))
            opt.step()
            sched.step()
            step += 1
            row = {"loss": loss_sum / max(1, total), "tokens": total, "grad_norm": float(norm),
                   "lr": opt.param_groups[0]["lr"]}
            metrics.log(step, row)
            history.append({"step": step, **row})
            bar.update(1)
            bar.set_postfix(loss=f"{row['loss']:.3f}")
            if step == steps or (cfg.save_every and step % cfg.save_every == 0):
                save_checkpoint(out / "checkpoints", step, model, opt, {"data_pos": step, "sft": meta},
                                keep=cfg.keep_checkpoints, tokenizer=tokenizer)
        bar.close()
        metrics.close()
        model.eval()
        return history
    finally:
        lock.release()


def export_adapter(run_dir: str | Path, out: str | Path) -> Path:
    """Copy the newest checkpoint's LoRA adapter (fp16 safetensors + adapter_config.json) and the run's
    ``config.yaml`` to ``out``."""
    require("train", "safetensors", needed_by="arpo sft --adapter-out")
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    from arpo_env.checkpoints import resolve_model_dir
    step_dir = Path(resolve_model_dir(str(run_dir)))
    src = step_dir / "adapter"
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.to(torch.float16).contiguous() for k, v in load_file(str(src / "adapter_model.safetensors")).items()}
    save_file(tensors, str(out / "adapter_model.safetensors"))
    cfg = json.loads((src / "adapter_config.json").read_text())
    cfg["base_model_name_or_path"] = None
    (out / "adapter_config.json").write_text(json.dumps(cfg, indent=1, sort_keys=True))
    shutil.copy(Path(run_dir) / "config.yaml", out / "training.yaml")
    return out
