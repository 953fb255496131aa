"""Verdicts and the Judge protocol every lane implements.

`undetermined` is an outcome of its own: a lane that cannot tell says so, and metrics count it apart
instead of guessing a side. Target errors never reach a judge at all.
"""

from __future__ import annotations

from typing import Protocol

from refcal.records import Verdict


class Judge(Protocol):
    """A response → verdict function with a name and version that go into every receipt."""

    name: str
    version: str

    def judge(self, prompt: str, response: str) -> Verdict:
        """Judge one response to one prompt (lanes that call a model raise TypeError: use judge_async)."""
        ...

    async def judge_async(self, prompt: str, response: str) -> Verdict:
        """The same, for lanes that call a target; pure lanes just return `judge`."""
        ...
