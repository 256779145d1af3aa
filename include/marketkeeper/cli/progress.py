"""The progress bar of long commands: candles done of expected, candles/s, elapsed time and ETA."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text


class _RateColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.speed
        return Text("" if speed is None else f"{speed:,.0f} candles/s")


@contextlib.contextmanager
def candle_progress(label: str) -> Iterator[tuple[Callable[[int, int], None], Callable[[], float]]]:
    """A transient bar named ``label``; yields ``advance(done, total)`` and ``elapsed()`` (seconds)."""
    # The label is the task's description, shown verbatim: a TextColumn's own text goes through str.format
    # ("{x}" in a symbol raised KeyError) and rich markup ("[x]" vanished).
    with Progress(
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        _RateColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        transient=True,
    ) as bar:
        task = bar.add_task(label, total=None)

        def advance(done: int, total: int) -> None:
            bar.update(task, completed=min(done, total) if total else done, total=total or None)

        yield advance, lambda: bar.tasks[0].elapsed or 0.0
