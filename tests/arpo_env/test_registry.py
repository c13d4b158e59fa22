"""Registration: user envs in their own file, entry-point plugins, did-you-mean errors, `arpo envs`."""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import gymnasium as gym
import pytest

import arpo_env
from arpo_env import registry

USER_ENV = textwrap.dedent('''
    from arpo_env import TextEnv, ForkKind, FunctionTool, register

    class Notes:
        """A stateful tool: appends a note, returns all notes so far."""
        name = "note"
        description = "stores a note and shows all notes"
        example = "hello"
        def __init__(self):
            self.notes = []
        def __call__(self, args):
            from arpo_env import ToolResult
            self.notes.append(args)
            return ToolResult(" | ".join(self.notes))

    class NotesEnv(TextEnv):
        """Keeps notes (plain-data state)."""
        fork_kind = ForkKind.STATE
        declared_tools = ("note",)
        def __init__(self, **kw):
            super().__init__([Notes()], **kw)
        def _on_reset(self, task):
            self.tools["note"].notes = []
        def example_actions(self):
            return ["<note>a</note>", "<note>b</note>", "<note>c</note>", "<answer>\\\\boxed{x}</answer>"]

    def register_all():
        register("ext/Notes-v0", entry_point="user_envs_mod:NotesEnv", description="notes from a plugin")
''')


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    (tmp_path / "user_envs_mod.py").write_text(USER_ENV)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    sys.modules.pop("user_envs_mod", None)
    registry._RECORDS.pop("ext/Notes-v0", None)
    gym.registry.pop("ext/Notes-v0", None)


def test_user_env_in_its_own_file_is_makeable_and_forks(user_module):
    arpo_env.register("ext/Notes-v0", entry_point="user_envs_mod:NotesEnv", max_tool_calls=7)
    env = arpo_env.make("ext/Notes-v0")
    assert env.config.max_tool_calls == 7
    assert "ext/Notes-v0" in [r.id for r in arpo_env.list_envs()]
    assert gym.make("ext/Notes-v0").unwrapped.config.max_tool_calls == 7
    arpo_env.check_fork(env)  # state kind: forking came for free
    env.reset(seed=0)
    env.step("<note>a</note>")
    child = env.fork()
    assert child.step("<note>b</note>")[0] == "<result>\na | b\n</result>"
    assert env.step("<note>c</note>")[0] == "<result>\na | c\n</result>"


def test_unknown_id_suggests_close_matches():
    with pytest.raises(arpo_env.UnknownEnvError, match="Did you mean 'arpo/Calculator-v0'"):
        arpo_env.make("arpo/Calculater-v0")
    with pytest.raises(ValueError, match="module:Class"):
        arpo_env.register("x/Bad-v0", entry_point="no_colon")


def _plugin_dist(root: Path) -> None:
    dist = root / "user_envs_mod-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: user-envs-mod\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[arpo_env.envs]\nnotes = user_envs_mod:register_all\n")


def test_entry_point_plugin_registers_without_touching_core(user_module, monkeypatch):
    _plugin_dist(user_module)
    monkeypatch.setattr(registry, "_plugins_loaded", False)
    rec = {r.id: r for r in arpo_env.list_envs()}["ext/Notes-v0"]
    assert rec.source == "plugin:user-envs-mod"
    assert arpo_env.make("ext/Notes-v0").fork_kind.value == "state"


def test_arpo_envs_cli_lists_builtin_plugin_and_module_envs(user_module):
    _plugin_dist(user_module)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(user_module), os.getcwd()])}
    out = subprocess.run([sys.executable, "-m", "arpo_env.cli", "envs", "--json"], env=env,
                         capture_output=True, text=True, check=True).stdout
    rows = {r["id"]: r for r in json.loads(out)}
    assert rows["arpo/Calculator-v0"]["fork_kind"] == "stateless"
    assert rows["arpo/Calculator-v0"]["tools"] == "calculator"
    assert rows["ext/Notes-v0"]["tools"] == "note" and rows["ext/Notes-v0"]["source"].startswith("plugin:")


def test_an_id_form_plugin_is_known_to_gymnasium_after_only_import_arpo_env(user_module):
    """``"ext/Notes-v0" = "user_envs_mod:NotesEnv"`` in the entry-point group: a bare ``import arpo_env``
    registers it with Gymnasium without importing the plugin module (Gymnasium imports it at ``make``)."""
    dist = user_module / "user_envs_mod-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: user-envs-mod\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[arpo_env.envs]\next/Notes-v0 = user_envs_mod:NotesEnv\n")
    code = textwrap.dedent("""
        import json, sys
        import gymnasium as gym
        import arpo_env
        imported_early = "user_envs_mod" in sys.modules
        env = gym.make("ext/Notes-v0")
        rec = {r.id: r for r in arpo_env.list_envs()}["ext/Notes-v0"]
        print(json.dumps({"early": imported_early, "cls": type(env.unwrapped).__name__,
                          "kind": env.unwrapped.fork_kind.value, "source": rec.source}))
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(user_module), os.getcwd()])}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True,
                         timeout=120).stdout
    assert json.loads(out.strip().splitlines()[-1]) == {"early": False, "cls": "NotesEnv", "kind": "state",
                                                        "source": "plugin:user-envs-mod"}


def test_a_malformed_id_form_plugin_does_not_break_import(user_module):
    dist = user_module / "bad_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: bad-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[arpo_env.envs]\next/Bad!-v0 = not_a_module_path:X\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(user_module), os.getcwd()])}
    proc = subprocess.run([sys.executable, "-c", "import arpo_env; print(len(arpo_env.list_envs()))"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and int(proc.stdout.strip()) >= 5, proc.stderr
    assert proc.stderr.count("'ext/Bad!-v0'") == 1 and "cannot be registered" in proc.stderr  # warned once
