"""Browse: the ``browse`` tool, live fetching (httpx + trafilatura) with SSRF guards, the offline page
store, the optional goal-directed summariser, and ``arpo/Browse-v0``."""
from arpo_env.envs.browse.fetch import FetchConfig, HttpFetcher, check_url
from arpo_env.envs.browse.page import Fetcher, FetchError, Page
from arpo_env.envs.browse.store import CorpusPages, PageStore, StoreFetcher, normalize_url
from arpo_env.envs.browse.tool import BrowseState, BrowseTool, PageSummariser, split_windows

__all__ = ["BrowseState", "BrowseTool", "CorpusPages", "FetchConfig", "FetchError", "Fetcher", "HttpFetcher",
           "Page", "PageStore", "PageSummariser", "StoreFetcher", "check_url", "normalize_url", "split_windows"]
