"""The trainer's rollout engines: who generates the rollouts and how each optimizer step's weights get there.

``TrainConfig.rollout_backend`` picks one (:func:`make_rollout_engine`):

- ``hf`` (:class:`HFRollouts`): the trainer's own model through :class:`~arpo_env.agents.backends.hf.HFBackend`
  (live weights, nothing to push; exact entropies). For CPU and world size 1.
- ``vllm`` (:class:`VLLMRollouts`): a ``vllm.LLM`` in this process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``, so
  pushed tensors pass as tensors), one per rank: under ``torchrun`` (``WORLD_SIZE > 1``) it is built with
  ``distributed_executor_backend="external_launcher"``. Started from the trainer's weights as they are
  (adapter merged, LoRA merged, resumed), exported to ``output_dir/rollout_engine/init``; pushed with
  :class:`~arpo_env.trainers.weight_sync.InProcessSync` (reload, prefix-cache reset, fingerprint check).
- ``vllm-server`` (:class:`ServerRollouts`): :class:`~arpo_env.agents.backends.openai.OpenAIBackend` over a pool
  of ``vllm serve`` processes (``VLLM_SERVER_DEV_MODE=1``), reached at ``vllm_kwargs["base_urls"]`` or
  started here (``vllm_kwargs["servers"]``, default 1, ports from ``vllm_kwargs["port"]``, default 8100);
  pushed to each with :class:`~arpo_env.trainers.weight_sync.HTTPSync` (checked by probe log-probs).

Versions: the engine holds version ``v`` = the number of optimizer steps its weights have seen. The trainer
reads :meth:`RolloutEngine.fingerprint` before each rollout (it must equal the trainer's step) and pushes
after each optimizer step.

Log-probs and entropies of the vLLM engines: ``logprobs_mode="processed_logprobs"`` where the engine has that
argument (probed in ``vllm.EngineArgs``' signature; without it the raw T=1 log-probs come back and the
``rollout_logprob_gap`` metric shows the mismatch): ``log_softmax(logits / T)`` after penalties, top-k and
top-p, i.e. the trainer's recomputed old log-probs whenever ``top_p=1``, ``top_k=-1`` and
``repetition_penalty=1`` (the TrainConfig defaults). Entropies are ``EntropySource.TOPK``: renormalised over
the top ``logprobs_topk`` (20) log-probs of each of the entropy window's tokens, a lower bound of the exact
entropy the ``hf`` engine gives.

Under torchrun each rank's engine is independent (``tensor_parallel_size`` 1, no ``data_parallel_size``:
vLLM's "external DP" layout; its own DP ranks must call ``generate`` together, which would hang ranks whose
rollouts differ); verified on CPU with 2 gloo ranks (tests/trainers/test_rollout_engine_vllm.py).

Not covered: NCCL weight transfer (GPU; :func:`~arpo_env.trainers.weight_sync.nccl_transfer_available`),
tensor-parallel engines, servers on other machines (``vllm-server`` writes weight folders the servers must
see on a shared filesystem).
"""
from __future__ import annotations

import inspect
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from arpo_env.extras import missing_extra, require

try:
    import torch
except ModuleNotFoundError as exc:  # one line naming the extra instead of a traceback
    raise missing_extra("train", exc, needed_by=__name__) from None

from arpo_env.trainers.config import ROLLOUT_BACKENDS
from arpo_env.trainers.weight_sync import (
    Fingerprint,
    HTTPSync,
    InProcessSync,
    WeightSyncError,
    checksum,
    read_fingerprint,
    verify,
)

SERVER_KEYS = ("base_urls", "servers", "port", "timeout", "python")
"""``vllm_kwargs`` keys of ``vllm-server`` itself; every other key is passed to ``vllm serve`` as ``--key value``."""


class RolloutEngine(Protocol):
    """What the trainer needs from a rollout engine."""

    backend: Any
    """The ``arpo_env.AgentBackend`` the agent samples with."""

    def fingerprint(self) -> Fingerprint: ...
    def push(self, model: Any, version: int) -> Fingerprint: ...
    def close(self) -> None: ...


def policy_tensors(model: Any) -> list[tuple[str, torch.Tensor]]:
    """The model's weights under checkpoint names, LoRA deltas merged (peft models are not modified)."""
    if not hasattr(model, "peft_config"):
        return [(n, t.detach()) for n, t in model.state_dict().items()]
    base = model.get_base_model()
    out = {k.replace(".base_layer.", "."): v.detach() for k, v in base.state_dict().items() if ".lora_" not in k}
    for name, mod in base.named_modules():
        if hasattr(mod, "base_layer") and hasattr(mod, "get_delta_weight") and not getattr(mod, "merged", False):
            w = mod.base_layer.weight.detach()
            for adapter in mod.active_adapters:
                if adapter in getattr(mod, "lora_A", {}):
                    w = w + mod.get_delta_weight(adapter).detach()
            out[f"{name}.weight"] = w
    return list(out.items())


def logprob_gap(old: torch.Tensor, rollout: torch.Tensor, mask: torch.Tensor) -> tuple[float, int]:
    """(sum of |old - rollout|, count) over the tokens of ``mask`` whose rollout log-prob is finite."""
    ok = (mask > 0) & torch.isfinite(rollout)
    return float((old - rollout).abs()[ok].sum()), int(ok.sum())


def export_engine_folder(model: Any, tokenizer: Any, folder: Path) -> list[tuple[str, torch.Tensor]]:
    """Write ``model`` (merged) as a model folder vLLM loads: safetensors, ``config.json``, the tokenizer."""
    require("train", "safetensors", needed_by="the vllm rollout engines")
    from safetensors.torch import save_file
    named = [(n, t.to("cpu").contiguous()) for n, t in policy_tensors(model)]
    folder.mkdir(parents=True, exist_ok=True)
    save_file({n: t.clone() for n, t in named}, str(folder / "model.safetensors"))
    base = model.get_base_model() if hasattr(model, "peft_config") else model
    base.config.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return named


class HFRollouts:
    """The trainer's model itself (live weights): a push only records the version."""

    def __init__(self, model: Any, tokenizer: Any, max_batch_size: int):
        from arpo_env.agents.backends.hf import HFBackend
        self.model, self.backend = model, HFBackend(model, tokenizer, max_batch_size=max_batch_size)
        self.version = 0

    def fingerprint(self) -> Fingerprint:
        return Fingerprint(self.version, checksum(policy_tensors(self.model)))

    def push(self, model: Any, version: int) -> Fingerprint:
        self.version = version
        return self.fingerprint()

    def close(self) -> None:
        pass


def engine_arg_names(vllm: Any) -> set[str]:
    """The keyword arguments this vLLM's ``EngineArgs`` takes (features are probed here, not by version)."""
    return set(inspect.signature(vllm.EngineArgs).parameters)


def engine_defaults(vllm: Any, device_type: str, seed: int) -> dict[str, Any]:
    """Engine arguments of :class:`VLLMRollouts` before ``vllm_kwargs``: prefix caching, 20 log-probs,
    processed log-probs, float32 and eager mode on CPU (bf16 and 30% of the GPU memory on CUDA: the trainer
    shares the device), the external launcher under torchrun (one independent engine per rank)."""
    names = engine_arg_names(vllm)
    kw: dict[str, Any] = {"enable_prefix_caching": True, "max_logprobs": 20, "seed": seed}
    if "logprobs_mode" in names:
        kw["logprobs_mode"] = "processed_logprobs"
    if device_type == "cuda":
        kw.update(dtype="bfloat16", gpu_memory_utilization=0.3)
    else:
        kw.update(dtype="float32", enforce_eager=True)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        if "distributed_executor_backend" not in names:
            raise RuntimeError("this vLLM cannot run one engine per torchrun rank (no distributed_executor_backend)")
        # one independent engine per rank (tensor_parallel_size 1): vLLM's "external DP" layout, where every
        # rank generates on its own. Not data_parallel_size=WORLD_SIZE: vLLM's DP ranks must call generate
        # together (an all-reduce every engine step), which hangs ranks whose rollouts differ.
        kw.update(distributed_executor_backend="external_launcher")
    return {k: v for k, v in kw.items() if k in names}


class VLLMRollouts:
    """An in-process ``vllm.LLM`` started from the trainer's weights (see the module docstring)."""

    def __init__(self, model: Any, tokenizer: Any, root: Path, *, device_type: str = "cpu", seed: int = 0,
                 engine_kwargs: dict[str, Any] | None = None):
        from arpo_env.agents.backends.vllm import INSTALL_HINT, VLLMBackend
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"  # read when the engine starts
        vllm = require("vllm", "vllm", needed_by="rollout_backend=vllm", hint=INSTALL_HINT)
        named = export_engine_folder(model, tokenizer, root / "init")
        kwargs = {**engine_defaults(vllm, device_type, seed), **(engine_kwargs or {})}
        self.llm = vllm.LLM(model=str(root / "init"), **kwargs)
        self.engine_kwargs = kwargs
        self.backend = VLLMBackend(self.llm, tokenizer)
        self.sync = InProcessSync(self.llm)
        self.last = verify(Fingerprint(0, checksum(named)), read_fingerprint(self.llm, 0))

    def fingerprint(self) -> Fingerprint:
        return read_fingerprint(self.llm)

    def push(self, model: Any, version: int) -> Fingerprint:
        self.last = self.sync.push(policy_tensors(model), version)
        return self.last

    def close(self) -> None:
        """Shut the engine down now (idempotent), where this vLLM's engine client has ``shutdown`` (probed).
        Under torchrun its teardown destroys the process group it joined, so the trainer calls this before
        its own ``destroy_process_group``; left to the interpreter's exit it fails on a destroyed group."""
        core: Any = getattr(getattr(self.llm, "llm_engine", None), "engine_core", None)
        shutdown = getattr(core, "shutdown", None)
        if callable(shutdown):
            shutdown()


def _die_with_parent() -> None:
    """In a started server (Linux): SIGTERM when the process that started it dies, so none is orphaned."""
    import ctypes
    import signal
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def start_servers(folder: Path, count: int, port: int, flags: dict[str, Any], python: str = sys.executable,
                  timeout: float = 900.0, log_dir: Path | None = None) -> tuple[list[subprocess.Popen[bytes]], list[str]]:
    """Start ``count`` dev-mode ``vllm serve`` processes of ``folder`` on 127.0.0.1 ports ``port..``; returns
    them and their root URLs once each answers ``/health`` (``RuntimeError`` with its log tail otherwise). On
    Linux each gets SIGTERM when this process dies (no orphaned servers); :func:`stop_servers` stops them."""
    require("agents", "httpx", needed_by="rollout_backend=vllm-server")
    import httpx
    procs, urls, logs = [], [], []
    env = {**os.environ, "VLLM_SERVER_DEV_MODE": "1"}
    for i in range(count):
        args = [python, "-m", "vllm.entrypoints.openai.api_server", "--model", str(folder), "--host", "127.0.0.1",
                "--port", str(port + i)]
        for k, v in flags.items():
            args += [f"--{k.replace('_', '-')}"] + ([] if v is True else [str(v)])
        log = (log_dir or folder.parent) / f"vllm-serve-{port + i}.log"
        logs.append(log)
        with open(log, "wb") as fh:
            procs.append(subprocess.Popen(args, env=env, stdout=fh, stderr=subprocess.STDOUT,
                                          preexec_fn=_die_with_parent if sys.platform == "linux" else None))
        urls.append(f"http://127.0.0.1:{port + i}")
    deadline = time.monotonic() + timeout
    for proc, url, log in zip(procs, urls, logs):
        while True:
            if proc.poll() is not None or time.monotonic() > deadline:
                stop_servers(procs)
                tail = log.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"vllm serve at {url} did not come up (see {log}):\n{tail}")
            try:
                if httpx.get(url + "/health", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(1.0)
    return procs, urls


def stop_servers(procs: Sequence[subprocess.Popen[bytes]]) -> None:
    """Terminate (then kill) the servers :func:`start_servers` started."""
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()


class ServerRollouts:
    """A pool of ``vllm serve`` processes (see the module docstring): the trainer's weights are pushed to
    every server at start (version 0) and after every step; the version is the last verified push."""

    PROBE_TEXT = "Weights check: the quick brown fox jumps over the lazy dog. 1 2 3 4 5 6 7 8 9 10."

    def __init__(self, model: Any, tokenizer: Any, root: Path, *, device_type: str = "cpu",
                 options: dict[str, Any] | None = None):
        from arpo_env.agents.backends.openai import OpenAIBackend
        opts = dict(options or {})
        self.procs: list[subprocess.Popen[bytes]] = []
        export_engine_folder(model, tokenizer, root / "init")
        urls = opts.get("base_urls") or []
        urls = [u.strip() for u in (urls.split(",") if isinstance(urls, str) else urls) if u.strip()]
        if not urls:
            flags = {"dtype": "float32" if device_type != "cuda" else "bfloat16", "max_logprobs": 20,
                     "logprobs_mode": "processed_logprobs", "enable_prefix_caching": True,
                     **({"enforce_eager": True} if device_type != "cuda" else {}),
                     **{k: v for k, v in opts.items() if k not in SERVER_KEYS}}
            self.procs, urls = start_servers(root / "init", int(opts.get("servers", 1)), int(opts.get("port", 8100)),
                                             flags, python=str(opts.get("python", sys.executable)))
        roots = [u.rstrip("/").removesuffix("/v1") for u in urls]
        try:
            self.backend = OpenAIBackend(tokenizer=tokenizer, base_url=",".join(r + "/v1" for r in roots))
            probe = tokenizer(self.PROBE_TEXT, add_special_tokens=False)["input_ids"]
            self.model = model
            self.sync = HTTPSync(roots, root / "weights", str(self.backend.model), probe_ids=probe,
                                 reference=lambda _named, ids: self._reference(ids),
                                 timeout=float(opts.get("timeout", 120.0)),
                                 tol=1e-3 if device_type != "cuda" else 0.1)
            self.last = self.push(model, 0)
        except BaseException:
            stop_servers(self.procs)
            raise

    def _reference(self, ids: list[int]) -> list[float]:
        with torch.no_grad():
            dev = next(self.model.parameters()).device
            logits = self.model(input_ids=torch.tensor([ids], device=dev)).logits[0, :-1].double()
            lp = torch.log_softmax(logits, -1).gather(1, torch.tensor(ids[1:], device=dev)[:, None])[:, 0]
        return [float(x) for x in lp]

    def fingerprint(self) -> Fingerprint:
        return self.last

    def push(self, model: Any, version: int) -> Fingerprint:
        self.model = model
        self.last = self.sync.push(policy_tensors(model), version)
        return self.last

    def close(self) -> None:
        self.backend.close()
        stop_servers(self.procs)
        self.procs = []


def make_rollout_engine(cfg: Any, model: Any, tokenizer: Any, device_type: str) -> RolloutEngine:
    """The engine ``cfg.rollout_backend`` names (a :class:`~arpo_env.trainers.config.TrainConfig`)."""
    root = Path(cfg.output_dir) / "rollout_engine"
    rank = int(os.environ.get("RANK", "0"))
    if cfg.rollout_backend == "hf":
        return HFRollouts(model, tokenizer, cfg.max_batch_size)
    if cfg.rollout_backend == "vllm":
        return VLLMRollouts(model, tokenizer, root / f"rank{rank}", device_type=device_type, seed=cfg.seed + rank,
                            engine_kwargs=dict(cfg.vllm_kwargs))
    if cfg.rollout_backend == "vllm-server":
        return ServerRollouts(model, tokenizer, root / f"rank{rank}", device_type=device_type,
                              options=dict(cfg.vllm_kwargs))
    raise WeightSyncError(f"rollout_backend must be one of {ROLLOUT_BACKENDS}, got {cfg.rollout_backend!r}")
