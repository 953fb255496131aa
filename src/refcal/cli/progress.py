"""Progress for long CLI jobs (training, direction search): a rich bar on a terminal, plain lines in pipes and CI."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from refcal.cli.common import console, errors_console

PLAIN_LINES = 10
"""Without a terminal, a progress line each time another tenth of a stage is done."""


@contextlib.contextmanager
def training_display() -> Iterator[Any]:
    """A progress callable: a rich bar per stage on a terminal, a plain line every tenth of a stage otherwise."""
    if not errors_console.is_terminal:
        yield PlainProgress()
        return
    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("loss {task.fields[loss]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                   console=errors_console)
    tasks: dict[str, Any] = {}

    def advance(stage: str, step: int, total: int, loss: float | None) -> None:
        if stage not in tasks:
            tasks[stage] = bar.add_task(stage, total=total, completed=step, loss="–")
        bar.update(tasks[stage], completed=step, total=total, loss="–" if loss is None else f"{loss:.3f}")

    with bar:
        yield advance


class PlainProgress:
    """Progress lines for pipes and CI: a stage's first report, then one each time another tenth is done."""

    def __init__(self) -> None:
        self.tenths: dict[str, int] = {}
        self.started = time.perf_counter()

    def __call__(self, stage: str, step: int, total: int, loss: float | None) -> None:
        tenth = min(PLAIN_LINES, step * PLAIN_LINES // max(total, 1))  # integers: 12/40 is 3 tenths
        if stage in self.tenths and tenth <= self.tenths[stage]:
            return
        self.tenths[stage] = tenth
        shown_loss = "" if loss is None else f" loss {loss:.3f}"
        console.print(f"{stage}: step {step}/{total} ({step / max(total, 1):.0%}){shown_loss} "
                      f"[{time.perf_counter() - self.started:.0f} s]", highlight=False, markup=False)
