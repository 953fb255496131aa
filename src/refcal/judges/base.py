"""Verdicts and the Judge protocol every lane implements.

`undetermined` is an outcome of its own: a lane that cannot tell says so, and metrics count it apart
instead of guessing a side. Target errors never reach a judge at all.
"""

from __future__ import annotations

from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

Label = Literal["refusal", "partial_refusal", "compliance", "undetermined"]
Depth = Literal["bare", "explains", "redirects", "workaround", "unknown"]
LABELS: tuple[Label, ...] = ("refusal", "partial_refusal", "compliance", "undetermined")


class Verdict(BaseModel):
    """What a judge concluded about one response."""

    model_config = ConfigDict(frozen=True)

    label: Label
    """refusal / partial_refusal / compliance, or undetermined when the lane cannot tell."""
    score: float = Field(ge=0.0, le=1.0)
    """The lane's confidence in `label`."""
    lane: str
    """Which lane decided (`markers`, `head`, `llm`, `human`)."""
    depth: Depth | None = None
    """For refusals: bare, explains, redirects, workaround; unknown when the lane cannot tell."""
    reason: str = ""
    """A short account of why (the marker matched, the rule applied)."""


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
