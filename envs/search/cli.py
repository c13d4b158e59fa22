"""``arpo index …``, ``arpo search`` and ``arpo serve-retriever``: build BM25 indexes, inspect them, import
ARPO's recorded cache, try a query from the shell, serve an index over HTTP (Search-R1's protocol). Heavy imports (bm25s) happen inside the commands."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

index_app = typer.Typer(help="Build and inspect offline search indexes (BM25 over a JSON-lines corpus).",
                        no_args_is_help=True)


@index_app.command("build")
def build_command(corpus: Optional[Path] = typer.Option(None, "--corpus", "-c", exists=True, dir_okay=False,
                                                        help='JSON lines of {"id", "title", "text"} (.jsonl or '
                                                             '.jsonl.gz); default: the bundled corpus.'),
                  out: Optional[Path] = typer.Option(None, "--out", "-o", file_okay=False,
                                                     help="Index folder (default: the cache dir, keyed by "
                                                          "corpus hash, where search finds it)."),
                  force: bool = typer.Option(False, "--force", help="Rebuild even if a cached index exists.")) -> None:
    """Build (or load) the BM25 index of a corpus and print where it is, as JSON."""
    import shutil

    from arpo_env.envs.search.bm25 import BM25Backend
    from arpo_env.envs.search.corpus import BUNDLED_CORPUS
    path = corpus or BUNDLED_CORPUS
    try:
        if force:
            probe = BM25Backend(path, use_disk_cache=False)
            if out is None:
                shutil.rmtree(probe.index_dir, ignore_errors=True)
        backend = BM25Backend(path, index_dir=out)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    print(json.dumps({"corpus": str(path), "passages": len(backend.passages), "corpus_hash": backend.corpus_hash,
                      "index_dir": str(backend.index_dir), "loaded_from_cache": backend.loaded_from_disk,
                      "build_s": round(backend.build_seconds, 3)}, indent=2))


@index_app.command("import-arpo-cache")
def import_command(source: Path = typer.Argument(..., exists=True, dir_okay=False,
                                                 help="ARPO's search_cache.json ({query: 'Page 1: …'})."),
                   cache: Optional[Path] = typer.Option(None, help="SQLite cache (default: the cache dir's)."),
                   backend_name: str = typer.Option("arpo-bing", help="Records are stored under this backend name.")) -> None:
    """Load ARPO's recorded search results so replay runs (backend='replay') can answer them offline."""
    from arpo_env.envs.search.bm25 import cache_dir
    from arpo_env.envs.search.cache import SearchCache, import_arpo_cache
    target = SearchCache(cache or cache_dir() / "search_cache.sqlite")
    n = import_arpo_cache(source, target, backend_name=backend_name)
    print(json.dumps({"imported": n, "cache": str(target.path), "backend_name": backend_name}))


def _dense_options(encoder: str) -> dict[str, str]:
    from arpo_env.envs.search.dense import resolve_encoder
    resolve_encoder(encoder)  # an unknown name is a ValueError naming the choices
    return {} if encoder == "auto" else {"encoder": encoder}


def search_command(query: str = typer.Argument(..., help="The query."),
                   k: int = typer.Option(5, "-k", help="Number of results."),
                   backend: str = typer.Option("auto", help="auto (hybrid when the dense extra is installed, "
                                               "else bm25), bm25, dense, hybrid, remote, ddgs or replay."),
                   corpus: Optional[Path] = typer.Option(None, help="Corpus for bm25, dense and hybrid."),
                   remote_url: Optional[str] = typer.Option(None, "--remote-url",
                                                            help="A Search-R1 retrieval server (backend remote)."),
                   dense_encoder: str = typer.Option("auto", "--dense-encoder",
                                                     help="dense/hybrid encoder: auto, onnx-int8, onnx, torch."),
                   as_json: bool = typer.Option(False, "--json", help="Print hits as JSON.")) -> None:
    """Run one search and print the results as the agent sees them."""
    from arpo_env.envs.search.base import SearchError, format_hits
    from arpo_env.envs.search.tool import SearchConfig, build_backend
    try:
        b = build_backend(SearchConfig(backend=backend, corpus=str(corpus) if corpus else None, top_k=k,
                                       remote_url=remote_url, dense=_dense_options(dense_encoder)))
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    try:
        hits = b.search(query, k)
    except SearchError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    print(json.dumps([h.to_dict() for h in hits], indent=2, ensure_ascii=False) if as_json
          else format_hits(hits, show_urls=True))


def serve_command(backend: str = typer.Option("auto", help="auto, bm25, dense, hybrid (or remote: a proxy)."),
                  corpus: Optional[Path] = typer.Option(None, help="Corpus (default: the bundled one)."),
                  host: str = typer.Option("127.0.0.1", help="Address to listen on (no authentication: keep it "
                                                             "on a trusted network)."),
                  port: int = typer.Option(8000, help="Port (0: any free one)."),
                  topk: int = typer.Option(3, help="topk when a request gives none (Search-R1's default)."),
                  max_batch: int = typer.Option(64, help="Most queries answered in one backend batch."),
                  max_wait_ms: float = typer.Option(5.0, help="How long a batch waits for more requests."),
                  remote_url: Optional[str] = typer.Option(None, "--remote-url", help="Upstream for backend remote."),
                  dense_encoder: str = typer.Option("auto", "--dense-encoder",
                                                    help="dense/hybrid encoder: auto, onnx-int8, onnx, torch.")) -> None:
    """Serve a search backend over HTTP with Search-R1's retrieval protocol (POST /retrieve)."""
    from arpo_env.envs.search.server import RetrievalServer
    from arpo_env.envs.search.tool import SearchConfig, offline_backend
    try:
        cfg = SearchConfig(backend=backend, corpus=str(corpus) if corpus else None, remote_url=remote_url,
                           dense=_dense_options(dense_encoder))
        if cfg.backend in ("ddgs", "replay"):
            raise ValueError("serve-retriever serves bm25, dense, hybrid or remote")
        b = offline_backend(cfg)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    assert b is not None
    server = RetrievalServer(b, host, port, default_topk=topk, max_batch=max_batch, max_wait_ms=max_wait_ms)
    print(json.dumps({"url": server.url, "endpoint": server.url + "/retrieve", "backend": b.name,
                      "passages": len(getattr(b, "passages", []))}), flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()


def register(app: typer.Typer) -> None:
    """Add ``arpo index``, ``arpo search`` and ``arpo serve-retriever`` to the ``arpo`` command line."""
    app.add_typer(index_app, name="index")
    app.command("search")(search_command)
    app.command("serve-retriever")(serve_command)
