"""The shared vocabulary of the contamination layers: hit kinds, the options, the texts and shingle arrays they
pass around, and the pairs they claim."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field

from refcal.bench.items import Item

if TYPE_CHECKING:
    import numpy as np

Kind = Literal["exact", "near", "template", "semantic"]
KINDS: tuple[Kind, ...] = ("exact", "near", "template", "semantic")
"""Strongest first: a corpus text is reported once per bench, under the strongest kind it reached."""
Embed = Callable[[list[str]], "np.ndarray"]
"""Texts → a (len(texts), dimensions) float32 array of unit-length rows."""
Progress = Callable[[str, int, int], None]
"""Called with (layer, done, total) as a slow layer advances."""


class ContaminationOptions(BaseModel):
    """Thresholds and switches of a contamination check."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    near: float = Field(0.8, gt=0, le=1)
    """Jaccard of character-shingle sets at or above which two texts are near duplicates."""
    template: float = Field(0.9, gt=0, le=1)
    """Jaccard of skeleton-shingle sets at or above which two texts share a template."""
    cosine: float = Field(0.84, gt=0, le=1)
    """Cosine of sentence embeddings at or above which two texts are semantic near-neighbours. Measured with
    MiniLM: hand-written paraphrases of bench items 0.66–0.98 (10 of 13 at or above 0.84); the closest texts that
    are not copies, the starter bench's benign/harmful twins and a clean corpus's nearest row, stay ≤ 0.80."""
    semantic: Literal["auto", "on", "off"] = "auto"
    """`auto` runs the semantic layer when an embedding model is at hand and says why not otherwise; `on`
    fails without one; `off` skips it."""
    shingle_size: int = Field(3, ge=1, le=16)
    """Characters per shingle of the near layer."""
    permutations: int = Field(128, ge=8, le=1024)
    """MinHash permutations per signature."""
    seed: int = 1
    """Seed of the MinHash permutations and band keys (results do not depend on it beyond LSH's rare misses)."""




class BenchText(NamedTuple):
    """One user message of a bench item."""

    bench: int
    """Index of the bench in the list checked against."""
    item: Item
    field: str
    text: str


class Shingles(NamedTuple):
    """Every text's shingle hashes, flat, with `offsets[t]:offsets[t + 1]` the slice of text t."""

    hashes: np.ndarray
    offsets: np.ndarray


class Side(NamedTuple):
    """The distinct normalised texts of one side, and which original texts share each."""

    keys: list[str]
    members: list[list[int]]


Pair = tuple[int, int]
"""(distinct corpus text, distinct bench text)."""
Found = dict[Pair, tuple[Kind, float, str | None]]

