"""Contamination of a training corpus by frozen benches: pure functions over texts that return a typed report.

Four layers. Each claims the (corpus text, bench item) pairs that a stronger layer has not claimed already:

- **exact**: equal after `normalise` (NFKC, casefold, apostrophes dropped, every other run of punctuation or
  whitespace turned into one space). A dict lookup in plain Python, so it runs without numpy.
- **near**: Jaccard similarity of the texts' character 3-gram sets ≥ `near` (default 0.8). On the starter
  bench's 91-character median prompt, 0.8 keeps 100 % of copies with two typos and 96 % with one word swapped,
  while the closest two distinct items (the benign/harmful twins) reach 0.45. The candidates come from MinHash
  signatures (128 permutations) cut into LSH bands; the true Jaccard is computed for each candidate.
- **template**: the same search over *skeletons*, where function words stay and every run of other words
  becomes `_`: "How do I kill a Python process?" and "How do I kill a Java thread?" both read `how do i _ a
  _`. A hit needs skeleton Jaccard ≥ `template`, a frame of at least four function words, a content word in
  common (otherwise "How do I bake a cake?" would match every `how do i _ a _` item), and texts that are not
  near duplicates: the same template with other fillers.
- **semantic**: cosine of unit-length sentence embeddings ≥ `cosine`, in chunked numpy matrix products.

Why a MinHash of our own: datasketch needs scipy and hashes each shingle in a Python loop. Here the 3-grams of
all texts are hashed at once by a rolling polynomial over UTF-32 code points, each permutation is a uint64
multiply-add, and the minimum per text is one `np.minimum.reduceat`: some sixty lines, no new dependency.
numpy comes with the `hf` extra; without it, near and template are skipped and the report says why.

Not found by any layer: a bench prompt buried inside a much longer corpus text (Jaccard and cosine both fall
with the length difference), and a short text with most of its words misspelt.

Nothing here reads a file or loads a model: corpus texts, benches and an embedding function are handed in.
"""

from refcal.corpus.contamination.base import (
    KINDS,
    BenchText,
    ContaminationOptions,
    Embed,
    Found,
    Kind,
    Pair,
    Progress,
    Shingles,
)
from refcal.corpus.contamination.exact import exact_pairs, normalise
from refcal.corpus.contamination.find import (
    BenchSummary,
    ContaminationReport,
    Hit,
    assemble_hits,
    bench_user_texts,
    find_contamination,
)
from refcal.corpus.contamination.minhash import char_shingles, jaccard, lsh_candidates, lsh_shape, minhash, near_pairs
from refcal.corpus.contamination.semantic import semantic_pairs
from refcal.corpus.contamination.template import FRAME_WORDS, MIN_FRAME_WORDS, content_words, skeleton, template_pairs

__all__ = [
    "FRAME_WORDS",
    "KINDS",
    "MIN_FRAME_WORDS",
    "BenchSummary",
    "BenchText",
    "ContaminationOptions",
    "ContaminationReport",
    "Embed",
    "Found",
    "Hit",
    "Kind",
    "Pair",
    "Progress",
    "Shingles",
    "assemble_hits",
    "bench_user_texts",
    "char_shingles",
    "content_words",
    "exact_pairs",
    "find_contamination",
    "jaccard",
    "lsh_candidates",
    "lsh_shape",
    "minhash",
    "near_pairs",
    "normalise",
    "semantic_pairs",
    "skeleton",
    "template_pairs",
]
