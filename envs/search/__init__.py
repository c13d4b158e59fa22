"""Search: the ``search`` tool, its backends (offline BM25, dense and hybrid; a Search-R1 retrieval-server
client; live DuckDuckGo), the retrieval server, the persistent cache, and ``arpo/Search-v0``. Heavy imports
(bm25s, sentence-transformers, ddgs, httpx) happen only when a backend is built."""
from arpo_env.envs.search.base import Hit, SearchBackend, SearchError, format_hits, normalize_query, parse_pages
from arpo_env.envs.search.cache import CachedBackend, CacheMode, SearchCache, import_arpo_cache
from arpo_env.envs.search.tool import SearchConfig, SearchTool, build_backend

__all__ = ["CacheMode", "CachedBackend", "Hit", "SearchBackend", "SearchCache", "SearchConfig", "SearchError",
           "SearchTool", "build_backend", "format_hits", "import_arpo_cache", "normalize_query", "parse_pages"]
