"""Variants and drill plans: what is sent, with its lineage back to the seed item.

This issue's plan sends each item as written (the identity variant); mutators add variants whose ids
extend the seed's, so resume and cache work per variant.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator

from pydantic import BaseModel, ConfigDict

from refcal.bench.items import Bench, Expect, Item, Message


class Variant(BaseModel):
    """One concrete request derived from a seed item."""

    model_config = ConfigDict(frozen=True)

    id: str
    """Stable across runs: the item id, plus a digest of the mutator chain and seed for mutated variants."""
    item_id: str
    """The seed item."""
    messages: tuple[Message, ...]
    """Exactly what is sent."""
    expect: Expect
    klass: str
    pair: str | None = None
    chain: tuple[str, ...] = ()
    """Mutators applied, in order; empty for the item as written."""
    seed: int | None = None
    """Seed the chain was applied with."""

    @property
    def prompt(self) -> str:
        return self.messages[-1].content


def identity_variant(item: Item) -> Variant:
    """The item as written."""
    return Variant(id=item.id, item_id=item.id, messages=item.messages, expect=item.expect, klass=item.klass,
                   pair=item.pair)


def plan_variants(bench: Bench, limit: int | None = None, skip: Iterable[str] = ()) -> Iterator[Variant]:
    """Yield the variants of a drill lazily, leaving out ids in `skip` (already done when resuming).

    Items are taken round-robin over classes (pairs kept adjacent), so `limit` N gives a slice that
    covers every class and both sides instead of the first class only.
    """
    done = set(skip)
    items = drill_order(bench.items)
    for item in items if limit is None else items[:limit]:
        variant = identity_variant(item)
        if variant.id not in done:
            yield variant


def drill_order(items: tuple[Item, ...]) -> list[Item]:
    """Round-robin over classes in first-seen order; within a class, file order with each item's
    pair pulled in right after it."""
    by_class: dict[str, list[Item]] = {}
    placed: set[str] = set()
    index = {item.id: item for item in items}
    for item in items:
        if item.id in placed:
            continue
        group = by_class.setdefault(item.klass, [])
        for member in (item, index.get(item.pair) if item.pair else None):
            if member is not None and member.id not in placed and member.klass == item.klass:
                group.append(member)
                placed.add(member.id)
    for item in items:  # a pair across classes: its twin was skipped above
        if item.id not in placed:
            by_class.setdefault(item.klass, []).append(item)
            placed.add(item.id)
    ordered: list[Item] = []
    queues = [list(group) for group in by_class.values()]
    while any(queues):
        for queue in queues:
            take = 2 if len(queue) > 1 and queue[0].pair == queue[1].id else 1
            ordered.extend(queue[:take])
            del queue[:take]
    return ordered


def request_key(fingerprint_key: str, messages: tuple[Message, ...]) -> str:
    """Cache key: the same messages to the same target fingerprint."""
    blob = json.dumps([fingerprint_key, [message.model_dump() for message in messages]],
                      ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()
