"""``openai``: any OpenAI-compatible ``/v1/completions`` server, token-in/token-out where the server allows.

Each context is one request (sent concurrently; the server batches them): the prompt is sent as a list
of token ids, log-probs are requested with ``logprobs = params.logprobs_topk``, and the vLLM extensions
``return_tokens_as_token_ids`` (tokens come back as ``"token_id:N"``), ``include_stop_str_in_output`` and
``skip_special_tokens=false`` are set, plus ``top_k`` and ``repetition_penalty``. ``vllm serve`` and
SGLang honour these. Servers that ignore the extras (llama.cpp's server) return token strings instead of
ids; those are mapped back through the tokenizer's vocabulary (``convert_tokens_to_ids``), and a token
that is not in the vocabulary raises :class:`TokenIdsUnavailable`: we never re-tokenise decoded text.

Entropy: renormalised over the returned top-k log-probs (``EntropySource.TOPK``): a lower bound that is
badly biased at high temperature (top-20 at T=1 on SmolLM2: 1.48 vs 2.96 nats exact). The log-prob is
what the server reports for the sampled token (vLLM: of the raw model distribution, before temperature,
unless the server runs with another ``logprobs_mode``). A trainer should recompute both where they matter.

Finish reason: ``length`` as reported; ``stop`` when the server names a stop string (``stop_reason``) or
one is found at the end of the text; otherwise ``eos`` (the server stopped on an end-of-sequence token).

Server pool: ``base_url`` may list several servers separated by commas (``URL1,URL2``, e.g. one ``vllm serve``
per GPU); each request goes to the server with the fewest requests in flight from this backend (ties: round
robin). ``requests_per_server`` counts what each got. The model name is read from the first server.

Not covered: chat completions, streaming, ``n > 1``, health checks or retries of a pool member that fails
(its requests raise as with one server).
"""
from __future__ import annotations

import itertools
import math
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from arpo_env.agent import EntropySource, Generation, SamplingParams
from arpo_env.deadline import total_deadline
from arpo_env.extras import require


class TokenIdsUnavailable(RuntimeError):
    """The server returned tokens that cannot be mapped to ids without re-tokenising."""


@dataclass
class OpenAIBackendConfig:
    """Settings of :class:`OpenAIBackend`."""

    base_url: str = "http://127.0.0.1:8000/v1"
    """Server root including ``/v1``; several separated by commas form a pool (least requests in flight)."""
    api_key: str | None = None
    """Sent as a bearer token when set."""
    timeout: float = 600.0
    """Seconds per request, in total (connect, sending, waiting for the headers, reading the body): a
    server that stalls or dribbles fails at this deadline (:mod:`arpo_env.http_deadline`)."""
    max_concurrency: int = 64
    """Requests in flight at once."""
    extra_body: dict[str, Any] | None = None
    """Merged into every request body (server-specific options)."""


class OpenAIBackend:
    """Token-in/token-out over an OpenAI-compatible completions server (``arpo_env.AgentBackend``).

    ``model`` is the served model name; ``tokenizer`` (optional) maps token strings to ids for servers
    that do not return ids, decodes ``Generation.text`` and supplies the EOS id.
    """

    entropy_source = EntropySource.TOPK

    def __init__(self, model: str | None = None, tokenizer: Any = None, *, base_url: str | None = None,
                 config: OpenAIBackendConfig | None = None, **overrides: Any):
        require("agents", "httpx", needed_by="the openai backend")
        import httpx

        from arpo_env.http_deadline import DeadlineTransport
        cfg = vars(config).copy() if config else {}
        if base_url is not None:
            cfg["base_url"] = base_url
        self.config = OpenAIBackendConfig(**{**cfg, **overrides})
        self.model = model
        self.tokenizer = tokenizer
        headers = {"Authorization": f"Bearer {self.config.api_key}"} if self.config.api_key else {}
        limits = httpx.Limits(max_connections=self.config.max_concurrency)
        self.base_urls = split_base_urls(self.config.base_url)
        self._clients = [httpx.Client(base_url=url, headers=headers, timeout=self.config.timeout, limits=limits,
                                      transport=DeadlineTransport(limits=limits)) for url in self.base_urls]
        self._client = self._clients[0]
        self._in_flight = [0] * len(self._clients)
        self.requests_per_server = [0] * len(self._clients)
        """Requests sent to each server of ``base_urls`` so far."""
        self._pick_lock = threading.Lock()
        self._turn = itertools.count()
        if self.model is None:
            self.model = self._served_model()

    def _served_model(self) -> str:
        with total_deadline(self.config.timeout):
            resp = self._client.get("/models")
        resp.raise_for_status()
        data = resp.json().get("data") or []
        if not data:
            raise RuntimeError(f"{self.config.base_url}/models lists no model; pass model=")
        return data[0]["id"]

    def close(self) -> None:
        for client in self._clients:
            client.close()

    def _pick(self) -> int:
        """The pool member with the fewest requests in flight (ties: round robin); counted as busy."""
        with self._pick_lock:
            n = len(self._clients)
            start = next(self._turn) % n
            i = min(((start + k) % n for k in range(n)), key=lambda j: self._in_flight[j])
            self._in_flight[i] += 1
            self.requests_per_server[i] += 1
            return i

    def generate(self, contexts: Sequence[Sequence[int]], params: SamplingParams) -> list[Generation]:
        """One request per context, concurrently; results in order."""
        if not contexts:
            return []
        workers = max(1, min(self.config.max_concurrency, len(contexts)))
        with ThreadPoolExecutor(workers) as pool:
            return list(pool.map(lambda c: self._one(list(c), params), contexts))

    def _body(self, context: list[int], params: SamplingParams) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model, "prompt": context, "max_tokens": params.max_new_tokens,
            "temperature": max(0.0, params.temperature), "top_p": params.top_p if params.temperature > 0 else 1.0,
            "top_k": params.top_k if params.top_k > 0 else -1, "repetition_penalty": params.repetition_penalty,
            "logprobs": max(1, params.logprobs_topk), "n": 1, "echo": False,
            "return_tokens_as_token_ids": True, "include_stop_str_in_output": True, "skip_special_tokens": False,
        }
        if params.stop:
            body["stop"] = list(params.stop)
        if params.seed is not None:
            body["seed"] = int(params.seed)
        body.update(self.config.extra_body or {})
        return body

    def _one(self, context: list[int], params: SamplingParams) -> Generation:
        i = self._pick()
        try:
            with total_deadline(self.config.timeout):
                resp = self._clients[i].post("/completions", json=self._body(context, params))
        finally:
            with self._pick_lock:
                self._in_flight[i] -= 1
        if resp.status_code >= 400:
            raise RuntimeError(f"completions request failed ({resp.status_code}): {resp.text[:500]}")
        choice = resp.json()["choices"][0]
        lp = choice.get("logprobs") or {}
        tokens = lp.get("tokens") or []
        ids = [self._token_id(t) for t in tokens]
        token_lps = [float(x) if x is not None else math.nan for x in (lp.get("token_logprobs") or [])]
        tops = lp.get("top_logprobs") or [None] * len(ids)
        ents = [topk_entropy(t.values()) if t else math.nan for t in tops]
        if not (len(ids) == len(token_lps) == len(ents)):
            raise RuntimeError("the server returned misaligned tokens and log-probs")
        text = self.tokenizer.decode(ids, skip_special_tokens=False) if self.tokenizer is not None \
            else choice.get("text", "")
        reason = choice.get("finish_reason")
        stop_reason = choice.get("stop_reason")
        stop_string = None
        if reason == "length":
            finish = "length"
        elif isinstance(stop_reason, str) and stop_reason:
            finish, stop_string = "stop", stop_reason
        else:
            stop_string = next((s for s in params.stop if text.rstrip().endswith(s)), None)
            finish = "stop" if stop_string else "eos"
        return Generation(token_ids=ids, logprobs=token_lps, entropies=ents, finish_reason=finish,
                          stop_string=stop_string, entropy_source=EntropySource.TOPK, text=text)

    def _token_id(self, token: str) -> int:
        if token.startswith("token_id:"):
            return int(token[len("token_id:"):])
        if self.tokenizer is not None:
            tid = self.tokenizer.convert_tokens_to_ids(token)
            unk = getattr(self.tokenizer, "unk_token_id", None)
            if isinstance(tid, int) and tid >= 0 and (tid != unk or token == getattr(self.tokenizer, "unk_token", None)):
                return tid
        raise TokenIdsUnavailable(
            f"the server returned the token {token!r} without its id; use a server that supports "
            "return_tokens_as_token_ids (vllm serve, SGLang) or pass the model's tokenizer")


def split_base_urls(base_url: str) -> list[str]:
    """The server roots of ``URL1,URL2,...`` (trailing ``/`` dropped); at least one, or ``ValueError``."""
    urls = [u.strip().rstrip("/") for u in base_url.split(",") if u.strip()]
    if not urls:
        raise ValueError(f"base_url names no server: {base_url!r}; e.g. http://127.0.0.1:8000/v1")
    return urls


def topk_entropy(logprobs: Any) -> float:
    """Entropy (nats) of the distribution renormalised over the given top-k log-probs (a lower bound)."""
    lps = [float(x) for x in logprobs if x is not None and math.isfinite(float(x))]
    if not lps:
        return math.nan
    m = max(lps)
    ws = [math.exp(x - m) for x in lps]
    z = sum(ws)
    return -sum((w / z) * math.log(w / z) for w in ws if w > 0)
