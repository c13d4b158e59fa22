"""``TextEnv``: the multi-turn text environment every arpo-env task is built on.

Semantics (ARPO.md section 1):

- ``reset(seed=, options=)`` takes the task through ``options`` (``{"question", "answer", "id"?,
  "metadata"?, "system_prompt"?}`` or ``{"task": Task}``; a ``system_prompt`` there replaces the env's
  for that episode, e.g. a training row's own) or draws one from the env's task source with its seeded RNG, and
  returns the user prompt. ``info`` carries the system prompt, chat ``messages``, the task and the tools.
- ``step(text)`` takes one agent turn. A tool call ``<NAME>args</NAME>`` runs the tool and returns
  ``<result>\\n…\\n</result>``; ``<answer>…</answer>`` ends the episode (``terminated``). A malformed turn
  (unknown or unclosed tag, bad JSON, no tag at all, an over-long action) returns an error observation
  and counts against the tool-call budget. ``step`` never raises on text.
- Budgets: ``max_tool_calls`` counts all tools and malformed turns together; a call past it ends the
  episode (``truncated``), as does reaching ``max_turns``.
- The turn just played: ``env.last_turn`` is a :class:`Turn` (the parsed action, the tool result, the
  observation, ``counted``: whether the turn counted against the budget, and ``is_tool_call``: whether it
  was a call of one of the env's tools, well-formed or not). This is the one place that decides what a tool
  call is; agents and trainers read it instead of parsing ``info`` (whose keys
  stay for Gymnasium users). ``env.stop_strings`` are the strings a generator should stop at.
- Reward: 0 on non-final steps; on the final step ``reward_fn(response, task)`` where ``response`` is
  every action and observation of the episode concatenated (ARPO's reward by default).
- Forking: see :mod:`arpo_env.fork`. ``fork()`` works for the stateless, state and replay kinds without
  any code in the subclass.

Not covered here: tokenisation (the agent owns token ids) and concurrency (one env is one episode; run
many envs for a batch).
"""
from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import gymnasium as gym

from arpo_env.config import build
from arpo_env.fork import ForkKind
from arpo_env.parsing import JSON_CALL_TAG, Action, clean_text, extract_answer, format_result, parse_action
from arpo_env.rewards import arpo_reward
from arpo_env.spaces import UnicodeText
from arpo_env.task import ListTaskSource, Task, TaskSource
from arpo_env.tools import ForkableTool, Tool, ToolResult, close_tool

RewardFn = Callable[[str, Task], float]


@dataclass
class EnvConfig:
    """Budgets and limits shared by every text env; pass any field as a keyword to ``make``."""

    max_tool_calls: int = 3
    """Tool calls allowed per episode, all tools and malformed turns together (ARPO: 3 math/QA, 6 deep search)."""
    max_turns: int = 16
    """Agent turns (``step`` calls) per episode; reaching it truncates."""
    max_action_chars: int = 100_000
    """Longer actions are rejected with an error observation (guards the parser and the tools)."""
    max_result_chars: int = 8_000
    """Tool results are cut to this many characters, with a marker saying how much was dropped."""
    max_observation_chars: int = 200_000
    """Upper bound of the observation space; the prompt and every observation fit in it."""
    json_tool_calls: bool = True
    """Also accept chat-template JSON calls ``<tool_call>{"name": ..., "arguments": ...}</tool_call>``."""
    reward: Literal["arpo", "arpo-calls"] = "arpo"
    """The final reward (when no ``reward_fn`` is given). ``arpo``: ARPO's training reward exactly (its public
    ``compute_score``; see :mod:`arpo_env.rewards`): the multi-tool bonus is paid when the text holds
    ``</search>`` and ``</python>``, wherever they are. ``arpo-calls``: the same, except that the bonus is paid
    only when every tool of ``bonus_tools`` was really called in this episode (a JSON-style call counts, a
    tag quoted in the answer does not)."""
    format_tools: tuple[str, ...] = ("search", "python")
    """Tools whose calls the format check inspects (ARPO: search and python, whatever the env's tools)."""
    bonus_tools: tuple[str, ...] = ("search", "python")
    """The multi-tool bonus is paid when all of these were used (ARPO: search and python)."""

    def __post_init__(self) -> None:
        for name in ("max_tool_calls", "max_turns", "max_action_chars", "max_result_chars"):
            if getattr(self, name) < (0 if name == "max_tool_calls" else 1):
                raise ValueError(f"EnvConfig.{name} must be positive, got {getattr(self, name)}")
        if self.reward not in ("arpo", "arpo-calls"):
            raise ValueError(f"EnvConfig.reward must be 'arpo' or 'arpo-calls', got {self.reward!r}")


@dataclass(frozen=True)
class Turn:
    """One agent turn as the env played it (``TextEnv.last_turn`` after each ``step``)."""

    action: Action
    """The parsed turn (``tool``, ``answer``, ``invalid`` or ``none``)."""
    observation: str
    """What ``step`` returned: the ``<result>`` block, an error, or ``""`` after an answer."""
    result: ToolResult | None = None
    """The tool's result when a tool ran (only for counted calls of kind ``tool``), else ``None``."""
    counted: bool = False
    """True when the env counted this turn against ``max_tool_calls``: an executed call or any malformed
    turn (unknown/unclosed tag, bad JSON, no tag at all, over-long). False for an answer, for a turn past
    the budget (it ends the episode instead) and for a step after the episode ended."""

    @property
    def is_tool_call(self) -> bool:
        """The agent made a tool call: a counted turn that ran a tool or was a malformed call of one of this
        env's tools (action kind ``tool`` or ``invalid``). A counted turn with no call of this env's tools at
        all (kind ``none``: plain text, or only tags this env does not have) uses budget but is no call; it
        is not recorded in ``Trajectory.tool_calls`` and never starts an ARPO branch."""
        return self.counted and self.action.kind in ("tool", "invalid")

    @property
    def tool_error(self) -> bool:
        """True when the turn was a malformed call or the tool reported an error."""
        if not self.is_tool_call:
            return False
        return self.result is None or self.result.error


@dataclass
class Episode:
    """The bookkeeping of one episode: plain data, deep-copied by every fork."""

    task: Task
    options: dict[str, Any] | None
    rng_before_task: Any = None
    prompt: str = ""
    system_prompt: str | None = None
    actions: list[str] = field(default_factory=list)
    observations: list[str] = field(default_factory=list)
    turns: int = 0
    tool_calls: int = 0
    invalid_calls: int = 0
    tool_counts: dict[str, int] = field(default_factory=dict)
    answer: str | None = None
    terminated: bool = False
    truncated: bool = False
    reward: float | None = None
    last_turn: Turn | None = None
    """The latest turn played (``None`` right after reset)."""

    @property
    def done(self) -> bool:
        return self.terminated or self.truncated

    @property
    def response(self) -> str:
        """Every action followed by its observation, concatenated (what the reward reads)."""
        return "".join(a + o for a, o in zip(self.actions, self.observations))

    def snapshot(self) -> tuple:
        """A comparable summary (used by ``check_fork``)."""
        return (self.task.question, tuple(self.actions), tuple(self.observations), self.turns,
                self.tool_calls, tuple(sorted(self.tool_counts.items())), self.answer, self.done)


class TextEnv(gym.Env[str, str]):
    """Base class of every arpo-env environment. Subclasses pass their tools and may override
    :meth:`default_task_source`, :meth:`build_prompt`, :meth:`example_actions` and :meth:`_on_reset`."""

    metadata = {"render_modes": ["ansi"], "render_fps": 1}
    fork_kind: ForkKind = ForkKind.STATE
    """How this env forks; an instance may be switched to ``replay`` with ``fork_kind="replay"``."""
    deterministic: bool = True
    """Same task and actions give the same observations (``check_fork`` then checks equivalence)."""
    fork_shared: ClassVar[tuple[str, ...]] = ()
    """Attribute names that ``state`` forks share instead of copying (indexes, caches, clients)."""
    declared_tools: ClassVar[tuple[str, ...]] = ()
    """Tool names for listings (``arpo envs``) without building the env."""

    def __new__(cls, *args: Any, **kwargs: Any) -> TextEnv:
        obj = super().__new__(cls)
        obj._ctor = (args, dict(kwargs))  # to re-create the env for replay forks and checks
        return obj

    def __init__(self, tools: Sequence[Tool], *, config: EnvConfig | None = None,
                 task_source: TaskSource | None = None, reward_fn: RewardFn | None = None,
                 system_prompt: str | None = None, render_mode: str | None = None,
                 fork_kind: str | ForkKind | None = None, **overrides: Any) -> None:
        self.config = build(EnvConfig, config, overrides, owner=type(self).__name__)
        self.tools: dict[str, Tool] = {}
        for tool in tools:
            if not isinstance(tool, Tool):
                raise TypeError(f"{tool!r} is not a Tool (needs name, description and __call__)")
            if tool.name in self.tools or tool.name in ("answer", "result", "think"):
                raise ValueError(f"tool name {tool.name!r} is reserved or used twice")
            self.tools[tool.name] = tool
        if render_mode not in (None, "ansi"):
            raise ValueError(f"render_mode must be None or 'ansi', got {render_mode!r}")
        self.render_mode = render_mode
        if fork_kind is not None:
            kind = ForkKind(fork_kind)
            if kind not in (type(self).fork_kind, ForkKind.REPLAY):
                raise ValueError(f"{type(self).__name__} forks by {type(self).fork_kind.value}; "
                                 "only 'replay' may be chosen instead")
            if kind is ForkKind.REPLAY and not self.deterministic:
                raise ValueError("replay forks need a deterministic env")
            self.fork_kind = kind
        self.task_source = task_source if task_source is not None else self.default_task_source()
        self.reward_fn = reward_fn
        self._system_prompt = system_prompt
        n = self.config.max_observation_chars
        self.observation_space = UnicodeText(n)
        self.action_space = UnicodeText(self.config.max_action_chars)
        self._episode: Episode | None = None
        self._borrowed: set[str] = set()  # tools shared with a parent: a fork does not close them

    # ----- what subclasses customise -------------------------------------------------------------
    def default_task_source(self) -> TaskSource:
        """Tasks drawn when ``reset`` gets no task. Override; the default is a single toy question."""
        return ListTaskSource([Task("What is the capital of France?", ["Paris"])])

    def build_prompt(self, task: Task) -> str:
        """The user prompt for a task (the system prompt carries the protocol)."""
        return task.question

    @property
    def system_prompt(self) -> str:
        """ARPO-style instructions listing this env's tools, budget and answer format."""
        if self._system_prompt is not None:
            return self._system_prompt
        lines = ["You are a helpful assistant. Solve the problem step by step. Reason inside "
                 "<think> </think>."]
        if self.tools:
            lines.append("You can call tools. Write a call as <NAME>argument</NAME>; the result comes back "
                         "as <result> ... </result>. Available tools:")
            lines += [f"- <{t.name}>: {t.description}" for t in self.tools.values()]
            lines.append(f"You may make at most {self.config.max_tool_calls} tool calls in total.")
        lines.append("Give the final answer as <answer> ... \\boxed{ANSWER} </answer>.")
        return "\n".join(lines)

    def example_actions(self) -> list[str]:
        """A plausible action sequence for the current task (demos, ``check_fork`` probes): one call of
        each tool that has an ``example`` argument, then an answer. Override with actions that read and
        write the env's state."""
        examples = {t.name: getattr(t, "example", "") for t in self.tools.values()}
        acts = [f"<{name}>{ex}</{name}>" for name, ex in examples.items() if ex]
        return acts + ["<answer>\\boxed{unknown}</answer>"]

    @property
    def stop_strings(self) -> tuple[str, ...]:
        """Where a generator should stop a turn: ``</NAME>`` of each tool, ``</tool_call>`` when JSON calls
        are accepted, and ``</answer>`` (in this order, without duplicates)."""
        stops = [f"</{name}>" for name in self.tools]
        if self.config.json_tool_calls:
            stops.append(f"</{JSON_CALL_TAG}>")
        stops.append("</answer>")
        return tuple(dict.fromkeys(stops))

    @property
    def last_turn(self) -> Turn | None:
        """The turn the latest ``step`` played (``None`` before the first step of an episode)."""
        return self._episode.last_turn if self._episode is not None else None

    def _on_reset(self, task: Task) -> None:
        """Hook: reset per-episode tool state (e.g. restart a session)."""

    def _fork_extra(self, child: TextEnv) -> None:
        """Hook: finish a fork (``child`` is already a copy according to the fork kind)."""

    # ----- Gymnasium API --------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict]:
        super().reset(seed=seed)
        rng_before = copy.deepcopy(self.np_random)
        task = Task.from_options(options) if options else self.task_source.sample(self.np_random)
        self._on_reset(task)
        prompt = self.build_prompt(task)
        system = options.get("system_prompt") if options else None
        if system is not None and not isinstance(system, str):
            raise ValueError(f"options['system_prompt'] must be a str, got {type(system).__name__}")
        self._episode = Episode(task=task, options=copy.deepcopy(options), rng_before_task=rng_before,
                                prompt=prompt, system_prompt=system)
        return prompt, self._reset_info()

    def _reset_info(self) -> dict[str, Any]:
        ep = self.episode
        system = ep.system_prompt if ep.system_prompt is not None else self.system_prompt
        return {"task": ep.task.to_dict(), "system_prompt": system,
                "messages": [{"role": "system", "content": system}, {"role": "user", "content": ep.prompt}],
                "tools": list(self.tools), "fork_kind": self.fork_kind.value,
                "max_tool_calls": self.config.max_tool_calls}

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        ep = self._episode
        if ep is None:
            raise gym.error.ResetNeeded("call reset() before step()")
        if ep.done:
            obs = format_result("Error: the episode has ended; call reset() to start a new one.")
            ep.last_turn = Turn(Action("invalid", error="episode ended"), obs)
            return obs, 0.0, ep.terminated, ep.truncated, self._info(ep.last_turn)
        text = clean_text(action)
        cfg = self.config
        ep.turns += 1
        if len(text) > cfg.max_action_chars:
            act = Action("invalid", error=f"the turn is {len(text)} characters long; the limit is "
                                          f"{cfg.max_action_chars}")
        else:
            act = parse_action(text, self.tools, json_calls=cfg.json_tool_calls)
        result: ToolResult | None = None
        counted = False
        if act.kind == "answer":
            ep.answer = extract_answer(act.args or "")
            ep.terminated = True
            obs = ""
        elif ep.tool_calls >= cfg.max_tool_calls:
            ep.truncated = True
            obs = format_result(f"Error: the budget of {cfg.max_tool_calls} tool calls is used up; "
                                "the episode ends.")
        else:
            ep.tool_calls += 1
            counted = True
            if act.kind == "tool":
                name = act.name or ""  # parse_action names every tool call
                ep.tool_counts[name] = ep.tool_counts.get(name, 0) + 1
                result = self._call_tool(name, act.args or "")
                obs = format_result(self._clip(result.text))
            else:
                ep.invalid_calls += 1
                obs = format_result(f"Error: {act.error}")
        if not ep.done and ep.turns >= cfg.max_turns:
            ep.truncated = True
        ep.actions.append(text)
        ep.observations.append(obs)
        ep.last_turn = Turn(act, obs, result, counted)
        reward = 0.0
        if ep.done:
            ep.reward = reward = float(self._final_reward(ep))
        return obs, reward, ep.terminated, ep.truncated, self._info(ep.last_turn)

    def end(self) -> float:
        """End the episode from the agent's side (it stopped without a call or an answer: end-of-sequence,
        a length limit). The episode becomes ``truncated`` and gets its final reward, which is returned
        (ARPO's reward of a response without an answer is -1). On an ended episode it returns the
        recorded reward and changes nothing."""
        ep = self.episode
        if not ep.done:
            ep.truncated = True
            ep.reward = float(self._final_reward(ep))
        return ep.reward if ep.reward is not None else 0.0

    def _call_tool(self, name: str, args: str) -> ToolResult:
        try:
            return self.tools[name](args)
        except Exception as exc:  # tools should not raise; if one does, the agent sees it, we survive
            return ToolResult(f"Error: the {name} tool failed: {type(exc).__name__}: {exc}", error=True)

    def _clip(self, text: str) -> str:
        limit = self.config.max_result_chars
        if len(text) <= limit:
            return text
        return text[:limit] + f"\n... [output truncated: {len(text) - limit} more characters]"

    def _final_reward(self, ep: Episode) -> float:
        if self.reward_fn is not None:
            return self.reward_fn(ep.response, ep.task)
        cfg = self.config
        called = dict(ep.tool_counts) if cfg.reward == "arpo-calls" else None
        return arpo_reward(ep.response, ep.task.answer, format_tools=cfg.format_tools,
                           bonus_tools=cfg.bonus_tools, called=called)

    def _info(self, turn: Turn) -> dict[str, Any]:
        """The Gymnasium ``info`` of a step: plain data derived from ``turn`` (for Gymnasium users; agents
        read :attr:`last_turn`)."""
        ep, act, result = self.episode, turn.action, turn.result
        return {"action": act.to_dict(), "error": act.error if act.kind in ("invalid", "none") else None,
                "tool_error": bool(result and result.error),
                "tool_metadata": copy.deepcopy(result.metadata) if result else {},
                "turns": ep.turns, "tool_calls": ep.tool_calls, "invalid_calls": ep.invalid_calls,
                "tool_calls_left": max(0, self.config.max_tool_calls - ep.tool_calls),
                "tool_counts": dict(ep.tool_counts), "answer": ep.answer}

    def render(self) -> str | None:
        if self.render_mode != "ansi" or self._episode is None:
            return None
        return self._episode.prompt + "\n" + self._episode.response

    def close(self) -> None:
        for name, tool in self.tools.items():
            if name not in self._borrowed:
                close_tool(tool)
        super().close()

    # ----- forking ------------------------------------------------------------------------------
    @property
    def episode(self) -> Episode:
        """The current episode's bookkeeping (read it; do not mutate it)."""
        if self._episode is None:
            raise gym.error.ResetNeeded("no episode yet: call reset()")
        return self._episode

    def fresh_copy(self) -> TextEnv:
        """A new env built with the same constructor arguments (no episode)."""
        args, kwargs = self._ctor
        env = type(self)(*args, **kwargs)
        env.spec = self.spec
        return env

    def fork(self) -> TextEnv:
        """An independent env at the same point of the same episode (see :mod:`arpo_env.fork`)."""
        parent = self.episode
        kind = self.fork_kind
        if kind is ForkKind.REPLAY:
            child = self.fresh_copy()
            child._np_random = copy.deepcopy(parent.rng_before_task)
            child.reset(options=copy.deepcopy(parent.options))
            for action in parent.actions:
                child.step(action)
        elif kind is ForkKind.STATE:
            memo = {id(getattr(self, a)): getattr(self, a) for a in self.fork_shared}
            child = copy.deepcopy(self, memo)
        else:
            child = copy.copy(self)
            child._episode = copy.deepcopy(parent)
            child._np_random = copy.deepcopy(self._np_random)
            forkable = kind is not ForkKind.STATELESS
            child.tools = {n: t.fork() if forkable and isinstance(t, ForkableTool) else t
                           for n, t in self.tools.items()}
            child._borrowed = {n for n, t in child.tools.items() if t is self.tools[n]}
        self._fork_extra(child)
        return child
