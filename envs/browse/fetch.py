"""Fetching pages: the live :class:`HttpFetcher` and its safety checks (``Fetcher``, ``Page`` and ``FetchError`` are in :mod:`~arpo_env.envs.browse.page`).

:class:`HttpFetcher` (httpx) refuses anything but ``http``/``https``; resolves the host first and refuses
private, loopback, link-local, multicast, reserved and unspecified addresses unless ``allow_private``
(tests serve pages from 127.0.0.1); follows at most ``max_redirects`` redirects itself, checking every
hop the same way; accepts only textual content types; reads at most ``max_bytes`` (a longer page is cut
and flagged ``truncated``); and enforces one overall deadline per fetch, so a server that trickles bytes
cannot hold an episode: the deadline is total (DNS, connect, TLS, headers, body, every redirect hop),
enforced on each socket operation by :class:`~arpo_env.http_deadline.DeadlineTransport`, so a server that
dribbles its headers a byte a second fails at the deadline too. Every failure is a :class:`FetchError`
with a one-line reason for the agent.

Limits: the address check and the connection resolve the name separately (a DNS-rebinding attacker
with a zero TTL could race it); JavaScript is not run; PDFs and other binary formats are refused.
"""
from __future__ import annotations

import ipaddress
import socket
import time
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

from arpo_env.deadline import run_with_deadline, total_deadline
from arpo_env.envs.browse.extract import extract_page
from arpo_env.envs.browse.page import FetchError, Page
from arpo_env.extras import require

TEXT_TYPES = ("text/html", "application/xhtml+xml", "text/plain", "text/markdown", "application/json",
              "application/xml", "text/xml")


@dataclass
class FetchConfig:
    """Limits of the live fetcher."""

    timeout_s: float = 10.0
    """Overall budget of one fetch (connect, redirects and body together)."""
    max_bytes: int = 2_000_000
    """Bodies are read up to this size; the rest is dropped and the page marked truncated."""
    max_redirects: int = 5
    """Redirect hops followed (each one re-checked)."""
    allow_private: bool = False
    """Allow private/loopback/link-local addresses (tests, intranets). Off by default (SSRF guard)."""
    user_agent: str = "arpo-env/0.1 (+https://github.com/arpo-env; research agent)"
    """Sent as ``User-Agent``."""
    content_types: tuple[str, ...] = TEXT_TYPES
    """Accepted media types; others (images, PDFs, archives) are refused."""
    headers: dict[str, str] = field(default_factory=dict)
    """Extra request headers."""


def _resolve(host: str, port: int, timeout_s: float) -> list:
    """``getaddrinfo`` abandoned after ``timeout_s`` (the resolver itself has no timeout argument)."""
    try:
        return run_with_deadline(lambda: socket.getaddrinfo(host, port, type=socket.SOCK_STREAM), timeout_s,
                                 name="resolve")
    except TimeoutError:
        raise FetchError(f"resolving {host!r} took longer than {timeout_s:.1f} s") from None
    except Exception as exc:
        raise FetchError(f"cannot resolve host {host!r} ({exc})") from None


def check_url(url: str, *, allow_private: bool = False, timeout_s: float = 10.0) -> str:
    """Validate a URL for fetching; returns it stripped. Raises :class:`FetchError` on a refused scheme,
    a missing host, an unresolvable host (or one slower than ``timeout_s`` to resolve), or (unless
    ``allow_private``) a non-public address."""
    url = url.strip()
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise FetchError(f"malformed URL {url!r}: {exc}") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise FetchError(f"only http and https URLs can be browsed, not {parts.scheme or 'a relative URL'!r}")
    host = parts.hostname
    if not host:
        raise FetchError(f"the URL {url!r} has no host")
    infos = _resolve(host, port or (443 if parts.scheme.lower() == "https" else 80), timeout_s)
    if not allow_private:
        for info in infos:
            ip = ipaddress.ip_address(info[4][0].split("%")[0])
            if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
                ip = ip.ipv4_mapped
            if not ip.is_global or ip.is_multicast or ip.is_reserved or ip.is_loopback:
                raise FetchError(f"refusing to fetch {host!r}: it resolves to the non-public address {ip}")
    return url


def _media_type(content_type: str) -> str:
    return content_type.split(";")[0].strip().lower()


class HttpFetcher:
    """Live fetching with httpx (see module docstring). Thread-safe; shared by env forks."""

    def __init__(self, config: FetchConfig | None = None):
        # checked when built: a missing library must not turn into an error observation per fetch
        require("browse", "httpx", needed_by="live fetching (arpo/Browse-v0, source='live')")
        require("browse", "trafilatura", needed_by="live fetching (arpo/Browse-v0, source='live')")
        self.config = config or FetchConfig()

    def fetch(self, url: str) -> Page:
        import httpx

        from arpo_env.http_deadline import DeadlineTransport

        cfg = self.config
        deadline = time.monotonic() + cfg.timeout_s
        headers = {"User-Agent": cfg.user_agent, "Accept": "text/html,text/plain;q=0.9,*/*;q=0.5", **cfg.headers}
        current = url
        with total_deadline(cfg.timeout_s), httpx.Client(
                follow_redirects=False, headers=headers, trust_env=False,
                transport=DeadlineTransport(trust_env=False)) as client:
            for _hop in range(cfg.max_redirects + 1):
                current = check_url(current, allow_private=cfg.allow_private,
                                    timeout_s=max(0.01, deadline - time.monotonic()))
                left = deadline - time.monotonic()
                if left <= 0:
                    raise FetchError(f"timed out after {cfg.timeout_s:g} s")
                try:
                    with client.stream("GET", current, timeout=httpx.Timeout(left)) as resp:
                        if resp.is_redirect:
                            location = resp.headers.get("location")
                            if not location:
                                raise FetchError(f"HTTP {resp.status_code} redirect without a Location header")
                            current = urljoin(current, location)
                            continue
                        return self._read(resp, current, deadline)
                except httpx.TimeoutException:
                    raise FetchError(f"timed out after {cfg.timeout_s:g} s fetching {current}") from None
                except httpx.HTTPError as exc:
                    raise FetchError(f"could not fetch {current}: {type(exc).__name__}: {exc}") from None
        raise FetchError(f"too many redirects (more than {cfg.max_redirects})")

    def _read(self, resp, url: str, deadline: float) -> Page:
        cfg = self.config
        if resp.status_code >= 400:
            raise FetchError(f"HTTP {resp.status_code} {resp.reason_phrase} for {url}")
        ctype = resp.headers.get("content-type", "")
        media = _media_type(ctype) or "text/html"
        if media not in cfg.content_types:
            raise FetchError(f"{url} is {media}, not a text page; only {', '.join(cfg.content_types)} can be read")
        body, truncated = bytearray(), False
        for chunk in resp.iter_bytes():
            body += chunk
            if len(body) >= cfg.max_bytes:
                del body[cfg.max_bytes:]
                truncated = True
                break
            if time.monotonic() > deadline:
                raise FetchError(f"timed out after {cfg.timeout_s:g} s reading {url}")
        encoding = resp.charset_encoding or ("utf-8" if media != "text/html" else None)
        page = extract_page(bytes(body), url=url, media_type=media, encoding=encoding)
        page.status, page.truncated = resp.status_code, truncated
        return page

    def __deepcopy__(self, memo: dict) -> HttpFetcher:
        return self
