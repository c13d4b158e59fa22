"""Total deadlines for httpx: connect, TLS, request, headers and body together, not per phase.

httpx's timeouts bound each socket operation: a server that sends one header byte a second satisfies a
2 s read timeout forever (a ``timeout_s=2`` fetch took 72 s). :class:`DeadlineTransport` is an
``httpx.HTTPTransport`` whose sockets give every read and write at most the time left before the
current :func:`arpo_env.deadline.total_deadline`; once it has passed, the next socket operation raises
``httpx.ReadTimeout``/``WriteTimeout``/``ConnectTimeout``, and the client closes the connection as for
any timeout. Names are resolved in a daemon thread bounded by the same deadline (``getaddrinfo`` has no
timeout), then each address is connected with the time left. Outside a ``total_deadline`` block the
transport behaves as httpx's own. No watchdog thread is needed: a socket blocked in ``recv`` wakes at
its own timeout, which is never later than the deadline.

Usage::

    client = httpx.Client(transport=DeadlineTransport())
    with total_deadline(10.0):
        resp = client.get(url)      # all of it within 10 s, or httpx.TimeoutException

Python's own socket calls make the other phases total too: ``connect`` and ``sendall`` and the TLS
handshake each treat the socket timeout as their total duration.

Not covered: HTTP proxies taken from the environment by ``httpx.Client(trust_env=True)`` get httpx's
default transport (pass ``trust_env=False`` or mount this transport for them); HTTP/2; async clients.
Relies on one httpx internal, ``HTTPTransport._pool`` (checked when built).
"""
from __future__ import annotations

import socket
from collections.abc import Iterable
from typing import Any

from arpo_env.deadline import run_with_deadline, time_left
from arpo_env.extras import missing_extra

try:  # callers require their extra (browse, agents) first; this names one if they did not
    import httpcore
    import httpx
except ModuleNotFoundError as exc:
    raise missing_extra("browse", exc, needed_by=__name__) from None


def _bounded(timeout: float | None, exc: type[Exception], what: str) -> float | None:
    """``timeout`` cut to the time left before the current deadline; ``exc`` once it has passed."""
    left = time_left()
    if left is None:
        return timeout
    if left <= 0:
        raise exc(f"the total deadline passed before {what}")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream):
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _bounded(timeout, httpcore.ReadTimeout, "the response was read"))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _bounded(timeout, httpcore.WriteTimeout, "the request was sent"))

    def close(self) -> None:
        self._inner.close()

    def start_tls(self, ssl_context: Any, server_hostname: str | None = None,
                  timeout: float | None = None) -> httpcore.NetworkStream:
        bounded = _bounded(timeout, httpcore.ConnectTimeout, "the TLS handshake")
        return _DeadlineStream(self._inner.start_tls(ssl_context, server_hostname, bounded))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class DeadlineBackend(httpcore.NetworkBackend):
    """httpcore's sync backend with every socket operation bounded by the current total deadline."""

    def __init__(self) -> None:
        self._inner = httpcore.SyncBackend()

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options: Iterable[Any] | None = None) -> httpcore.NetworkStream:
        if time_left() is None:
            return _DeadlineStream(self._inner.connect_tcp(host, port, timeout, local_address, socket_options))
        resolve_in = _bounded(timeout, httpcore.ConnectTimeout, f"{host} was resolved") or 0.0
        try:
            infos = run_with_deadline(lambda: socket.getaddrinfo(host, port, type=socket.SOCK_STREAM),
                                      resolve_in, name="resolve")
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"resolving {host!r} took longer than the deadline") from None
        except OSError as exc:
            raise httpcore.ConnectError(f"cannot resolve {host!r}: {exc}") from None
        last: Exception = httpcore.ConnectError(f"{host!r} resolved to no address")
        for *_, addr in infos:
            bounded = _bounded(timeout, httpcore.ConnectTimeout, f"{host} was connected")
            try:  # an address literal: create_connection does no second lookup
                return _DeadlineStream(self._inner.connect_tcp(addr[0], addr[1], bounded, local_address,
                                                               socket_options))
            except httpcore.ConnectError as exc:
                last = exc
        raise last

    def connect_unix_socket(self, path: str, timeout: float | None = None,
                            socket_options: Iterable[Any] | None = None) -> httpcore.NetworkStream:
        bounded = _bounded(timeout, httpcore.ConnectTimeout, f"{path} was connected")
        return _DeadlineStream(self._inner.connect_unix_socket(path, bounded, socket_options))

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class DeadlineTransport(httpx.HTTPTransport):
    """``httpx.HTTPTransport`` (HTTP/1.1, no proxy) whose connections honour ``total_deadline``."""

    def __init__(self, *, verify: bool = True, trust_env: bool = True, limits: httpx.Limits | None = None,
                 retries: int = 0):
        limits = limits or httpx.Limits()
        super().__init__(verify=verify, trust_env=trust_env, limits=limits, retries=retries)
        if not isinstance(getattr(self, "_pool", None), httpcore.ConnectionPool):
            raise RuntimeError(f"httpx {httpx.__version__} changed HTTPTransport: DeadlineTransport needs updating")
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(verify=verify, trust_env=trust_env),
            max_connections=limits.max_connections, max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry, retries=retries, network_backend=DeadlineBackend())
