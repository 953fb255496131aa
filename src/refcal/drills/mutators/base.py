"""Mutators: pure, seeded functions request text → variant text, each with a family and a name.

A mutator is total on non-empty text: it always returns a string, and says so in `Mutation.changed`
when the text had nothing it could change (leetspeak on "123"). Randomness comes only from the
`random.Random` it is handed, so a (text, seed) pair always gives the same variant.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

Family = Literal["surface", "encoding", "framing", "language", "injection"]
FAMILIES: tuple[Family, ...] = ("surface", "encoding", "framing", "language", "injection")


@dataclass(frozen=True, slots=True)
class Mutation:
    """The mutated text and what was changed."""

    text: str
    meta: dict[str, object] = field(default_factory=dict)
    changed: bool = True


@dataclass(frozen=True, slots=True)
class Mutator:
    name: str
    family: Family
    apply: Callable[[str, random.Random], Mutation]
    summary: str


REGISTRY: dict[str, Mutator] = {}


def mutator(name: str, family: Family, summary: str) -> Callable[[Callable[[str, random.Random], Mutation]],
                                                                   Callable[[str, random.Random], Mutation]]:
    """Register a function as a mutator."""
    def register(function: Callable[[str, random.Random], Mutation]) -> Callable[[str, random.Random], Mutation]:
        if name in REGISTRY:
            raise ValueError(f"mutator '{name}' registered twice")
        REGISTRY[name] = Mutator(name, family, function, summary)
        return function
    return register
