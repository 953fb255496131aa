"""The mutator library: `REGISTRY` maps each name to its mutator; `select` reads a --mutators spec;
`apply_chain` runs a chain with one seed."""

from __future__ import annotations

import random

from refcal.drills.mutators import encoding, framing, surface  # noqa: F401  (registers the mutators)
from refcal.drills.mutators.base import FAMILIES, REGISTRY, Family, Mutation, Mutator
from refcal.errors import MutatorError

__all__ = ["FAMILIES", "REGISTRY", "Family", "Mutation", "Mutator", "apply_chain", "family_of", "select"]


def select(spec: str) -> tuple[str, ...]:
    """Mutator names from a comma-separated list of names and family names ("surface,base64,roleplay"),
    or "all"; in registry order, without duplicates."""
    wanted: set[str] = set()
    for part in (part.strip() for part in spec.split(",")):
        if not part:
            continue
        if part == "all":
            wanted.update(REGISTRY)
        elif part in FAMILIES:
            wanted.update(name for name, found in REGISTRY.items() if found.family == part)
        elif part in REGISTRY:
            wanted.add(part)
        else:
            raise MutatorError(f"unknown mutator or family '{part}' (families: {', '.join(FAMILIES)}; "
                               f"mutators: {', '.join(REGISTRY)})")
    if not wanted:
        raise MutatorError(f"--mutators '{spec}' names no mutator")
    return tuple(name for name in REGISTRY if name in wanted)


def apply_chain(text: str, chain: tuple[str, ...], seed: int) -> tuple[str, list[Mutation]]:
    """Apply the chain in order (typo∘roleplay∘base64: typos, then the frame, then the encoding), all
    drawing from one generator seeded with `seed`."""
    rng = random.Random(seed)
    steps = []
    for name in chain:
        try:
            mutator = REGISTRY[name]
        except KeyError:
            raise MutatorError(f"unknown mutator '{name}' in chain {'∘'.join(chain)}") from None
        step = mutator.apply(text, rng)
        steps.append(step)
        text = step.text
    return text, steps


def family_of(name: str) -> Family:
    return REGISTRY[name].family
