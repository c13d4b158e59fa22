"""Browse: a real HTTP server on 127.0.0.1 (pages, redirects, 404, slow and trickling responses, binary
files, an enormous page), the SSRF guards, the page store, the summariser and arpo/Browse-v0."""
from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import arpo_env
from arpo_env import check_fork
from arpo_env.envs.browse.env import BrowseEnv
from arpo_env.envs.browse.fetch import FetchConfig, HttpFetcher, check_url
from arpo_env.envs.browse.page import FetchError
from arpo_env.envs.browse.store import PageStore, StoreFetcher
from arpo_env.envs.browse.tool import BrowseTool, split_windows
from tests.helpers.dribble import HEAD, Dribbler
from tests.helpers.env_checks import strict_check_env
from tests.helpers.waiting import wait_until

NAV = "<nav><a href='/'>Home</a> | <a href='/about'>About</a> | <a href='/login'>Log in</a></nav>"
ARTICLE = f"""<!doctype html><html><head><title>The Quokka</title></head><body>{NAV}
<article><h1>The Quokka</h1>
<p>The quokka is a small macropod about the size of a domestic cat. It is the only member of the genus
Setonix. Like other marsupials in the macropod family, the quokka is herbivorous and mainly nocturnal.</p>
<p>The quokka is found on some smaller islands off the coast of Western Australia, in particular on
Rottnest Island just off Perth and Bald Island near Albany.</p></article>
<footer>Copyright 2024 Example Wildlife Trust. All rights reserved.</footer></body></html>"""
PARAS = "".join(f"<p>Paragraph {i}: " + "the history of the lighthouse keeper and the sea " * 6 + "</p>"
                for i in range(60))
LONG = f"<html><head><title>Long read</title></head><body><article>{PARAS}</article></body></html>"


HUGE_CHUNKS = 50_000  # /huge.html: ~45 MB if read to the end


class Handler(BaseHTTPRequestHandler):
    huge_sent: list[int] = []
    """Bytes of /huge.html written into the socket per request, appended when the handler stops writing."""

    def log_message(self, *args):
        pass

    def _send(self, code, body: bytes, ctype="text/html; charset=utf-8", headers=()):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        try:
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def do_GET(self):
        path = self.path
        if path == "/article.html":
            self._send(200, ARTICLE.encode())
        elif path == "/long.html":
            self._send(200, LONG.encode())
        elif path == "/plain.txt":
            self._send(200, b"Just plain text.\nSecond line.", "text/plain; charset=utf-8")
        elif path == "/latin1.html":
            self._send(200, "<html><title>Caf\xe9</title><body><p>Un caf\xe9 cr\xe8me tr\xe8s bon, sans doute le meilleur caf\xe9.</p></body></html>".encode("latin-1"), "text/html; charset=iso-8859-1")
        elif path == "/redirect":
            self._send(302, b"", headers=[("Location", "/article.html")])
        elif path == "/loop":
            self._send(302, b"", headers=[("Location", "/loop")])
        elif path == "/to-file":
            self._send(302, b"", headers=[("Location", "file:///etc/passwd")])
        elif path == "/slow":
            time.sleep(3)
            self._send(200, ARTICLE.encode())
        elif path == "/drip":
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            try:
                for _ in range(40):
                    self.wfile.write(b"<p>drip</p>" * 10)
                    self.wfile.flush()
                    time.sleep(0.1)
            except (BrokenPipeError, ConnectionResetError):
                pass
        elif path == "/image.png":
            self._send(200, b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 20, "image/png")
        elif path == "/fake.txt":
            self._send(200, b"ELF\x00\x01\x02" + bytes(range(256)) * 20, "text/plain")
        elif path == "/huge.html":
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            chunk = ("<p>" + "enormous page content " * 40 + "</p>\n").encode()
            sent = 0
            try:
                self.wfile.write(b"<html><head><title>Huge</title></head><body>")
                for _ in range(HUGE_CHUNKS):
                    self.wfile.write(chunk)
                    sent += len(chunk)
            except (BrokenPipeError, ConnectionResetError):
                pass
            finally:
                Handler.huge_sent.append(sent)
        else:
            self._send(404, b"<html><body>Not found</body></html>")


@pytest.fixture(scope="module")
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def fetcher():
    return HttpFetcher(FetchConfig(allow_private=True, timeout_s=1.5, max_bytes=300_000))


# ----- fetching ----------------------------------------------------------------------------------
def test_article_main_text_without_boilerplate(server, fetcher):
    page = fetcher.fetch(server + "/article.html")
    assert page.title == "The Quokka" and page.status == 200 and not page.truncated
    assert "only member of the genus Setonix" in page.text and "Rottnest Island" in page.text
    assert "Log in" not in page.text and "All rights reserved" not in page.text


def test_redirects_followed_and_checked(server, fetcher):
    page = fetcher.fetch(server + "/redirect")
    assert page.url == server + "/article.html" and page.title == "The Quokka"
    with pytest.raises(FetchError, match="too many redirects"):
        fetcher.fetch(server + "/loop")
    with pytest.raises(FetchError, match="only http and https"):
        fetcher.fetch(server + "/to-file")


def test_http_errors_and_content_types(server, fetcher):
    with pytest.raises(FetchError, match="HTTP 404"):
        fetcher.fetch(server + "/missing")
    with pytest.raises(FetchError, match="image/png, not a text page"):
        fetcher.fetch(server + "/image.png")
    with pytest.raises(FetchError, match="binary"):
        fetcher.fetch(server + "/fake.txt")
    assert fetcher.fetch(server + "/plain.txt").text == "Just plain text.\nSecond line."
    page = fetcher.fetch(server + "/latin1.html")
    assert page.title == "Café" and "café crème" in page.text


def test_slow_and_trickling_responses_hit_the_deadline(server, fetcher):
    # /slow answers after 3 s and /drip sends a little every 0.1 s for 4 s: both would succeed if waited
    # for, and no single read waits long, so only the overall 1.5 s deadline can make them fail.
    for path in ("/slow", "/drip"):
        with pytest.raises(FetchError, match="timed out after 1.5 s"):
            fetcher.fetch(server + path)


def test_headers_dribbled_a_byte_a_second_hit_the_deadline():
    # every read returns within a second, so only a total deadline stops this (it once took 72 s at 2 s)
    dribbler = Dribbler()
    try:
        tool = BrowseTool(HttpFetcher(FetchConfig(allow_private=True, timeout_s=2)))
        result = tool(dribbler.url + "/")
        assert result.error and "timed out after 2 s" in result.text
        assert wait_until(lambda: dribbler.sent)
        # the client hung up at its deadline: ~2 bytes at one a second, plus slack, of the whole head
        assert dribbler.hung_up == [True] and dribbler.sent[0] <= 2 + 3 < len(HEAD), dribbler.sent
    finally:
        dribbler.close()


def test_enormous_page_is_capped_and_paginated(server, fetcher):
    Handler.huge_sent.clear()
    page = fetcher.fetch(server + "/huge.html")
    # the fetcher stopped reading at max_bytes and hung up: the server's writes failed long before the end
    # (what it got into the socket is the 300 kB read plus the kernel's socket buffers, a few MB)
    wait_until(lambda: Handler.huge_sent)  # the handler notices the closed connection (a hang guard)
    total = HUGE_CHUNKS * len(("<p>" + "enormous page content " * 40 + "</p>\n").encode())
    assert Handler.huge_sent and Handler.huge_sent[0] < total // 2, (Handler.huge_sent, total)
    assert page.truncated and page.title == "Huge" and 100_000 < len(page.text) <= 300_000
    tool = BrowseTool(fetcher, page_chars=5_000)
    first = tool(server + "/huge.html")
    assert not first.error and f"Window 1 of {first.metadata['windows']}" in first.text
    last = tool(f"page {first.metadata['windows']}")
    assert "cut at the size limit" in last.text


def test_address_and_scheme_guards(server):
    strict = HttpFetcher(FetchConfig(timeout_s=1.5))
    with pytest.raises(FetchError, match="non-public address 127.0.0.1"):
        strict.fetch(server + "/article.html")
    for url, msg in [("file:///etc/passwd", "only http and https"), ("ftp://example.org/x", "only http"),
                     ("javascript:alert(1)", "only http"), ("/relative/path", "only http"),
                     ("http://10.1.2.3/", "non-public"), ("http://192.168.0.1/", "non-public"),
                     ("http://169.254.169.254/latest/meta-data", "non-public"), ("http://[::1]:80/", "non-public"),
                     ("http://0.0.0.0/", "non-public"), ("http:///nohost", "no host")]:
        with pytest.raises(FetchError, match=msg):
            check_url(url)
    assert check_url(server + "/x", allow_private=True) == server + "/x"


# ----- the tool ----------------------------------------------------------------------------------
def test_split_windows():
    text = "\n\n".join("word " * 50 for _ in range(10))
    windows = split_windows(text, 600)
    assert all(len(w) <= 600 for w in windows) and len(windows) >= 4
    assert " ".join(" ".join(windows).split()) == " ".join(text.split())


def test_tool_pagination_history_and_errors(server, fetcher):
    tool = BrowseTool(fetcher, page_chars=2_000)
    assert tool("next").error and "no page is open" in tool("next").text
    r = tool(server + "/long.html")
    n = r.metadata["windows"]
    assert n >= 5 and "Window 1 of" in r.text and "Paragraph 0:" in r.text and "<browse>next</browse>" in r.text
    r2 = tool("next")
    assert "Window 2 of" in r2.text and r2.text != r.text
    assert "Window 1 of" in tool("prev").text
    assert tool(f"page {n + 1}").error
    assert "Paragraph 59" in tool(f"page {n}").text
    bad = tool(server + "/missing")
    assert bad.error and "HTTP 404" in bad.text and tool.state.url == server + "/long.html"  # state kept
    tool(server + "/article.html")
    back = tool("back")
    assert "Long read" in back.text and tool.state.history == [server + "/long.html"]
    assert tool("back").error
    assert tool("   ").error


class FakeCompleter:
    def __init__(self):
        self.prompts = []

    def complete(self, messages, max_new_tokens=512):
        self.prompts.append(messages[-1]["content"])
        return "The quokka lives on Rottnest Island."


def test_summariser_condenses_relative_to_goal(server):
    completer = FakeCompleter()
    env = BrowseEnv(source="live", allow_private=True, summariser=completer, fetch={"timeout_s": 2})
    env.reset(options={"question": "Where do quokkas live?", "answer": "Rottnest Island"})
    obs, *_ = env.step(f"<browse>{server}/article.html | where do quokkas live</browse>")
    assert "Summary for the goal 'where do quokkas live'" in obs and "lives on Rottnest Island" in obs
    assert "Goal: where do quokkas live" in completer.prompts[0] and "Setonix" in completer.prompts[0]
    obs, *_ = env.step(f"<browse>{server}/article.html</browse>")  # no goal: the raw page
    assert "Window 1 of 1" in obs and len(completer.prompts) == 1


# ----- store and env -----------------------------------------------------------------------------
def test_record_then_replay_from_the_store(server, tmp_path):
    store = str(tmp_path / "pages.sqlite")
    live = BrowseEnv(source="live", allow_private=True, store_path=store, fetch={"timeout_s": 2})
    assert live.fork_kind.value == "external" and not live.deterministic
    live.reset(options={"question": "q", "answer": "a"})
    recorded = [live.step(f"<browse>{server}{p}</browse>")[0] for p in ("/article.html", "/redirect")]
    assert len(PageStore(store)) == 2
    replay = BrowseEnv(source="store", store_path=store)
    assert replay.deterministic and replay.fork_kind.value == "state"
    replay.reset(options={"question": "q", "answer": "a"})
    assert [replay.step(f"<browse>{server}{p}</browse>")[0] for p in ("/article.html", "/redirect")] == recorded
    obs, _, _, _, info = replay.step(f"<browse>{server}/plain.txt</browse>")
    assert info["tool_error"] and "not in the offline page store" in obs
    with pytest.raises(ValueError):
        StoreFetcher(PageStore(store), None, "read-write")


def test_import_dir(tmp_path):
    site = tmp_path / "site"
    (site / "docs").mkdir(parents=True)
    (site / "index.html").write_text(ARTICLE)
    (site / "docs" / "notes.txt").write_text("plain notes")
    store = PageStore(tmp_path / "p.sqlite")
    assert store.import_dir(site, "https://example.org") == 2
    fetch = StoreFetcher(store)
    assert fetch.fetch("https://EXAMPLE.org/").title == "The Quokka"
    assert fetch.fetch("https://example.org/docs/notes.txt#frag").text == "plain notes"


def test_browse_env_corpus_default_checks():
    env = arpo_env.make("arpo/Browse-v0")
    strict_check_env(env)
    report = check_fork(env)
    assert report.fork_kind == "state" and report.deterministic
    prompt, _ = env.reset(seed=1)
    assert "https://en.wikipedia.org/wiki/" in prompt
    acts = env.example_actions()
    env.step(acts[0])
    child = env.fork()
    assert child.fetcher is env.fetcher and child.browse_tool.state is not env.browse_tool.state
    child.step(acts[1])
    assert len(env.browse_tool.state.history) == 1 and len(child.browse_tool.state.history) == 2
    obs, *_ = env.step("<browse>https://en.wikipedia.org/wiki/No_Such_Article_xyz</browse>")
    assert "not in the offline corpus" in obs
    env.close()


def test_live_env_fork_is_independent(server):
    env = BrowseEnv(source="live", allow_private=True, fetch={"timeout_s": 2}, page_chars=2_000)
    acts = [f"<browse>{server}/long.html</browse>", "<browse>next</browse>", "<browse>next</browse>",
            "<answer>\\boxed{x}</answer>"]
    report = check_fork(env, acts, options={"question": "q", "answer": "x"})
    assert report.fork_kind == "external" and not report.deterministic
    env.reset(options={"question": "q", "answer": "x"})
    env.step(acts[0])
    child = env.fork()
    assert child.browse_tool is not env.browse_tool and child.browse_tool.fetcher is env.browse_tool.fetcher
    assert "Window 2 of" in child.step(acts[1])[0] and env.browse_tool.state.window == 0


from hypothesis import given, settings, strategies as st  # noqa: E402


@settings(max_examples=150, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=3000), st.integers(200, 900))
def test_split_windows_properties(text, size):
    windows = split_windows(text, size)
    assert windows and all(len(w) <= size for w in windows)
    assert "".join("".join(windows).split()) == "".join(text.split())  # nothing lost but whitespace
