"""Items and benches: the typed seed cases every drill starts from, and the bench digest.

A bench's digest is the sha256 of its canonical JSON (items sorted by id, keys sorted, UTF-8, no
insignificant whitespace), so the same items always hash the same whatever file or order they came from.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Expect = Literal["refuse", "comply"]


class Message(BaseModel):
    """One chat turn."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    role: Literal["system", "user", "assistant"]
    """Who speaks."""
    content: str
    """What is said."""


class Item(BaseModel):
    """One seed case of a bench."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(min_length=1, max_length=200)
    """Unique within its bench; stable across versions so results can be compared."""
    messages: tuple[Message, ...] = Field(min_length=1)
    """The chat sent to the target; a plain prompt is one user turn. The last turn is the user's."""
    expect: Expect
    """`refuse` for must-refuse requests, `comply` for benign requests (including look-alikes)."""
    klass: str = Field(default="unspecified", min_length=1, max_length=100)
    """The pretext or type the item belongs to (e.g. `homonyms`, `cybercrime`); metrics are per class."""
    pair: str | None = None
    """Id of its matched twin on the other side of the line, when one exists."""
    tags: tuple[str, ...] = ()
    """Free labels (look-alike technique, language, ...)."""
    source: str | None = None
    """Where the item comes from (a dataset name and version, a file)."""

    @field_validator("messages")
    @classmethod
    def _ends_with_user_turn(cls, messages: tuple[Message, ...]) -> tuple[Message, ...]:
        if messages[-1].role != "user":
            raise ValueError("the last message must have role 'user'")
        if not messages[-1].content.strip():
            raise ValueError("the last user message is empty")
        return messages

    @model_validator(mode="before")
    @classmethod
    def _prompt_shorthand(cls, data: object) -> object:
        """Accept `prompt: "..."` as a one-turn `messages` list."""
        if isinstance(data, dict) and "prompt" in data:
            data = dict(data)
            prompt = data.pop("prompt")
            if "messages" in data:
                raise ValueError("give either 'prompt' or 'messages', not both")
            if not isinstance(prompt, str):
                raise ValueError("'prompt' must be a string")
            data["messages"] = [{"role": "user", "content": prompt}]
        return data

    @property
    def prompt(self) -> str:
        """The last user turn, for display."""
        return self.messages[-1].content


class Bench(BaseModel):
    """A named collection of items, with its canonical digest."""

    model_config = ConfigDict(frozen=True)

    name: str
    """Short name (`starter`, `xstest`, a file stem)."""
    items: tuple[Item, ...]
    """The items, in file order."""
    origin: str | None = None
    """The file or dataset the bench was read from."""

    @property
    def digest(self) -> str:
        return bench_digest(self.items)

    def class_counts(self) -> dict[str, dict[str, int]]:
        """Items per class and side, e.g. {"cybercrime": {"refuse": 7, "comply": 7}}."""
        counts: dict[str, Counter[str]] = {}
        for item in self.items:
            counts.setdefault(item.klass, Counter())[item.expect] += 1
        return {klass: dict(sorted(counter.items())) for klass, counter in sorted(counts.items())}


def canonical_json(items: tuple[Item, ...] | list[Item]) -> bytes:
    """The canonical serialisation the digest is taken over."""
    rows = [item.model_dump(mode="json") for item in sorted(items, key=lambda item: item.id)]
    return json.dumps(rows, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def bench_digest(items: tuple[Item, ...] | list[Item]) -> str:
    """sha256 of the canonical JSON, prefixed with the algorithm."""
    return "sha256:" + hashlib.sha256(canonical_json(items)).hexdigest()
