"""The standalone HTML leaderboard: rows named by their agent, provenance, plots embedded; rendered by a
real headless Chromium (screenshot not blank, ``±`` intact)."""
import json
import re
import shutil

import pytest

from arpo_env.agents.scripted import ScriptedAgent
from arpo_env.benchmarks.html_report import html_page
from arpo_env.benchmarks.leaderboard import agent_label, build_table, render
from arpo_env.benchmarks.oracle import OracleAgent
from arpo_env.benchmarks.runner import EvalConfig, run_eval
from tests.helpers.browser import dump_dom, require_chromium, screenshot


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    base = tmp_path_factory.mktemp("html")
    common = dict(limit=3, env="arpo/Calculator-v0", progress=False, concurrency=3)
    run_eval(EvalConfig(out=str(base / "oracle"), benchmarks=["gsm8k"], method="base", backend="oracle", **common),
             OracleAgent(accuracy=1.0, tool_calls=1))
    run_eval(EvalConfig(out=str(base / "scripted"), benchmarks=["gsm8k"], method="base", **common),
             ScriptedAgent(["\\boxed{0}"]))
    # a training checkpoint's evaluation: the same rows, metadata naming the run and step
    shutil.copytree(base / "oracle", base / "ckpt")
    meta = json.loads((base / "ckpt/metadata.json").read_text())
    meta.update(backend="hf", agent={"class": "arpo_env.agents.rollout.Agent"}, model=str(base / "runs/r1/checkpoints/step_4"),
                checkpoint={"run": str(base / "runs/r1"), "step": 4})
    (base / "ckpt/metadata.json").write_text(json.dumps(meta))
    return base


def test_rows_name_their_agent():
    assert agent_label({"model": "default", "backend": "oracle", "agent": {"agent": "oracle"}}) == "oracle"
    assert agent_label({"model": "default", "backend": "hf", "agent": {"agent": "oracle"}}) == "oracle"
    assert agent_label({"model": "default", "backend": "hf",
                        "agent": {"class": "arpo_env.agents.scripted.ScriptedAgent"}}) == "scripted"
    assert agent_label({"model": "x/step_9", "checkpoint": {"run": "runs/grpo-a/", "step": 9}}) == "grpo-a @ step 9"
    assert agent_label({"model": "Qwen/Qwen2.5-7B-Instruct", "backend": "vllm", "agent": {}}) == "Qwen/Qwen2.5-7B-Instruct"
    assert agent_label({}) == "default"  # a real model run without a name keeps the runner's label


def test_html_is_a_standalone_page_with_provenance_and_plots(folders):
    table = build_table([folders / "oracle", folders / "scripted", folders / "ckpt"])
    page = html_page(table)
    assert page.startswith("<!DOCTYPE html>") and '<meta charset="utf-8">' in page
    assert "<title>ARPO leaderboard</title>" in page and "<style>" in page and page.rstrip().endswith("</html>")
    assert re.search(r"Generated \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", page)
    models = re.findall(r'<tr><td>([^<]*)</td><td>base</td><td class="num">', page)
    assert models == ["oracle", "scripted", "r1 @ step 4"], models
    assert ">default<" not in page                                     # no model-free row posing as a model
    data_sha = json.loads((folders / "oracle/metadata.json").read_text())["benchmarks"]["gsm8k"]["data_sha256"]
    assert data_sha[:12] in page and str((folders / "scripted").resolve()) in page
    assert "<td>GSM8K</td><td><code>gsm8k</code></td><td>math_equiv</td>" in page   # each column's metric
    assert "math_equiv: math-verify equivalence" in page                            # the legend
    assert page.count('src="data:image/png;base64,iVBORw0KGgo') == 2                 # both plots, as PNG
    assert "100.0 ± 0.0" in page
    assert "<img" not in html_page(table, plots=False)
    with pytest.raises(ValueError, match="html_page"):
        render(table, "html")


def test_cli_writes_the_page(folders, tmp_path):
    import typer
    from typer.testing import CliRunner

    from arpo_env.benchmarks.cli import register

    app = typer.Typer()
    register(app)
    out = tmp_path / "lb.html"
    res = CliRunner().invoke(app, ["leaderboard", str(folders / "oracle"), "--format", "html", "--out", str(out)])
    assert res.exit_code == 0, res.output
    page = out.read_bytes().decode("utf-8")
    assert page.startswith("<!DOCTYPE html>") and "100.0 ± 0.0" in page and "data:image/png;base64," in page


@pytest.mark.slow
def test_chromium_renders_the_page(folders, tmp_path):
    import numpy as np
    from PIL import Image

    chromium = require_chromium()
    page = tmp_path / "leaderboard.html"
    page.write_text(html_page(build_table([folders / "oracle", folders / "scripted"], published=True)),
                    encoding="utf-8")
    png = screenshot(chromium, page, tmp_path / "leaderboard.png")
    print(f"screenshot: {png}")
    img = Image.open(png).convert("RGB")
    pixels = np.asarray(img).reshape(-1, 3)
    colours = len(np.unique(pixels, axis=0))
    non_white = float((pixels != 255).any(axis=1).mean())
    print(f"{img.size[0]}x{img.size[1]} px, {colours} distinct colours, {non_white:.1%} non-white")
    assert img.size == (1200, 1600) and colours > 200 and non_white > 0.05   # text, table shading, plots
    dom = dump_dom(chromium, page, tmp_path / "dom-profile")
    assert "100.0 ± 0.0" in dom and "Â±" not in dom and "<title>ARPO leaderboard</title>" in dom
    assert dom.count("data:image/png;base64,") == 2


def test_a_missing_browser_fails_under_ci(monkeypatch):
    import tests.helpers.browser as browser

    monkeypatch.setattr(browser.shutil, "which", lambda name: None)
    monkeypatch.setattr(browser, "IN_CI", True)
    with pytest.raises(pytest.fail.Exception, match="required under CI"):
        browser.require_chromium()
    monkeypatch.setattr(browser, "IN_CI", False)
    with pytest.raises(pytest.skip.Exception, match="apt-get install -y chromium"):
        browser.require_chromium()
