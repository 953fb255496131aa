"""The exact layer: texts equal after `normalise`, found by a dict lookup in plain Python (no numpy)."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

from refcal.corpus.contamination.base import Pair

_APOSTROPHES = re.compile(r"['’`´]")
_SEPARATORS = re.compile(r"[\W_]+")


def normalise(text: str) -> str:
    """NFKC, casefold, apostrophes dropped ("don't" → "dont"), every other run of punctuation, symbols or
    whitespace turned into one space."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return _SEPARATORS.sub(" ", _APOSTROPHES.sub("", text)).strip()



# Exact.

def exact_pairs(corpus_keys: Sequence[str], bench_keys: Sequence[str]) -> list[Pair]:
    """Pairs of equal normalised texts."""
    positions = {key: index for index, key in enumerate(bench_keys)}
    return [(index, positions[key]) for index, key in enumerate(corpus_keys) if key in positions]


