"""A progress bar with count, rate (samples/s) and ETA, drawn with rich on stderr."""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator


@contextlib.contextmanager
def progress_bar(total: int, enabled: bool = True, label: str = "eval") -> Iterator[Callable[[int], None]]:
    """Yield ``advance(n)``; draws nothing when ``enabled`` is false."""
    if not enabled:
        yield lambda n: None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TaskProgressColumn(),
               TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True)) as prog:
        task = prog.add_task(label, total=total, rate="")

        def advance(n: int) -> None:
            # the mean rate since the start: rich's windowed speed read thousands of samples/s when a
            # batch of episodes finished in the same instant
            prog.update(task, advance=n)
            t = prog.tasks[0]
            speed = t.completed / t.elapsed if t.elapsed else 0.0
            prog.update(task, rate=f"{speed:.2f} samples/s" if speed else "")

        yield advance
