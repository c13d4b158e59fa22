"""Pushing trainer weights into a vLLM rollout engine, verified (one interface, several routes).

:class:`WeightSync` is the interface: ``push(named_tensors, version) -> Fingerprint``. Every route reloads
the weights through vLLM's public reload path (``collective_rpc("reload_weights", ...)``; on vLLM's CPU
backend the model's own ``load_weights`` fails because CPU linear layers repack their weights), then resets
the prefix cache (without it a prompt longer than one KV block reuses KV computed with the old weights),
then reads a :class:`Fingerprint` back from the engine and raises :class:`WeightSyncError` when it does not
match the trainer's.

The fingerprint is ``(version, checksum)``: the checksum is a float64 sum and sum of squares over a fixed set
of parameters that every engine keeps as ordinary tensors (embeddings and norm weights, chosen by name:
:func:`fingerprint_names`; linear weights are excluded because vLLM's CPU backend repacks or removes them).
The engine side is computed by ``LLM.apply_model`` (public API) from ``named_parameters()``, and the version
is stamped on the engine's model object as the attribute ``arpo_weight_version`` by the same call, so a
skipped push is detected by its stale version and a push that did not load by its checksum.

Routes:
- :class:`InProcessSync`: an in-process ``vllm.LLM`` (``VLLM_ENABLE_V1_MULTIPROCESSING=0``: in multiprocess
  mode raw tensors passed through ``collective_rpc`` arrive as lists), ``weights_iterator``.
- :class:`DiskSync`: writes a new safetensors directory per version (temp dir + rename: atomic; older
  versions pruned to ``keep``) and reloads with ``weights_path``.
- :class:`HTTPSync`: the same directory, pushed to running ``vllm serve`` processes under
  ``VLLM_SERVER_DEV_MODE=1`` through ``/pause``, ``/collective_rpc``, ``/reset_prefix_cache``, ``/resume``
  (each request within ``timeout`` seconds in total, :mod:`arpo_env.http_deadline`: a dead or stalled
  server raises :class:`WeightSyncError` within it). Verified by greedy
  prompt log-probs on a fixed probe sequence compared with a reference the trainer computes.
- vLLM's NCCL weight-transfer engine: GPU-only; :func:`nccl_transfer_available` probes for it.

Not covered: LoRA adapters (push merged weights), tensor-parallel engines (each rank pushes its own full
set), a checksum over linear weights (the probe log-probs of :class:`HTTPSync` cover the whole model).
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from arpo_env.extras import missing_extra, require

try:
    import torch
except ModuleNotFoundError as exc:  # one line naming the extra instead of a traceback
    raise missing_extra("train", exc, needed_by=__name__) from None

Named = Iterable[tuple[str, torch.Tensor]]


class WeightSyncError(RuntimeError):
    """A push failed or the engine's fingerprint does not match the trainer's."""


@dataclass(frozen=True)
class Fingerprint:
    """What a rollout engine holds: the weight version and the checksum of :func:`fingerprint_names`."""

    version: int
    checksum: float


class WeightSync(Protocol):
    """Push a full set of named tensors (checkpoint names, e.g. ``model.layers.0.mlp.up_proj.weight``)."""

    def push(self, named_tensors: Named, version: int) -> Fingerprint: ...


def fingerprint_names(names: Iterable[str]) -> list[str]:
    """The fixed parameter set of the fingerprint: embeddings and norm weights (sorted)."""
    return sorted(n for n in names if n.endswith("norm.weight") or n.endswith("embed_tokens.weight"))


def checksum(named: Iterable[tuple[str, torch.Tensor]]) -> float:
    """float64 sum + sum of squares over the fingerprint parameters of ``named``."""
    d = dict(named)
    total = 0.0
    for n in fingerprint_names(d):
        w = d[n].detach().to("cpu", torch.float64)
        total += float(w.sum()) + float((w * w).sum())
    return total


def _engine_fingerprint(model: Any, version: int | None = None) -> tuple[int, float]:
    """Runs inside the engine (``LLM.apply_model``): stamp ``version`` (when given), return the fingerprint."""
    if version is not None:
        model.arpo_weight_version = version
    return int(getattr(model, "arpo_weight_version", -1)), checksum(model.named_parameters())


def read_fingerprint(llm: Any, version: int | None = None) -> Fingerprint:
    """The fingerprint of an in-process engine (all workers must agree)."""
    outs = llm.apply_model(lambda m: _engine_fingerprint(m, version))
    if len(set(outs)) != 1:
        raise WeightSyncError(f"engine workers disagree on their weights: {outs}")
    v, c = outs[0]
    return Fingerprint(v, c)


def verify(expected: Fingerprint, got: Fingerprint) -> Fingerprint:
    """Raise :class:`WeightSyncError` unless ``got == expected`` (checksums to 1e-9 relative)."""
    if got.version != expected.version:
        raise WeightSyncError(f"engine holds weight version {got.version}, trainer pushed {expected.version} "
                              "(a skipped or failed push)")
    if abs(got.checksum - expected.checksum) > 1e-9 * max(1.0, abs(expected.checksum)):
        raise WeightSyncError(f"engine weight checksum {got.checksum!r} != trainer's {expected.checksum!r} "
                              f"at version {expected.version} (the reload did not apply)")
    return got


def _materialize(named: Named) -> list[tuple[str, torch.Tensor]]:
    return [(n, t.detach().to("cpu").contiguous()) for n, t in named]


class InProcessSync:
    """In-process ``vllm.LLM``: ``reload_weights(weights_iterator=...)``, prefix-cache reset, fingerprint."""

    def __init__(self, llm: Any):
        self.llm = llm

    def push(self, named_tensors: Named, version: int) -> Fingerprint:
        named = _materialize(named_tensors)
        expected = Fingerprint(version, checksum(named))
        self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": iter(named),
                                                          "is_checkpoint_format": True})
        if not self.llm.reset_prefix_cache():
            raise WeightSyncError("vLLM refused to reset its prefix cache after the weight update")
        return verify(expected, read_fingerprint(self.llm, version))


def write_version_dir(root: Path, named: Sequence[tuple[str, torch.Tensor]], version: int, keep: int = 2) -> Path:
    """``root/v{version:08d}`` with ``model.safetensors``, written atomically (temp dir + rename); keeps the
    newest ``keep`` version folders."""
    require("train", "safetensors", needed_by="disk weight sync")
    from safetensors.torch import save_file
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"v{version:08d}"
    tmp = Path(tempfile.mkdtemp(prefix=f".v{version:08d}-", dir=root))
    try:
        save_file({n: t.clone() for n, t in named}, str(tmp / "model.safetensors"), metadata={"arpo_weight_version": str(version)})
        (tmp / "arpo_version.json").write_text(json.dumps({"version": version}))
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for old in sorted(p for p in root.glob("v*") if p.is_dir())[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


class DiskSync:
    """An in-process ``vllm.LLM`` reloaded from a per-version safetensors folder (``weights_path``)."""

    def __init__(self, llm: Any, root: str | Path, keep: int = 2):
        self.llm, self.root, self.keep = llm, Path(root), keep

    def push(self, named_tensors: Named, version: int) -> Fingerprint:
        named = _materialize(named_tensors)
        expected = Fingerprint(version, checksum(named))
        path = write_version_dir(self.root, named, version, self.keep)
        self.llm.collective_rpc("reload_weights", kwargs={"weights_path": str(path), "is_checkpoint_format": True})
        if not self.llm.reset_prefix_cache():
            raise WeightSyncError("vLLM refused to reset its prefix cache after the weight update")
        return verify(expected, read_fingerprint(self.llm, version))


ProbeReference = Callable[[Sequence[tuple[str, torch.Tensor]], list[int]], list[float]]


class HTTPSync:
    """``vllm serve`` processes (``VLLM_SERVER_DEV_MODE=1``) at ``base_urls`` (``http://host:port``), reloaded
    from a per-version folder under ``root`` (which the servers must see). ``reference(named, probe_ids)``
    returns the trainer's log-probs of ``probe_ids[1:]``; the servers' prompt log-probs must match it to
    ``tol`` nats (this is the fingerprint check of this route; the fingerprint's checksum is the trainer's)."""

    def __init__(self, base_urls: Sequence[str], root: str | Path, model: str, *, probe_ids: Sequence[int],
                 reference: ProbeReference | None = None, timeout: float = 120.0, keep: int = 2,
                 tol: float = 1e-3):
        self.urls = [u.rstrip("/").removesuffix("/v1") for u in base_urls]
        self.root, self.model, self.keep, self.tol, self.timeout = Path(root), model, keep, tol, timeout
        self.probe_ids, self.reference = list(probe_ids), reference

    def _post(self, client: Any, url: str, route: str, body: dict[str, Any] | None = None) -> Any:
        import httpx

        from arpo_env.deadline import total_deadline
        try:
            with total_deadline(self.timeout):  # the whole request, also against a server that dribbles
                r = client.post(url + route, json=body, timeout=self.timeout)
            r.raise_for_status()
            return r.json() if r.content else None
        except httpx.HTTPError as exc:
            raise WeightSyncError(f"weight push to {url}{route} failed: {type(exc).__name__}: {exc}") from exc

    def probe_logprobs(self, client: Any, url: str) -> list[float]:
        """Prompt log-probs of the probe sequence from one server (tokens 1..n-1)."""
        out = self._post(client, url, "/v1/completions", {"model": self.model, "prompt": self.probe_ids,
                                                            "max_tokens": 1, "temperature": 0.0,
                                                            "prompt_logprobs": 0})
        lps = out["choices"][0]["prompt_logprobs"][1:]
        return [float(d[str(t)]["logprob"]) for d, t in zip(lps, self.probe_ids[1:])]

    def push(self, named_tensors: Named, version: int) -> Fingerprint:
        require("agents", "httpx", needed_by="HTTP weight sync")
        import httpx
        named = _materialize(named_tensors)
        path = write_version_dir(self.root, named, version, self.keep)
        want = self.reference(named, self.probe_ids) if self.reference is not None else None
        from arpo_env.http_deadline import DeadlineTransport
        with httpx.Client(transport=DeadlineTransport()) as client:
            for url in self.urls:
                self._post(client, url, "/pause")
                try:
                    self._post(client, url, "/collective_rpc", {"method": "reload_weights", "kwargs": {
                        "weights_path": str(path), "is_checkpoint_format": True}})
                    self._post(client, url, "/reset_prefix_cache")
                finally:
                    self._post(client, url, "/resume")
                if want is not None:
                    got = self.probe_logprobs(client, url)
                    gap = max(abs(a - b) for a, b in zip(got, want))
                    if gap > self.tol:
                        raise WeightSyncError(f"{url} at version {version}: probe log-probs differ from the "
                                              f"trainer's by {gap:.3g} nats (> {self.tol}); the reload did not apply")
        return Fingerprint(version, checksum(named))


def nccl_transfer_available() -> bool:
    """Whether this vLLM has a weight-transfer engine (``vllm.distributed.weight_transfer``) and CUDA is up."""
    import importlib.util
    return torch.cuda.is_available() and importlib.util.find_spec("vllm.distributed.weight_transfer") is not None
