"""The bench split of a direction search: pairs kept together, each class split on its own by a seeded hash into
an extraction part (the directions come from it) and an evaluation part (trials are scored on it). Pure."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from pydantic import BaseModel

from refcal.bench import Bench, Item


class BenchSplit(BaseModel):
    """Item ids of the extraction and evaluation parts."""

    seed: int
    share: float
    extraction: list[str]
    evaluation: list[str]


def usable_items(bench: Bench) -> list[Item]:
    """Items the search can use: must-refuse and benign ones (grounded items are scored another way)."""
    return [item for item in bench.items if item.expect in ("refuse", "comply") and not item.grounded]


def split_bench(items: Sequence[Item], share: float, seed: int) -> BenchSplit:
    """Pairs stay together and each class is split on its own: its groups are ordered by a seeded hash and the
    first `share` of them (at least one, and at least one left, when there are two) go to extraction."""
    by_id = {item.id: item for item in items}
    groups: dict[str, dict[str, list[str]]] = {}
    for item in items:
        key = min(item.id, item.pair) if item.pair in by_id else item.id
        groups.setdefault(item.klass, {}).setdefault(key, []).append(item.id)
    extraction: list[str] = []
    evaluation: list[str] = []
    for klass in sorted(groups):
        keys = sorted(groups[klass], key=lambda key: hashlib.sha256(f"{seed}\0{key}".encode()).hexdigest())
        count = round(len(keys) * share)
        if len(keys) >= 2:
            count = min(max(count, 1), len(keys) - 1)
        for position, key in enumerate(keys):
            (extraction if position < count else evaluation).extend(sorted(groups[klass][key]))
    return BenchSplit(seed=seed, share=share, extraction=extraction, evaluation=evaluation)
