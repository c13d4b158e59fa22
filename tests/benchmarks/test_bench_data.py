"""The benchmark registry and loaders: shipped sets, user-path sets, xbench decryption, bad data."""
import gzip
import json
from pathlib import Path

import pytest

from arpo_env.benchmarks import (DatasetFormatError, DatasetMissingError, get_benchmark, list_benchmarks, register_jsonl,
                        xbench_decrypt)
from arpo_env.benchmarks.catalog import ARPO_BENCHMARKS

from tests.helpers.shared_data import require_shared_data, shared_data_dir

SHARED = shared_data_dir()  # <repo>/../shared/data or $ARPO_SHARED_DIR/data
SHARED_B = SHARED / "benchmarks"


@pytest.fixture
def needs_shared():
    """The shared benchmarks folder: skipped locally when absent, a failure under CI."""
    return require_shared_data("benchmarks")


SHIPPED_ROWS = {"aime24": 30, "aime25": 30, "math500": 500, "gsm8k": 1319, "math": 5000, "hotpotqa": 200,
                "2wiki": 200, "musique": 200, "bamboogle": 125, "webwalker": 200, "xbench": 100, "simpleqa": 500,
                "hotpotqa_offline": 100}


@pytest.fixture(autouse=True)
def _no_user_data_dir(monkeypatch):
    monkeypatch.delenv("ARPO_DATA_DIR", raising=False)


def test_registry_has_the_13_arpo_sets_simpleqa_and_the_offline_set():
    names = [b.name for b in list_benchmarks()]
    assert set(ARPO_BENCHMARKS) | {"simpleqa", "hotpotqa_offline"} <= set(names)
    assert len(ARPO_BENCHMARKS) == 13
    cats = {b.name: (b.category, b.env_id, b.env_kwargs.get("max_tool_calls")) for b in list_benchmarks()}
    assert cats["gsm8k"] == ("math", "arpo/Python-v0", 3)
    assert cats["hotpotqa"] == ("qa", "arpo/MultiTool-v0", 3)
    assert cats["gaia"] == ("deepsearch", "arpo/MultiTool-v0", 6)
    assert get_benchmark("hotpotqa").metric == "f1" and get_benchmark("math500").metric == "math_equiv"
    assert get_benchmark("GSM8K").name == "gsm8k"
    with pytest.raises(KeyError, match="Did you mean"):
        get_benchmark("gsm8")


@pytest.mark.parametrize("name,rows", sorted(SHIPPED_ROWS.items()))
def test_shipped_sets_load_offline_with_the_right_sizes(name, rows):
    bench = get_benchmark(name)
    assert bench.shipped and bench.path().parent.name == "data"
    samples = bench.load()
    assert len(samples) == rows
    assert len({s.id for s in samples}) == rows
    assert all(s.question.strip() and s.answer and all(isinstance(a, str) for a in s.answer) for s in samples)


def test_field_quirks():
    gsm = get_benchmark("gsm8k").load(limit=3)
    assert [s.answer for s in gsm] == [["18"], ["3"], ["70000"]]   # the number after '####', commas dropped
    assert get_benchmark("aime25").load(limit=1)[0].answer == ["70"]  # int answers become strings
    assert get_benchmark("hotpotqa").load(limit=1)[0].answer == ["Frank Lowy"]
    assert len(get_benchmark("2wiki").load(limit=1)[0].answer) > 3  # alias lists kept
    m = get_benchmark("math").load(limit=1)[0]
    assert m.id == "test/algebra/1.json" and m.metadata["level"] == "Level 3"
    assert get_benchmark("math500").load(limit=5, data_dir=None)[4].id == "4"
    off = get_benchmark("hotpotqa_offline").load()
    assert off[0].question == "If Gallu is a demon Lilu is what?" and off[0].answer == ["a spirit"]
    assert off[0].metadata["supporting_titles"]


@pytest.mark.usefixtures("needs_shared")
def test_shipped_copies_equal_the_shared_data():
    for name in ("gsm8k", "math", "hotpotqa", "simpleqa", "aime24"):
        a = get_benchmark(name).load()
        b = get_benchmark(name).load(data_dir=SHARED)   # a user data dir overrides the shipped copy
        assert get_benchmark(name).path(SHARED).is_relative_to(SHARED)
        assert [(s.id, s.question, s.answer) for s in a] == [(s.id, s.question, s.answer) for s in b]


@pytest.mark.usefixtures("needs_shared")
def test_xbench_decrypts_to_the_plaintext():
    plain = [json.loads(line) for line in (SHARED_B / "xbench/test.jsonl").open(encoding="utf-8")]
    samples = get_benchmark("xbench").load()
    assert len(samples) == len(plain) == 100
    exact = sum(s.question == p["question"] for s, p in zip(samples, plain))
    assert exact >= 98   # two plaintext rows have their newlines replaced by spaces
    assert all(" ".join(s.question.split()) == " ".join(p["question"].split()) for s, p in zip(samples, plain))
    assert all(s.answer == p["answer"] for s, p in zip(samples, plain))


def test_xbench_decrypt_round_trip():
    import base64
    key = "canary GUID x"
    cipher = base64.b64encode(bytes(b ^ key.encode()[i % len(key)] for i, b in enumerate("你好, world".encode())))
    assert xbench_decrypt(cipher.decode(), key) == "你好, world"


def test_no_plaintext_of_restricted_sets_is_shipped():
    data = Path(get_benchmark("gsm8k").path()).parent
    names = {p.name for p in data.iterdir()}
    assert not any(n.startswith(("gaia", "hle")) for n in names)
    assert not any("xbench" in n and not n.endswith(".csv") for n in names)
    xb = (data / "xbench_deepsearch_2505.csv").read_text(encoding="utf-8")
    assert "截至2024年12月31日" not in xb


@pytest.mark.usefixtures("needs_shared")
@pytest.mark.parametrize("name,rows", [("gaia", 103), ("hle", 500)])
def test_gated_sets_load_from_a_user_path(name, rows, monkeypatch):
    with pytest.raises(DatasetMissingError) as err:
        get_benchmark(name).load()
    assert "--data-dir" in str(err.value) and "ARPO_DATA_DIR" in str(err.value) and f"{name}/" in str(err.value)
    assert len(get_benchmark(name).load(data_dir=SHARED)) == rows
    monkeypatch.setenv("ARPO_DATA_DIR", str(SHARED_B))
    assert len(get_benchmark(name).load()) == rows


def test_malformed_line_names_file_and_line(tmp_path):
    f = tmp_path / "bad.jsonl"
    f.write_text('{"question": "q1", "answer": "a"}\n\n{"question": "q2", "answer": \n')
    bench = register_jsonl("bad_test", f, replace=True)
    with pytest.raises(DatasetFormatError) as err:
        bench.load()
    assert err.value.line == 3 and str(f) in str(err.value) and "line 3" in str(err.value)
    f.write_text('{"question": "q1", "answer": "a"}\n{"q": "q2", "answer": "b"}\n')
    with pytest.raises(DatasetFormatError, match=r"line 2: .*no question field"):
        bench.load()
    f.write_text('{"question": "q1", "answer": "a"}\n[1, 2]\n')
    with pytest.raises(DatasetFormatError, match="line 2: expected a JSON object"):
        bench.load()


def test_malformed_gzip_line(tmp_path):
    f = tmp_path / "g.jsonl.gz"
    with gzip.open(f, "wt") as g:
        g.write('{"question": "q", "answer": ["a"]}\nnot json\n')
    with pytest.raises(DatasetFormatError, match="g.jsonl.gz, line 2"):
        register_jsonl("gz_test", f, replace=True).load()


def test_user_benchmark_by_path_or_registration(tmp_path):
    f = tmp_path / "mine.jsonl"
    f.write_text("".join(json.dumps({"q": f"q{i}", "gold": [str(i)], "key": f"k{i}"}) + "\n" for i in range(4)))
    bench = register_jsonl("mine_test", f, metric="em", question_keys=("q",), answer_keys=("gold",),
                           id_keys=("key",), replace=True)
    samples = bench.load(limit=2)
    assert [(s.id, s.question, s.answer) for s in samples] == [("k0", "q0", ["0"]), ("k1", "q1", ["1"])]
    g = tmp_path / "plain.jsonl"
    g.write_text('{"question": "q", "answer": "a"}\n')
    assert get_benchmark(str(g)).load()[0].answer == ["a"]


def test_missing_file_says_where_to_put_it(tmp_path):
    bench = register_jsonl("gone_test", tmp_path / "nope.jsonl", replace=True)
    with pytest.raises(DatasetMissingError, match="Put it there"):
        bench.load()
