"""Progress for long CLI jobs (drills, training): a rich bar on a terminal, plain lines in pipes and CI."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from refcal.cli.common import console, errors_console
from refcal.metrics.rates import percent

if TYPE_CHECKING:
    from refcal.records import Attempt

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
        console.print(f"{stage}: step {step}/{total} ({percent(step / max(total, 1), 0)}){shown_loss} "
                      f"[{time.perf_counter() - self.started:.0f} s]", highlight=False, markup=False)


class DrillProgress:
    """A rich progress bar on a terminal; a plain line every 10 % elsewhere (CI, pipes)."""

    def __init__(self, total: int, done: int) -> None:
        self.total, self.done, self.errors = total, done, 0
        self.bar: Progress | None = None

    def __enter__(self) -> DrillProgress:
        if console.is_terminal:
            self.bar = Progress(TextColumn("drill"), BarColumn(), MofNCompleteColumn(),
                                TextColumn("errors {task.fields[errors]}"), TimeElapsedColumn(), console=console)
            self.bar.start()
            self.task = self.bar.add_task("drill", total=self.total, completed=self.done, errors=0)
        return self

    def __call__(self, attempt: Attempt) -> None:
        self.done += 1
        self.errors += attempt.is_error
        if self.bar is not None:
            self.bar.update(self.task, advance=1, errors=self.errors)
        elif self.total and self.done * 10 // self.total != (self.done - 1) * 10 // self.total:
            console.print(f"drill {self.done}/{self.total} errors {self.errors}", highlight=False)

    def __exit__(self, *exc_info: object) -> None:
        if self.bar is not None:
            self.bar.stop()
