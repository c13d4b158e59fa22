"""What a fetch returns: :class:`Page`, the :class:`Fetcher` protocol and :class:`FetchError`.

Its own module so that :mod:`~arpo_env.envs.browse.fetch` (which extracts text) and
:mod:`~arpo_env.envs.browse.extract` (which builds pages) both import it and not each other.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable


class FetchError(RuntimeError):
    """A page could not be fetched (bad URL, refused address, HTTP error, timeout, binary content)."""


@dataclass
class Page:
    """A fetched page, reduced to its readable text."""

    url: str
    """Final URL (after redirects)."""
    title: str
    text: str
    """Main text (trafilatura for HTML; the body for plain text)."""
    status: int = 200
    content_type: str = "text/html"
    truncated: bool = False
    """The body was cut at the size cap."""


@runtime_checkable
class Fetcher(Protocol):
    """Anything that turns a URL into a :class:`Page` or raises :class:`FetchError`."""

    def fetch(self, url: str) -> Page:
        ...
