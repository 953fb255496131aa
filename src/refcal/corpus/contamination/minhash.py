"""The near layer: character shingles, MinHash signatures cut into LSH bands, and the true Jaccard of each
candidate (the template layer runs the same search over skeleton trigrams)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from refcal.corpus.contamination.base import ContaminationOptions, Found, Pair, Shingles

if TYPE_CHECKING:
    import numpy as np

MISS_AT_THRESHOLD = 1e-3
"""LSH bands are shaped so that a pair exactly at the threshold is missed with at most this chance."""
ESTIMATE_MARGIN = 0.2
"""LSH candidates whose signatures agree on fewer than (threshold − 0.2) of the permutations are dropped before
the exact Jaccard: 0.2 is over four standard deviations of a 128-permutation estimate at any Jaccard."""
ESTIMATE_CHUNK = 1 << 16
"""Candidate pairs whose signatures are compared at once (two 64 MiB arrays)."""
CHUNK_SHINGLES = 1 << 13
"""Shingles per MinHash block: the block's (permutations × shingles) uint64 buffer (8 MiB) is reused, which
measured 14 times faster per shingle than fresh 128 MiB blocks."""
_ROLL = 0x100000001B3
_MIX = (0xBF58476D1CE4E5B9, 0x94D049BB133111EB)


def char_shingles(texts: Sequence[str], size: int) -> Shingles:
    """The hash of every `size`-character window of each text, computed for all texts at once. A text shorter
    than `size` is one shingle, padded."""
    import numpy as np

    padded = [text.ljust(size, "\0") for text in texts]
    lengths = np.fromiter(map(len, padded), dtype=np.int64, count=len(padded))
    counts = lengths - size + 1
    offsets = np.concatenate(([0], np.cumsum(counts))).astype(np.int64)
    if not padded:
        return Shingles(np.zeros(0, dtype=np.uint64), offsets)
    codes = np.frombuffer("".join(padded).encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    windows = len(codes) - size + 1
    rolling = np.zeros(windows, dtype=np.uint64)
    for position in range(size):
        rolling *= np.uint64(_ROLL)
        rolling += codes[position:position + windows]
    starts = np.cumsum(lengths) - lengths
    positions = np.repeat(starts - offsets[:-1], counts) + np.arange(offsets[-1])
    return Shingles(mix(rolling[positions]), offsets)


def minhash(shingles: Shingles, permutations: int, seed: int) -> np.ndarray:
    """(texts, permutations) MinHash signatures; each permutation is x ↦ a·x + b mod 2⁶⁴ with a odd (a bijection
    of the already mixed shingle hashes). Every text must have at least one shingle."""
    import numpy as np

    generator = np.random.default_rng(seed)
    multipliers = generator.integers(0, 2**64 - 1, size=(permutations, 1), dtype=np.uint64, endpoint=True)
    multipliers |= np.uint64(1)
    increments = generator.integers(0, 2**64 - 1, size=(permutations, 1), dtype=np.uint64, endpoint=True)
    hashes, offsets = shingles
    texts = len(offsets) - 1
    signatures = np.empty((texts, permutations), dtype=np.uint64)
    buffer = np.empty((permutations, CHUNK_SHINGLES), dtype=np.uint64)
    first = 0
    while first < texts:
        last = max(int(np.searchsorted(offsets, offsets[first] + CHUNK_SHINGLES, side="right")) - 1, first + 1)
        block = hashes[offsets[first]:offsets[last]]
        values = buffer[:, :len(block)] if len(block) <= CHUNK_SHINGLES else np.empty((permutations, len(block)),
                                                                                       dtype=np.uint64)
        np.multiply(multipliers, block, out=values)
        values += increments
        signatures[first:last] = np.minimum.reduceat(values, offsets[first:last] - offsets[first], axis=1).T
        first = last
    return signatures


def lsh_shape(threshold: float, permutations: int, miss: float = MISS_AT_THRESHOLD) -> tuple[int, int]:
    """(bands, rows per band): the most rows per band (the fewest candidates) for which a pair whose Jaccard is
    exactly `threshold` is missed with chance at most `miss`, i.e. (1 - threshold^rows)^bands ≤ miss."""
    for rows in range(permutations, 1, -1):
        bands = permutations // rows
        if (1 - threshold**rows) ** bands <= miss:
            return bands, rows
    return permutations, 1


def lsh_candidates(query: Shingles, index: Shingles, threshold: float, options: ContaminationOptions
                   ) -> list[Pair]:
    """(query text, index text) pairs that share at least one LSH band and whose signatures agree on at least
    `threshold - ESTIMATE_MARGIN` of their permutations: every pair at or above `threshold` (but for a chance of
    about `MISS_AT_THRESHOLD`), and some below it, to be checked."""
    import numpy as np

    if len(query.offsets) < 2 or len(index.offsets) < 2:
        return []
    bands, rows = lsh_shape(threshold, options.permutations)
    query_signatures = minhash(query, options.permutations, options.seed)
    index_signatures = minhash(index, options.permutations, options.seed)
    firsts, seconds = _shared_keys(_band_keys(query_signatures, bands, rows, options.seed),
                                   _band_keys(index_signatures, bands, rows, options.seed))
    keep = np.zeros(len(firsts), dtype=bool)
    for start in range(0, len(firsts), ESTIMATE_CHUNK):
        window = slice(start, start + ESTIMATE_CHUNK)
        agreement = (query_signatures[firsts[window]] == index_signatures[seconds[window]]).mean(axis=1)
        keep[window] = agreement >= threshold - ESTIMATE_MARGIN
    return list(zip(firsts[keep].tolist(), seconds[keep].tolist(), strict=True))


def near_pairs(corpus: Shingles, bench: Shingles, options: ContaminationOptions, claimed: Found) -> Found:
    """Pairs whose character-shingle Jaccard is ≥ `options.near`, among those not claimed already."""
    corpus_sets, bench_sets = _ShingleSets(corpus), _ShingleSets(bench)
    found: Found = {}
    for pair in lsh_candidates(corpus, bench, options.near, options):
        if pair not in claimed:
            score = jaccard(corpus_sets[pair[0]], bench_sets[pair[1]])
            if score >= options.near:
                found[pair] = ("near", score, None)
    return found


def jaccard(first: set[Any] | frozenset[Any], second: set[Any] | frozenset[Any]) -> float:
    shared = len(first & second)
    return shared / (len(first) + len(second) - shared) if shared else 0.0


def _band_keys(signatures: np.ndarray, bands: int, rows: int, seed: int) -> np.ndarray:
    """(texts, bands) keys: each band's rows folded into one mixed uint64 by a random odd-weighted sum."""
    import numpy as np

    weights = np.random.default_rng(seed + 1).integers(0, 2**64 - 1, size=rows, dtype=np.uint64,
                                                       endpoint=True) | np.uint64(1)
    used = signatures[:, :bands * rows].reshape(len(signatures), bands, rows)
    return mix((used * weights).sum(axis=2, dtype=np.uint64))


def _shared_keys(query_keys: np.ndarray, index_keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct (query, index) row pairs equal in at least one column, by a sorted join per column."""
    import numpy as np

    count = len(index_keys)
    codes = [np.zeros(0, dtype=np.int64)]
    for band in range(query_keys.shape[1]):
        order = np.argsort(index_keys[:, band], kind="stable")
        ordered = index_keys[order, band]
        low = np.searchsorted(ordered, query_keys[:, band], side="left")
        matches = np.searchsorted(ordered, query_keys[:, band], side="right") - low
        total = int(matches.sum())
        if total:
            queries = np.repeat(np.arange(len(matches), dtype=np.int64), matches)
            positions = np.repeat(low - (np.cumsum(matches) - matches), matches) + np.arange(total)
            codes.append(queries * count + order[positions])
    unique = np.unique(np.concatenate(codes))
    return unique // count, unique % count


def mix(values: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: spreads every input bit over the whole word."""
    import numpy as np

    values = values ^ (values >> np.uint64(30))
    values *= np.uint64(_MIX[0])
    values ^= values >> np.uint64(27)
    values *= np.uint64(_MIX[1])
    return values ^ (values >> np.uint64(31))


class _ShingleSets:
    """Python sets of one text's shingle hashes, built on first use (only candidates need them)."""

    def __init__(self, shingles: Shingles) -> None:
        self._shingles = shingles
        self._sets: dict[int, frozenset[int]] = {}

    def __getitem__(self, text: int) -> frozenset[int]:
        found = self._sets.get(text)
        if found is None:
            hashes, offsets = self._shingles
            found = self._sets[text] = frozenset(hashes[offsets[text]:offsets[text + 1]].tolist())
        return found


