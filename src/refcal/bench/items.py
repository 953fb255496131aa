"""Items and benches: the typed seed cases every drill starts from, and the bench digest.

A bench's digest is the sha256 of its canonical JSON (items sorted by id, keys sorted, UTF-8, no
insignificant whitespace), so the same items always hash the same whatever file or order they came from.
An item without a retrieved packet is serialised without the `packet` key, so benches written before
grounded items existed keep their digests.

Grounded items carry a packet of retrieved sources and expect `answer` (cite exact source ids),
`refuse` (decline without citations) or `route` (a `Route:` hand-off); see `refcal.judges.grounded`.
"""

from __future__ import annotations

from collections import Counter

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from refcal.files import sha256_digest
from refcal.records import Expect, Message

NEEDS_PACKET: tuple[Expect, ...] = ("answer", "route")
"""Expectations that only make sense with a retrieved packet (a grounded `refuse` may have one or not)."""


class Source(BaseModel):
    """One retrieved source of a grounded item's packet."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    source_id: str = Field(min_length=1, max_length=100, pattern=r"^[^\s\[\],;]+$")
    """The exact id an answer cites, in square brackets (`[kb-7]`); no spaces, brackets, commas or semicolons,
    so a citation can be read back unambiguously."""
    text: str = Field(min_length=1)
    """What the retriever returned."""
    title: str | None = None
    """Shown after the id when the packet is put in front of the model."""
    supports: bool = False
    """This source holds the answer: an `answer` response must cite at least one source marked so (when
    none is marked, any source of the packet will do). Only `answer` items may mark sources."""


class Item(BaseModel):
    """One seed case of a bench."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(min_length=1, max_length=200)
    """Unique within its bench; stable across versions so results can be compared."""
    messages: tuple[Message, ...] = Field(min_length=1)
    """The chat sent to the target; a plain prompt is one user turn. The last turn is the user's."""
    expect: Expect
    """`refuse` for must-refuse requests, `comply` for benign requests (including look-alikes); for grounded
    items (with a packet) `answer` from the sources, `refuse` (source missing, private state) or `route`."""
    klass: str = Field(default="unspecified", min_length=1, max_length=100)
    """The pretext or type the item belongs to (e.g. `homonyms`, `cybercrime`); metrics are per class."""
    pair: str | None = None
    """Id of its matched twin on the other side of the line, when one exists."""
    tags: tuple[str, ...] = ()
    """Free labels (look-alike technique, language, ...)."""
    source: str | None = None
    """Where the item comes from (a dataset name and version, a file)."""
    packet: tuple[Source, ...] = Field(default=(), validate_default=True)
    """Retrieved sources put in front of the model (grounded items); empty for everything else."""

    @field_validator("messages")
    @classmethod
    def _ends_with_user_turn(cls, messages: tuple[Message, ...]) -> tuple[Message, ...]:
        if messages[-1].role != "user":
            raise ValueError("the last message must have role 'user'")
        if not messages[-1].content.strip():
            raise ValueError("the last user message is empty")
        return messages

    @field_validator("packet")
    @classmethod
    def _packet_fits_expect(cls, packet: tuple[Source, ...], info: ValidationInfo) -> tuple[Source, ...]:
        """A field validator (not a model one) so a loader's error names the field: `packet`."""
        expect = info.data.get("expect")
        if expect is None:  # expect itself failed; that error is reported instead
            return packet
        if expect in NEEDS_PACKET and not packet:
            raise ValueError(f"expect '{expect}' needs a non-empty packet of sources")
        if expect == "comply" and packet:
            raise ValueError("an item with a packet cannot expect 'comply' (a grounded item that should be "
                             "answered expects 'answer')")
        ids = [source.source_id for source in packet]
        duplicates = sorted({source_id for source_id in ids if ids.count(source_id) > 1})
        if duplicates:
            raise ValueError(f"duplicate source_id in the packet: {', '.join(duplicates)}")
        if expect != "answer" and any(source.supports for source in packet):
            raise ValueError(f"only 'answer' items mark sources with 'supports' (this one expects '{expect}')")
        return packet

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

    @property
    def grounded(self) -> bool:
        """Carries a retrieved packet, so it is scored by the grounded contract instead of the refusal rates."""
        return bool(self.packet)


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


def canonical_rows(items: tuple[Item, ...] | list[Item]) -> list[dict[str, object]]:
    """The rows the digest is taken over, sorted by id; an empty packet is left out, so items without one hash
    exactly as they did before packets existed."""
    return [item.model_dump(mode="json", exclude={"packet"} if not item.packet else None)
            for item in sorted(items, key=lambda item: item.id)]


def bench_digest(items: tuple[Item, ...] | list[Item]) -> str:
    """sha256 of the canonical JSON, prefixed with the algorithm."""
    return sha256_digest(canonical_rows(items))
