"""Main-text extraction: HTML to readable text with trafilatura, with an lxml fallback.

trafilatura keeps the article body and drops navigation, ads and boilerplate; on pages where it finds
nothing (tiny pages, link lists) the fallback takes all visible text (scripts and styles removed). The
title is the ``<title>`` element or, failing that, the first ``<h1>``. Plain-text bodies pass through.
"""
from __future__ import annotations

import re

from arpo_env.envs.browse.page import FetchError, Page
from arpo_env.extras import require

_WS = re.compile(r"[ \t\r\f\v]+")
_BLANKS = re.compile(r"\n\s*\n+")


def tidy(text: str) -> str:
    """Collapse runs of spaces and blank lines."""
    lines = [_WS.sub(" ", line).strip() for line in text.splitlines()]
    return _BLANKS.sub("\n\n", "\n".join(lines)).strip()


def _decode(body: bytes, encoding: str | None) -> str:
    if encoding:
        try:
            return body.decode(encoding, errors="replace")
        except LookupError:
            pass
    head = body[:2048].decode("ascii", errors="ignore")
    m = re.search(r"charset=[\"']?([\w-]+)", head, re.I)
    if m:
        try:
            return body.decode(m.group(1), errors="replace")
        except LookupError:
            pass
    return body.decode("utf-8", errors="replace")


def _fallback(tree) -> str:
    for bad in tree.xpath("//script|//style|//noscript|//template"):
        bad.drop_tree()
    body = tree.find("body")
    return (body if body is not None else tree).text_content()


def html_to_page(html: str, url: str = "") -> Page:
    """Title and main text of an HTML document."""
    require("browse", "trafilatura", needed_by="page text extraction (arpo/Browse-v0, source='live')")
    require("browse", "lxml.html", needed_by="page text extraction (arpo/Browse-v0, source='live')")
    import lxml.html
    import trafilatura

    try:
        tree = lxml.html.document_fromstring(html)
    except Exception:  # empty or hopeless markup
        return Page(url=url, title="", text=tidy(re.sub(r"<[^>]+>", " ", html)))
    title = (tree.findtext(".//title") or "").strip()
    if not title:
        h1 = tree.find(".//h1")
        title = h1.text_content().strip() if h1 is not None else ""
    text = None
    try:
        text = trafilatura.extract(html, url=url or None, include_comments=False, include_tables=True,
                                   favor_recall=True, deduplicate=False)
    except Exception:  # trafilatura is best effort; the fallback always works
        text = None
    if not text or len(text.strip()) < 20:
        text = _fallback(tree)
    return Page(url=url, title=" ".join(title.split()), text=tidy(text))


def extract_page(body: bytes, *, url: str, media_type: str, encoding: str | None = None) -> Page:
    """Turn a fetched body into a :class:`Page` according to its media type."""
    if b"\x00" in body[:4096]:
        raise FetchError(f"{url} looks like a binary file, not a text page")
    text = _decode(body, encoding)
    if media_type in ("text/html", "application/xhtml+xml"):
        page = html_to_page(text, url)
    else:
        page = Page(url=url, title="", text=tidy(text))
    page.content_type = media_type
    return page
