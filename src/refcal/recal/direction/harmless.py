"""The built-in harmless instructions (`data/harmless.txt`, one per line): ordinary requests with nothing refusable
in them, written for refcal. The first half feeds the refusal direction's harmless mean, the second half the KL
measure, so the search is not scored on its own inputs."""

from __future__ import annotations

import hashlib
from importlib import resources

HARMLESS_INSTRUCTIONS: tuple[str, ...] = tuple(
    (resources.files("refcal.recal.direction") / "data" / "harmless.txt").read_text(encoding="utf-8").splitlines())


def harmless_digest(count: int) -> str:
    """sha256 of the first `2 × count` instructions, the ones a search with `harmless_prompts = count` uses."""
    return "sha256:" + hashlib.sha256("\n".join(HARMLESS_INSTRUCTIONS[:2 * count]).encode()).hexdigest()
