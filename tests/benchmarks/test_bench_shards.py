"""Sharded ``arpo eval --shard i/n`` then ``arpo leaderboard``: the shards partition the work list, the
merged row holds every (benchmark, sample, attempt) exactly once and equals the unsharded run; an
overlapping, missing or incomplete shard set is reported; resume works per shard."""
import json
from collections import Counter
from pathlib import Path

import pytest

from arpo_env.benchmarks.leaderboard import build_table
from arpo_env.benchmarks.oracle import OracleAgent
from arpo_env.benchmarks.results import read_rows
from arpo_env.benchmarks.runner import EvalConfig, SettingsChanged, run_eval
from arpo_env.benchmarks.shards import ShardSetError, ShardSpec
from arpo_env.cli import main
from arpo_env.errors import UserError

ARGS = ["eval", "--backend", "oracle", "--benchmarks", "gsm8k,hotpotqa_offline", "--limit", "3", "--attempts", "2",
        "--env", "arpo/Calculator-v0", "--concurrency", "2", "--no-progress"]


def keys(folder):
    return Counter((r["benchmark"], r["sample_id"], r["attempt"]) for r in read_rows(Path(folder) / "results.jsonl"))


def cfg(out, **kw):
    return EvalConfig(**{**dict(out=str(out), benchmarks=["gsm8k", "hotpotqa_offline"], limit=3, attempts=2,
                                env="arpo/Calculator-v0", concurrency=2, progress=False), **kw})


def run(argv):
    try:
        main(argv)
    except SystemExit as exc:
        assert exc.code in (0, None), exc


def test_two_shards_merge_into_every_item_exactly_once(tmp_path, capsys):
    for i in (0, 1):
        run([*ARGS, "--shard", f"{i}/2", "--out", str(tmp_path / "run" / f"shard{i}")])
    run([*ARGS, "--out", str(tmp_path / "whole")])
    a, b, whole = keys(tmp_path / "run/shard0"), keys(tmp_path / "run/shard1"), keys(tmp_path / "whole")
    assert len(whole) == 12 and not set(a) & set(b) and a + b == whole and set(a.values()) == {1}
    meta = json.loads((tmp_path / "run/shard1/metadata.json").read_text())
    assert meta["shard"]["index"] == 1 and meta["shard"]["count"] == 2 and meta["shard"]["work_items"] == 12
    assert meta["shard"]["fingerprint"] == json.loads((tmp_path / "run/shard0/metadata.json").read_text())["shard"]["fingerprint"]
    merged, plain = build_table([tmp_path / "run"]), build_table([tmp_path / "whole"])  # parent folder: its shards
    assert len(merged.rows) == 1 and merged.rows[0].cells.keys() == plain.rows[0].cells.keys()
    assert {k: (c.mean, c.n) for k, c in merged.rows[0].cells.items()} == \
        {k: (c.mean, c.n) for k, c in plain.rows[0].cells.items()}
    capsys.readouterr()
    run(["leaderboard", str(tmp_path / "run/shard0"), str(tmp_path / "run/shard1")])
    assert "oracle" in capsys.readouterr().out


def test_missing_incomplete_and_overlapping_shards_are_reported(tmp_path):
    run_eval(cfg(tmp_path / "s0", shard="0/2"), OracleAgent())
    with pytest.raises(ShardSetError, match=r"shard 1/2 of the run .* is missing"):
        build_table([tmp_path / "s0"])
    table = build_table([tmp_path / "s0"], allow_incomplete=True)
    assert table.problems and "1/2" in table.problems[0]
    run_eval(cfg(tmp_path / "s1", shard="1/2"), OracleAgent())
    lines = (tmp_path / "s1/results.jsonl").read_text().splitlines()
    (tmp_path / "s1/results.jsonl").write_text("\n".join(lines[:-2]) + "\n")  # two items lost
    with pytest.raises(ShardSetError, match=r"shard 1/2 \(.*s1\) is incomplete: 2 of 6 items missing"):
        build_table([tmp_path / "s0", tmp_path / "s1"])
    # resume fills exactly the missing items of that shard
    assert run_eval(cfg(tmp_path / "s1", shard="1/2"), OracleAgent())["done"] == 2
    assert len(build_table([tmp_path / "s0", tmp_path / "s1"]).rows) == 1
    # the same shard twice (a copy in another folder) is refused
    import shutil
    shutil.copytree(tmp_path / "s1", tmp_path / "copy")
    with pytest.raises(ShardSetError, match="appears twice"):
        build_table([tmp_path / "s0", tmp_path / "s1", tmp_path / "copy"])
    # an item present in two shards (overlap) is refused, naming both folders
    row = read_rows(tmp_path / "s1/results.jsonl")[0]
    with open(tmp_path / "s0/results.jsonl", "a") as f:
        f.write(json.dumps(row) + "\n")
    with pytest.raises(ShardSetError, match="in two shard folders"):
        build_table([tmp_path / "s0", tmp_path / "s1"])


def test_a_shard_folder_resumed_with_another_shard_spec_is_refused(tmp_path):
    run_eval(cfg(tmp_path / "s", shard="0/2"), OracleAgent())
    with pytest.raises(SettingsChanged, match="shard: 0/2 -> 1/2"):
        run_eval(cfg(tmp_path / "s", shard="1/2"), OracleAgent())
    for bad in ("2/2", "1", "a/b", "-1/2"):
        with pytest.raises(UserError, match="i/n"):
            ShardSpec.parse(bad)
