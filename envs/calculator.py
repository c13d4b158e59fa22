"""``arpo/Calculator-v0``: arithmetic questions and a calculator tool, ``<calculator>expr</calculator>``.

Expressions are evaluated by ``simpleeval`` (an AST walker; model text never reaches Python's ``eval``)
with a whitelist of operators, functions and constants, and size guards on every operator that can
grow a number, so ``9**9**9`` or ``factorial(10**6)`` answer with an error at once instead of hanging or
eating memory. ``^`` means power, as on a calculator. Bit operations, comparisons, names other than the
constants, attribute access, strings and comprehensions are rejected.

Fork kind: stateless (the tool keeps nothing between calls).
"""
from __future__ import annotations

import ast
import math
import operator
from typing import Any

import numpy as np
import simpleeval

from arpo_env.env import TextEnv
from arpo_env.fork import ForkKind
from arpo_env.task import Task
from arpo_env.tools import ToolResult

MAX_BITS = 20_000
"""Integers may not grow past this many bits (about 6,000 decimal digits)."""
MAX_EXPR_CHARS = 2_000


class CalculatorError(ValueError):
    """A calculator input the tool refuses, with a message for the agent."""


def _check_int(x: Any) -> Any:
    if isinstance(x, int) and x.bit_length() > MAX_BITS:
        raise CalculatorError(f"the result has more than {MAX_BITS} bits; refusing absurd sizes")
    return x


def _pow(a: Any, b: Any) -> Any:
    if isinstance(a, int) and isinstance(b, int) and b > 0 and abs(a) > 1:
        if b * math.log2(abs(a)) > MAX_BITS:
            raise CalculatorError(f"{a}**{b} would have more than {MAX_BITS} bits; refusing absurd sizes")
    if isinstance(a, (int, float)) and isinstance(b, float) and a < 0 and not b.is_integer():
        raise CalculatorError("a negative number to a fractional power is not a real number")
    return _check_int(a ** b)


def _mul(a: Any, b: Any) -> Any:
    if isinstance(a, int) and isinstance(b, int) and a.bit_length() + b.bit_length() > MAX_BITS + 1:
        raise CalculatorError(f"the product would have more than {MAX_BITS} bits; refusing absurd sizes")
    return a * b


def _factorial(n: Any) -> int:
    if not (isinstance(n, int) or (isinstance(n, float) and n.is_integer())) or n < 0:
        raise CalculatorError("factorial takes a non-negative integer")
    if n > 1500:
        raise CalculatorError("factorial is limited to n <= 1500")
    return math.factorial(int(n))


def _binom(fn: Any) -> Any:
    def guarded(n: int, k: int) -> int:
        if not isinstance(n, int) or not isinstance(k, int) or n > 5000:
            raise CalculatorError(f"{fn.__name__} takes integers with n <= 5000")
        return fn(n, k)
    return guarded


def _numeric(fn: Any) -> Any:
    """Only numbers reach an operator (strings would let ``'a' * 10**9`` allocate a gigabyte)."""
    def checked(*operands: Any) -> Any:
        for x in operands:
            if isinstance(x, bool) or not isinstance(x, (int, float)):
                raise CalculatorError(f"only numbers are supported, got {type(x).__name__}")
        return fn(*operands)
    return checked


OPERATORS = {op: _numeric(fn) for op, fn in {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: _mul, ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: _pow, ast.BitXor: _pow,
    ast.USub: operator.neg, ast.UAdd: operator.pos,
}.items()}
FUNCTIONS = {
    "sqrt": math.sqrt, "cbrt": lambda x: math.copysign(abs(x) ** (1 / 3), x), "exp": math.exp,
    "log": math.log, "ln": math.log, "log10": math.log10, "log2": math.log2,
    "sin": math.sin, "cos": math.cos, "tan": math.tan, "asin": math.asin, "acos": math.acos,
    "atan": math.atan, "atan2": math.atan2, "degrees": math.degrees, "radians": math.radians,
    "abs": abs, "round": round, "floor": math.floor, "ceil": math.ceil, "min": min, "max": max,
    "gcd": math.gcd, "lcm": math.lcm, "factorial": _factorial, "comb": _binom(math.comb),
    "perm": _binom(math.perm),
}
NAMES = {"pi": math.pi, "e": math.e, "tau": math.tau}


def format_number(x: Any) -> str:
    """Integers exactly; floats to 12 significant digits (integral floats without a fraction)."""
    if isinstance(x, bool):
        raise CalculatorError("comparisons and booleans are not supported")
    if isinstance(x, int):
        return str(x)
    if isinstance(x, float):
        if math.isnan(x) or math.isinf(x):
            raise CalculatorError("the result is not a finite number")
        if x.is_integer() and abs(x) < 1e15:
            return str(int(x))
        return f"{x:.12g}"
    raise CalculatorError(f"the result is a {type(x).__name__}, not a number")


def evaluate(expression: str) -> str:
    """Evaluate one arithmetic expression; raises :class:`CalculatorError` with a readable reason."""
    expr = expression.strip().replace("×", "*").replace("÷", "/").replace("−", "-")
    if not expr:
        raise CalculatorError("empty expression")
    if len(expr) > MAX_EXPR_CHARS:
        raise CalculatorError(f"the expression is longer than {MAX_EXPR_CHARS} characters")
    evaluator = simpleeval.SimpleEval(operators=OPERATORS, functions=FUNCTIONS, names=NAMES)
    try:
        return format_number(evaluator.eval(expr))
    except CalculatorError:
        raise
    except ZeroDivisionError:
        raise CalculatorError("division by zero") from None
    except OverflowError:
        raise CalculatorError("the result is too large to represent") from None
    except SyntaxError as exc:
        raise CalculatorError(f"invalid syntax: {exc.msg}") from None
    except simpleeval.NameNotDefined as exc:
        raise CalculatorError(f"unknown name {exc.name!r}; constants: {', '.join(NAMES)}") from None
    except simpleeval.FunctionNotDefined as exc:
        raise CalculatorError(f"unknown function {exc.func_name!r}; available: {', '.join(FUNCTIONS)}") from None
    except (simpleeval.InvalidExpression, KeyError) as exc:
        raise CalculatorError(f"unsupported expression: {exc}") from None
    except (RecursionError, MemoryError):
        raise CalculatorError("the expression is nested too deeply") from None
    except (ValueError, TypeError, ArithmeticError) as exc:
        raise CalculatorError(str(exc) or type(exc).__name__) from None


class CalculatorTool:
    """The ``calculator`` tool: one arithmetic expression in, its value out."""

    name = "calculator"
    description = ("evaluates one arithmetic expression, e.g. <calculator>(12.5 + 3) * 4 / 7</calculator>. "
                   "Supports + - * / // % ** (or ^), parentheses, sqrt, log, ln, exp, sin, cos, tan, "
                   "factorial, comb, gcd, min, max, round and the constants pi and e.")
    example = "(12.5 + 3) * 4"

    def __call__(self, args: str) -> ToolResult:
        try:
            return ToolResult(evaluate(args))
        except CalculatorError as exc:
            return ToolResult(f"Error: {exc}", error=True)


class ArithmeticTasks:
    """Generated questions ``What is a OP b OP c?`` with integer answers (a pure function of the RNG)."""

    def __init__(self, digits: int = 3, terms: int = 3):
        if digits < 1 or terms < 2:
            raise ValueError("ArithmeticTasks needs digits >= 1 and terms >= 2")
        self.digits, self.terms = digits, terms

    def sample(self, rng: np.random.Generator) -> Task:
        hi = 10 ** self.digits
        nums = [int(rng.integers(2, hi)) for _ in range(self.terms)]
        ops = [str(rng.choice(["+", "-", "*"])) for _ in range(self.terms - 1)]
        expr = str(nums[0]) + "".join(f" {op} {n}" for op, n in zip(ops, nums[1:]))
        return Task(f"What is {expr}?", [evaluate(expr)], metadata={"expression": expr})


class CalculatorEnv(TextEnv):
    """Arithmetic with a calculator. Reward: ARPO's (format -1, else F1 of the boxed answer)."""

    fork_kind = ForkKind.STATELESS
    declared_tools = ("calculator",)

    def __init__(self, digits: int = 3, terms: int = 3, **kwargs: Any):
        self.digits, self.terms = digits, terms
        super().__init__([CalculatorTool()], **kwargs)

    def default_task_source(self) -> ArithmeticTasks:
        return ArithmeticTasks(self.digits, self.terms)

    def example_actions(self) -> list[str]:
        task = self.episode.task
        expr = task.metadata.get("expression") or "1 + 1"
        answer = task.answer[0] if task.answer else evaluate(expr)
        return [f"<think>I will compute it.</think><calculator>{expr}</calculator>",
                f"<think>Check once more.</think><calculator>({expr}) * 1</calculator>",
                f"<think>Done.</think><answer>\\boxed{{{answer}}}</answer>"]
