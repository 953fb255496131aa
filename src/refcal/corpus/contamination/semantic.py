"""The semantic layer: cosine of unit-length sentence embeddings, in chunked numpy matrix products."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from refcal.corpus.contamination.base import (
    BenchText,
    ContaminationOptions,
    Embed,
    Found,
    Pair,
    Progress,
    Side,
)
from refcal.corpus.reader import CorpusText

if TYPE_CHECKING:
    import numpy as np

EMBED_CHUNK = 2048
"""Corpus texts embedded and compared per step (a progress report after each)."""
EMBED_CHARACTERS = 256
"""The semantic layer compares texts' first 256 characters (about 60 MiniLM tokens), since its cost grows with
length; bench prompts are mostly shorter than that."""


def semantic_pairs(corpus_texts: Sequence[str], bench_texts: Sequence[str], embed: Embed, cosine: float,
                   progress: Progress | None = None) -> dict[Pair, float]:
    """(corpus index, bench index) → cosine, for pairs at or above `cosine`. The corpus is embedded in chunks,
    each compared with every bench text in one matrix product."""
    import numpy as np

    if not corpus_texts or not bench_texts:
        return {}
    bench_vectors = np.zeros((0, 0), dtype=np.float32)
    for indices, vectors in _embedded(bench_texts, embed, "semantic, bench", progress):
        if not bench_vectors.size:
            bench_vectors = np.empty((len(bench_texts), vectors.shape[1]), dtype=np.float32)
        bench_vectors[indices] = vectors
    found: dict[Pair, float] = {}
    for indices, vectors in _embedded(corpus_texts, embed, "semantic, corpus", progress):
        similarities = vectors @ bench_vectors.T
        for row, column in zip(*np.nonzero(similarities >= cosine), strict=True):
            found[(indices[row], int(column))] = float(similarities[row, column])
    return found


def _embedded(texts: Sequence[str], embed: Embed, layer: str, progress: Progress | None
              ) -> Iterator[tuple[list[int], np.ndarray]]:
    """(indices, their embeddings) chunk by chunk, shortest texts first so that batches pad little."""
    import numpy as np

    order = sorted(range(len(texts)), key=lambda index: len(texts[index]))
    for start in range(0, len(order), EMBED_CHUNK):
        chunk = order[start:start + EMBED_CHUNK]
        yield chunk, np.asarray(embed([texts[index] for index in chunk]), dtype=np.float32)
        if progress is not None:
            progress(layer, start + len(chunk), len(order))


def semantic_layer(corpus: Sequence[CorpusText], corpus_side: Side, bench_texts: Sequence[BenchText],
                    bench_side: Side, benches: int, claimed: Found, embed: Embed, options: ContaminationOptions,
                    progress: Progress | None) -> Found:
    """Semantic pairs for the distinct corpus texts that some bench has not matched yet (a text already hit
    in every bench would only be reported again)."""
    hit_benches: dict[int, set[int]] = {}
    for first, second in claimed:
        hit_benches.setdefault(first, set()).update(bench_texts[member].bench for member in bench_side.members[second])
    pending = [index for index in range(len(corpus_side.keys)) if len(hit_benches.get(index, ())) < benches]
    scores = semantic_pairs([corpus[corpus_side.members[index][0]].text[:EMBED_CHARACTERS] for index in pending],
                            [bench_texts[members[0]].text[:EMBED_CHARACTERS] for members in bench_side.members],
                            embed, options.cosine, progress)
    return {(pending[first], second): ("semantic", score, None) for (first, second), score in scores.items()
            if (pending[first], second) not in claimed}

