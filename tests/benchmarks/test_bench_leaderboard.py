"""Leaderboards and plots from result folders; the CLI commands."""
import csv
import io
import json

import pytest
from typer.testing import CliRunner

from arpo_env.benchmarks.html_report import html_page
from arpo_env.benchmarks.leaderboard import build_table, render
from arpo_env.benchmarks.oracle import OracleAgent
from arpo_env.benchmarks.runner import EvalConfig, run_eval


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    base = tmp_path_factory.mktemp("lb")
    common = dict(limit=4, attempts=2, env="arpo/Calculator-v0", progress=False, concurrency=4)
    run_eval(EvalConfig(out=str(base / "a"), benchmarks=["gsm8k", "bamboogle"], method="oracle", **common),
             OracleAgent(accuracy=1.0, tool_calls=2))
    run_eval(EvalConfig(out=str(base / "b"), benchmarks=["gsm8k"], method="coin", **common),
             OracleAgent(accuracy=0.5, tool_calls=0))
    run_eval(EvalConfig(out=str(base / "c"), benchmarks=["hotpotqa_offline"], method="coin", **common),
             OracleAgent(accuracy=0.5, tool_calls=0))
    return base


def test_table_cells_are_mean_and_standard_error_over_samples(folders):
    t = build_table([folders / "a", folders / "b", folders / "c"])
    rows = {r.method: r for r in t.rows}
    assert set(rows) == {"oracle", "coin"}                      # b and c merge into one (model, method) row
    assert rows["oracle"].cells["gsm8k"].mean == 100.0 and rows["oracle"].cells["gsm8k"].se == 0.0
    assert rows["oracle"].tool_calls == 2.0 and rows["coin"].tool_calls == 0.0
    coin = rows["coin"].cells["gsm8k"]
    per_sample = {}
    for line in (folders / "b/results.jsonl").read_text().splitlines():
        r = json.loads(line)
        per_sample.setdefault(r["sample_id"], []).append(r["score"])
    means = [sum(v) / len(v) for v in per_sample.values()]
    m = sum(means) / len(means)
    se = (sum((x - m) ** 2 for x in means) / (len(means) - 1) / len(means)) ** 0.5
    assert coin.mean == pytest.approx(100 * m) and coin.se == pytest.approx(100 * se) and coin.n == 4
    assert rows["coin"].average == pytest.approx((coin.mean + rows["coin"].cells["hotpotqa_offline"].mean) / 2)
    assert t.columns.index("gsm8k") < t.columns.index("bamboogle") < t.columns.index("hotpotqa_offline")


def test_formats_and_published_rows(folders):
    t = build_table([folders / "a"], published=True, pass_k=2)
    md = render(t, "md")
    assert "| oracle |" in md and "100.0 ± 0.0 (p@2 100.0)" in md and "ARPO (published)" in md
    assert "92.2 [arpo_judge]" in md and "58.3" in md and "GSM8K (metric per cell)" in md
    assert "100.0 ± 0.0 (p@2 100.0) [math_equiv]" in md and "Bamboogle (arpo_f1)" in md  # every column says its formula
    assert "- arpo_f1: ARPO's evaluation F1" in md and "- math_equiv:" in md
    rows = list(csv.DictReader(io.StringIO(render(t, "csv"))))
    ours = next(r for r in rows if r["method"] == "oracle")
    assert float(ours["gsm8k"]) == 100.0 and ours["gsm8k_n"] == "4" and float(ours["tool_calls"]) == 2.0
    pub = next(r for r in rows if r["method"] == "ARPO" and r["model"] == "Qwen3-14B")
    assert pub["published"] == "True" and float(pub["gaia"]) == 43.7 and pub["average"] == ""
    html = html_page(t)
    assert html.startswith("<!DOCTYPE html>") and "ARPO (published)" in html and "<table" in html
    with pytest.raises(ValueError):
        render(t, "xlsx")


def test_published_rows_are_compared_under_their_own_metric(folders, tmp_path):
    """Our QA rows are re-scored with ARPO's evaluation F1 next to ARPO's QA numbers; without published rows
    they keep the official F1. An answer ending in a full stop: official F1 1, ARPO's lower (the last token
    keeps the stop)."""
    import shutil
    shutil.copytree(folders / "a", tmp_path / "a")
    f = tmp_path / "a/results.jsonl"
    rows = [json.loads(x) for x in f.read_text().splitlines()]
    for r in rows:
        if r["benchmark"] == "bamboogle":
            r["prediction"] = str(r["prediction"]) + "."
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    plain = build_table([tmp_path / "a"]).rows[0].cells["bamboogle"]
    assert (plain.mean, plain.metric) == (100.0, "f1")
    vs_published = build_table([tmp_path / "a"], published=True).rows[0].cells["bamboogle"]
    from arpo_env.benchmarks.metrics import arpo_eval_f1
    by_sample: dict = {}
    for r in rows:
        if r["benchmark"] == "bamboogle":
            by_sample.setdefault(r["sample_id"], []).append(arpo_eval_f1(r["prediction"], r["gold"]))
    expected = 100 * sum(sum(v) / len(v) for v in by_sample.values()) / len(by_sample)
    assert vs_published.metric == "arpo_f1" and vs_published.mean == pytest.approx(expected) and expected < 100.0
    assert build_table([tmp_path / "a"], published=True).rows[0].cells["gsm8k"].metric == "math_equiv"
    csv_rows = list(csv.DictReader(io.StringIO(render(build_table([tmp_path / "a"], published=True), "csv"))))
    assert csv_rows[0]["bamboogle_metric"] == "arpo_f1" and csv_rows[1]["gsm8k_metric"] == "arpo_judge"


def test_a_benchmark_twice_in_one_row_is_an_error(folders):
    with pytest.raises(ValueError, match="two result folders"):
        build_table([folders / "b", folders / "b"])
    with pytest.raises(FileNotFoundError, match="not a result folder"):
        build_table([folders / "nope"])


def test_cli_leaderboard_writes_table_and_pngs(folders, tmp_path):
    from arpo_env.benchmarks.cli import main
    import typer
    app = typer.Typer()
    from arpo_env.benchmarks.cli import register
    register(app)
    out = tmp_path / "lb.md"
    res = CliRunner().invoke(app, ["leaderboard", str(folders / "a"), str(folders / "b"), "--published",
                                   "--out", str(out), "--plots", str(tmp_path / "plots")])
    assert res.exit_code == 0, res.output
    assert "| oracle |" in out.read_text()
    for name in ("scores.png", "score_vs_tool_calls.png"):
        data = (tmp_path / "plots" / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    res = CliRunner().invoke(app, ["benchmarks", "--json"])
    assert res.exit_code == 0 and len(json.loads(res.output)) >= 15
    assert main is not None


def test_cli_eval_refuses_changed_settings(tmp_path):
    import typer
    from arpo_env.benchmarks.cli import register
    app = typer.Typer()
    register(app)
    args = ["eval", "--backend", "oracle", "--out", str(tmp_path), "--benchmarks", "gsm8k", "--limit", "2",
            "--env", "arpo/Calculator-v0", "--no-progress"]
    res = CliRunner().invoke(app, args + ["--set", "max_tool_calls=2"])
    assert res.exit_code == 0, res.output
    assert "| GSM8K (math_equiv)" in res.output
    res = CliRunner().invoke(app, args + ["--temperature", "0.9", "--set", "max_tool_calls=2"])
    assert res.exit_code == 2 and "temperature" in res.output


def test_demo_pipeline_with_the_oracle_backend(tmp_path, capsys):
    from arpo_env.benchmarks.demo import run_demo
    table = run_demo(out=str(tmp_path / "demo"), limit=2, benchmarks=["gsm8k", "hotpotqa_offline"],
                     backend="oracle", progress=False)
    assert "| demo |" in table and "GSM8K" in table and "HotpotQA-offline" in table
    assert "100.0 ± 0.0" in table
    assert table in capsys.readouterr().out
