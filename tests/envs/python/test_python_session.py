"""The python tool's session semantics on every tier: persistence, notebook printing, errors,
truncation, timeouts with restart, and forks that share nothing."""
from __future__ import annotations

import pytest

from arpo_env.envs.python import make_python_tool
from arpo_env.envs.python.tool import _strip_fence
from tests.helpers.waiting import wait_until


def test_state_persists_and_trailing_expression_prints(make_tool):
    tool = make_tool()
    assert tool("import math\ndef sq(v):\n    return v * v\nx = 12").text == "(no output)"
    assert tool("sq(x) + math.isqrt(16)").text == "148"
    assert tool("y = None\ny").text == "(no output)"  # None is not echoed, like a notebook
    assert tool("print('a'); 'b'").text == "a\n'b'"
    assert tool("import os, sys\nos.write(1, b'raw fd\\n'); sys.stderr.write('err\\n')").text.startswith("raw fd\nerr")


def test_traceback_names_the_cell_and_session_survives(make_tool):
    tool = make_tool()
    res = tool("x = 1\ndef f():\n    return 1 / 0\nf()")
    assert res.error and res.metadata["exception"] == "ZeroDivisionError"
    assert 'File "<cell 1>", line 3, in f' in res.text and "ZeroDivisionError: division by zero" in res.text
    assert "worker" not in res.text  # no frames of the sandbox's own code
    assert tool("x").text == "1"
    syn = tool("def (")
    assert syn.error and "SyntaxError" in syn.text
    assert tool("raise SystemExit(3)").metadata["exception"] == "SystemExit"
    assert tool("x + 1").text == "2"


def test_output_is_truncated_with_marker(make_tool):
    tool = make_tool(max_output_chars=500)
    res = tool("print('x' * 100_000)")
    assert len(res.text) < 700 and "[output truncated:" in res.text
    assert res.text.startswith("x" * 500)


def test_timeout_restarts_session_with_note(make_tool):
    tool = make_tool(timeout=1.5)
    tool("keep = 5")
    res = tool("import time\ntime.sleep(30)")  # 20x the deadline: a Timeout result means the deadline ended it
    assert res.error and res.metadata["exception"] == "Timeout"
    assert res.error and res.metadata["restarted"] and "time limit of 1.5 s" in res.text and "lost" in res.text
    after = tool("'keep' in globals()")
    assert after.text == "False" and not after.error


def test_session_killed_between_calls_is_restarted_and_says_so(make_tool):
    tool = make_tool()
    tool("keep = 5")
    session = tool.session
    session.tree.kill_group(session.host_pid, session.ns_pid)  # e.g. the OOM killer, from outside
    wait_until(session.died_between_calls)
    res = tool("print(6 * 7)")
    assert not res.error and res.text.endswith("\n42") and "had died since the last call" in res.text
    assert res.metadata["restarted"] and res.metadata["died_before_call"]
    assert "NameError" in tool("keep").text  # the state really is gone, as the note said
    assert tool("print(1)").text == "1"  # and the note is not repeated


def test_fork_is_independent_in_memory_and_files(make_tool):
    parent = make_tool()
    parent("data = [1, 2]\nopen('f.txt', 'w').write('p')")
    child = parent.fork()
    try:
        assert child("data.append(3)\nopen('f.txt', 'a').write('c')\ndata, open('f.txt').read()").text \
            == "([1, 2, 3], 'pc')"
        assert parent("data, open('f.txt').read()").text == "([1, 2], 'p')"
        grandchild = child.fork()
        try:
            assert grandchild("data.pop()\ndata").text == "[1, 2]"
            assert child("data").text == "[1, 2, 3]"
        finally:
            grandchild.close()
        child.close()  # closing a fork leaves the parent alive
        assert parent("len(data)").text == "2"
    finally:
        child.close()


def test_fork_survives_parent_close(make_tool):
    parent = make_tool()
    parent("z = 7")
    child = parent.fork()
    parent.close()
    try:
        assert child("z * 6").text == "42"
    finally:
        child.close()


def test_make_python_tool_contract():
    tool = make_python_tool(sandbox="subprocess", timeout=5)
    try:
        from arpo_env.tools import ForkableTool, Tool
        assert isinstance(tool, Tool) and isinstance(tool, ForkableTool)
        assert tool.name == "python" and tool.tier == "subprocess" and "persistent" in tool.description
        assert tool("print(6 * 7)").text == "42"
    finally:
        tool.close()
    with pytest.raises(ValueError):
        make_python_tool(sandbox="vm")


def test_strip_fence():
    assert _strip_fence("```python\nprint(1)\n```") == "print(1)"
    assert _strip_fence("\nprint(1)\n") == "print(1)"


def test_interpreter_in_a_venv_under_tmp_runs(tier, tmp_path_factory):
    """Every tier covers /tmp with its own tmpfs: an interpreter living there (a venv in /tmp, as the
    README's fresh-machine check made) must be re-bound, or the worker never starts (it did not, on bwrap)."""
    if tier == "docker":
        pytest.skip("the docker tier runs the image's interpreter")
    import os
    import shutil
    import tempfile
    import venv
    root = tempfile.mkdtemp(prefix="arpo-venv-", dir="/tmp")
    os.chmod(root, 0o755)  # as `python -m venv` leaves it (mkdtemp's 0700 would lock out the sandbox's uid)
    try:
        venv.create(root, symlinks=True, system_site_packages=True, with_pip=False)
        tool = make_python_tool(sandbox=tier, python=f"{root}/bin/python")
        try:
            assert tool("import sys\nprint(sys.prefix, 6 * 7)").text == f"{root} 42"
        finally:
            tool.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)
