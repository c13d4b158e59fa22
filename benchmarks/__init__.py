"""Benchmarks: the registry of ARPO's evaluation sets (plus SimpleQA and an offline multi-hop set), their
shipped data, metrics, the resumable evaluation runner, leaderboards and plots.

Commands: ``arpo eval``, ``arpo leaderboard``, ``arpo demo`` (see :mod:`arpo_env.benchmarks.cli`).
"""
from arpo_env.benchmarks.benchmark import Benchmark, qa_parser
from arpo_env.benchmarks.data import DatasetError, DatasetFormatError, DatasetMissingError, xbench_decrypt
from arpo_env.benchmarks.registry import get_benchmark, list_benchmarks, register_benchmark, register_jsonl

__all__ = ["Benchmark", "DatasetError", "DatasetFormatError", "DatasetMissingError", "get_benchmark",
           "list_benchmarks", "qa_parser", "register_benchmark", "register_jsonl", "xbench_decrypt"]
