"""Verdicts and the Judge protocol every lane implements: one async batch method, `judge_batch`.

`undetermined` is an outcome of its own: a lane that cannot tell says so, and metrics count it apart
instead of guessing a side. Target errors never reach a judge at all.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Protocol

from refcal.records import Verdict


class Judge(Protocol):
    """(prompt, response) rows → verdicts, with a name and version that go into every receipt."""

    name: str
    version: str

    async def judge_batch(self, rows: Sequence[tuple[str, str]]) -> list[Verdict]:
        """One verdict per (prompt, response) row, in order. Lanes that call a model call it concurrently;
        pure lanes (markers, head) also offer a sync `judge(prompt, response)` for one row."""
        ...


def judge_rows(judge: Judge, rows: Sequence[tuple[str, str]]) -> list[Verdict]:
    """`judge.judge_batch(rows)` from synchronous code (outside a running event loop)."""
    return asyncio.run(judge.judge_batch(rows))
