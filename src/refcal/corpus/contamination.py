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

from __future__ import annotations

import importlib.util
import re
import time
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field

from refcal.bench.items import Bench, Item
from refcal.corpus.reader import CorpusText
from refcal.errors import MissingExtraError

if TYPE_CHECKING:
    import numpy as np

Kind = Literal["exact", "near", "template", "semantic"]
KINDS: tuple[Kind, ...] = ("exact", "near", "template", "semantic")
"""Strongest first: a corpus text is reported once per bench, under the strongest kind it reached."""
Embed = Callable[[list[str]], "np.ndarray"]
"""Texts → a (len(texts), dimensions) float32 array of unit-length rows."""
Progress = Callable[[str, int, int], None]
"""Called with (layer, done, total) as a slow layer advances."""

_FRAME_LIST = """
    a an the this that these those my your his her its our their some any no every each all both either neither
    much many more most few less least other another such what which whose who whom whatever whoever
    i me you he him she it we us they them myself yourself himself herself itself ourselves yourselves
    themselves mine yours hers ours theirs one someone somebody something anyone anybody anything everyone
    everybody everything nobody nothing none
    about above across after against along among around as at before behind below beneath beside besides between
    beyond by despite down during except for from in inside into like near of off on onto out outside over past
    per since than through throughout till to toward towards under underneath unlike until up upon via with
    within without
    and but or nor so yet if because although though while whereas unless whether once when whenever where
    wherever how why then
    am is are was were be been being do does did doing done have has had having can could will would shall
    should may might must ought
    not very too also just only even still already again ever never always often sometimes here there now quite
    rather really almost enough please
    im ive id youre youve youd youll hes shes thats whats whos wheres theres theyre theyve weve isnt arent
    wasnt werent dont doesnt didnt cant couldnt wont wouldnt shouldnt havent hasnt hadnt lets
    make makes made get gets got give gives gave take takes took use uses used go goes went put let keep find
    tell tells told show shows write writes wrote explain explains describe describes help need needs want wants
    know think say says said
    best better good great easiest easy quickest fastest safest simplest cheapest way ways method methods mean means
    meaning definition define example examples step steps thing things kind sort lot bit tip tips idea ideas
"""
FRAME_WORDS = frozenset(_FRAME_LIST.split())
"""The closed list a skeleton keeps: English function words, contractions as `normalise` leaves them, the light
verbs that carry an instruction's frame ("write me a", "how do I make") and the generic words of a request
("what's the best way to", "what is the definition of"), so that two requests sharing only those are not taken
for one template: a template hit needs a topic word in common too."""
MIN_FRAME_WORDS = 4
"""Shorter frames (`how do i _`) are ordinary English, not a template."""
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
EMBED_CHUNK = 2048
"""Corpus texts embedded and compared per step (a progress report after each)."""
EMBED_CHARACTERS = 256
"""The semantic layer compares texts' first 256 characters (about 60 MiniLM tokens), since its cost grows with
length; bench prompts are mostly shorter than that."""
_ROLL = 0x100000001B3
_MIX = (0xBF58476D1CE4E5B9, 0x94D049BB133111EB)


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


class Hit(BaseModel):
    """A corpus text that meets a frozen bench item."""

    model_config = ConfigDict(frozen=True)

    kind: Kind
    """The strongest layer that matched this corpus text in this bench."""
    score: float
    """1.0 for exact; Jaccard of texts (near) or of skeletons (template); cosine (semantic)."""
    corpus_path: str
    """The corpus file."""
    corpus_line: int
    """The row's line in it (1-based)."""
    corpus_field: str
    """Where the text sits in its row (`messages.0.content`, `prompt`, `text`)."""
    corpus_text: str
    """The corpus text as written."""
    bench: str
    """The frozen bench's name."""
    item_id: str
    """The bench item matched (the best one, when several were)."""
    item_class: str
    """Its class: templated hits show which classes a corpus has met."""
    item_text: str
    """The bench item's user message that was matched."""
    template: str | None = None
    """For template hits, the bench item's skeleton (`how do i _ a _`)."""
    also_matched: int = 0
    """Further items of the same bench this corpus text matched (not listed separately)."""


class BenchSummary(BaseModel):
    """A bench the corpus was checked against."""

    name: str
    digest: str
    """The digest the bench was checked at (equal to its lock's)."""
    items: int
    texts: int
    """User messages compared (an item may hold several)."""


class ContaminationReport(BaseModel):
    """What a contamination check found, how long each layer took, and which layers did not run."""

    options: ContaminationOptions
    corpus_files: list[str]
    corpus_texts: int
    """User-side texts read (a chat row may hold several)."""
    distinct_corpus_texts: int
    """After normalisation; each is compared once and reported at every place it occurs."""
    benches: list[BenchSummary]
    hits: list[Hit]
    """One per (corpus text, bench), strongest kind first, then by file and line."""
    counts: dict[Kind, int]
    """Hits per kind, every kind listed."""
    timings: dict[str, float]
    """Seconds per layer, plus `total`."""
    skipped: dict[str, str]
    """Layer → why it did not run; every layer that did not run is named here, never left out silently."""

    def exceeds(self, max_hits: int) -> bool:
        """True when there are more hits than allowed."""
        return len(self.hits) > max_hits


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


class _Side(NamedTuple):
    """The distinct normalised texts of one side, and which original texts share each."""

    keys: list[str]
    members: list[list[int]]


Pair = tuple[int, int]
"""(distinct corpus text, distinct bench text)."""
Found = dict[Pair, tuple[Kind, float, str | None]]


def find_contamination(corpus: Sequence[CorpusText], benches: Sequence[Bench],
                       options: ContaminationOptions | None = None, embed: Embed | None = None, *,
                       no_embed_reason: str = "no embedding model was given",
                       progress: Progress | None = None) -> ContaminationReport:
    """Check every corpus text against every user message of every bench, layer by layer.

    Args:
        corpus: The corpus's user-side texts (see `refcal.corpus.reader`).
        benches: The frozen benches.
        options: Thresholds and switches.
        embed: Sentence embeddings for the semantic layer; None skips it (an error when it is `on`).
        no_embed_reason: What the report says when `embed` is None and the layer is not `off`.
        progress: Told how the semantic layer advances.

    Example:
        >>> report = find_contamination(read_corpora(["train.jsonl"]), [load_bench("starter")])
        >>> [(hit.kind, hit.corpus_line, hit.item_id) for hit in report.hits]
    """
    options = options or ContaminationOptions()
    if options.semantic == "on" and embed is None:
        raise MissingExtraError(f"the semantic layer was asked for but cannot run: {no_embed_reason}")
    timings: dict[str, float] = {}
    skipped: dict[str, str] = {}
    started = time.perf_counter()
    bench_texts = [text for index, bench in enumerate(benches) for text in bench_user_texts(index, bench)]
    corpus_side = _group(text.text for text in corpus)
    bench_side = _group(text.text for text in bench_texts)
    timings["normalise"] = time.perf_counter() - started
    found: Found = {}
    _timed(timings, "exact", lambda: found.update(
        {pair: ("exact", 1.0, None) for pair in exact_pairs(corpus_side.keys, bench_side.keys)}))
    numpy_missing = _numpy_missing()
    if numpy_missing:
        skipped["near"] = skipped["template"] = numpy_missing
    else:
        _timed(timings, "near", lambda: found.update(near_pairs(
            char_shingles(corpus_side.keys, options.shingle_size), char_shingles(bench_side.keys, options.shingle_size),
            options, found)))
        _timed(timings, "template", lambda: found.update(
            template_pairs(corpus_side.keys, bench_side.keys, options, found)))
    if options.semantic == "off":
        skipped["semantic"] = "turned off"
    elif embed is None or numpy_missing:
        skipped["semantic"] = no_embed_reason if embed is None else str(numpy_missing)
    else:
        _timed(timings, "semantic", lambda: found.update(_semantic_layer(
            corpus, corpus_side, bench_texts, bench_side, len(benches), found, embed, options, progress)))
    hits = assemble_hits(found, corpus, corpus_side, bench_texts, bench_side, benches)
    timings["total"] = time.perf_counter() - started
    return ContaminationReport(
        options=options, corpus_files=list(dict.fromkeys(text.path for text in corpus)), corpus_texts=len(corpus),
        distinct_corpus_texts=len(corpus_side.keys), benches=_summaries(benches, bench_texts), hits=hits,
        counts={kind: sum(1 for hit in hits if hit.kind == kind) for kind in KINDS},
        timings={layer: round(seconds, 3) for layer, seconds in timings.items()}, skipped=skipped)


# Texts and normalisation.

_APOSTROPHES = re.compile(r"['’`´]")
_SEPARATORS = re.compile(r"[\W_]+")


def normalise(text: str) -> str:
    """NFKC, casefold, apostrophes dropped ("don't" → "dont"), every other run of punctuation, symbols or
    whitespace turned into one space."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return _SEPARATORS.sub(" ", _APOSTROPHES.sub("", text)).strip()


def bench_user_texts(index: int, bench: Bench) -> list[BenchText]:
    """Every user message of every item: a multi-turn item is checked turn by turn."""
    return [BenchText(index, item, f"messages.{number}.content", message.content)
            for item in bench.items for number, message in enumerate(item.messages) if message.role == "user"]


def _group(texts: Iterable[str]) -> _Side:
    """Distinct normalised texts in first-seen order; a text with nothing but punctuation is left out."""
    slots: dict[str, int] = {}
    members: list[list[int]] = []
    for position, text in enumerate(texts):
        key = normalise(text)
        if not key:
            continue
        slot = slots.setdefault(key, len(members))
        if slot == len(members):
            members.append([])
        members[slot].append(position)
    return _Side(list(slots), members)


# Exact.

def exact_pairs(corpus_keys: Sequence[str], bench_keys: Sequence[str]) -> list[Pair]:
    """Pairs of equal normalised texts."""
    positions = {key: index for index, key in enumerate(bench_keys)}
    return [(index, positions[key]) for index, key in enumerate(corpus_keys) if key in positions]


# Near: shingles, MinHash, LSH.

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
    return Shingles(_mix(rolling[positions]), offsets)


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
    return _mix((used * weights).sum(axis=2, dtype=np.uint64))


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


def _mix(values: np.ndarray) -> np.ndarray:
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


# Template.

_FRAME_IDS = {word: number for number, word in enumerate(sorted(FRAME_WORDS), start=1)}


def skeleton(normalised: str) -> tuple[str, ...]:
    """Function words kept, every run of other words as one `_`: "how do i kill a python process" →
    (how, do, i, _, a, _)."""
    tokens: list[str] = []
    for word in normalised.split():
        token = word if word in FRAME_WORDS else "_"
        if token != "_" or not tokens or tokens[-1] != "_":
            tokens.append(token)
    return tuple(tokens)


def content_words(normalised: str) -> frozenset[str]:
    """The fillers: words outside the frame list, without numbers and single letters."""
    return frozenset(word for word in normalised.split()
                     if word not in FRAME_WORDS and len(word) > 1 and not word.isdigit())


def template_pairs(corpus_keys: Sequence[str], bench_keys: Sequence[str], options: ContaminationOptions,
                   claimed: Found) -> Found:
    """Pairs with near-identical skeletons and a content word in common, among those not claimed already; the
    near layer has claimed the near duplicates, so what is left shares a template but not its fillers."""
    corpus_frames, bench_frames = _frames(corpus_keys), _frames(bench_keys)
    corpus_list, bench_list = list(corpus_frames), list(bench_frames)
    corpus_trigrams, bench_trigrams = [_trigrams(frame) for frame in corpus_list], [_trigrams(frame) for frame
                                                                                   in bench_list]
    candidates = lsh_candidates(_trigram_shingles(corpus_trigrams), _trigram_shingles(bench_trigrams),
                                options.template, options)
    corpus_words, bench_words = _Cached(corpus_keys, content_words), _Cached(bench_keys, content_words)
    found: Found = {}
    for corpus_frame, bench_frame in candidates:
        score = jaccard(corpus_trigrams[corpus_frame], bench_trigrams[bench_frame])
        if score < options.template:
            continue
        template = " ".join(bench_list[bench_frame])
        for first in corpus_frames[corpus_list[corpus_frame]]:
            for second in bench_frames[bench_list[bench_frame]]:
                if (first, second) not in claimed and corpus_words[first] & bench_words[second]:
                    found[(first, second)] = ("template", score, template)
    return found


def _frames(keys: Sequence[str]) -> dict[tuple[str, ...], list[int]]:
    """Skeleton → the texts that have it, for skeletons with enough frame words and at least one filler."""
    frames: dict[tuple[str, ...], list[int]] = {}
    for index, key in enumerate(keys):
        frame = skeleton(key)
        if "_" in frame and len(frame) - frame.count("_") >= MIN_FRAME_WORDS:
            frames.setdefault(frame, []).append(index)
    return frames


def _trigrams(frame: tuple[str, ...]) -> frozenset[int]:
    """Token trigrams packed into ints (10 bits a token: the frame list has ~330 words, `_` is 0). Frames kept by
    `_frames` have at least five tokens, so every set is non-empty, as `minhash` needs."""
    ids = [_FRAME_IDS.get(token, 0) for token in frame]
    triples = zip(ids, ids[1:], ids[2:], strict=False)
    return frozenset((first << 20) | (second << 10) | third for first, second, third in triples)


def _trigram_shingles(sets: Sequence[frozenset[int]]) -> Shingles:
    import numpy as np

    counts = np.fromiter(map(len, sets), dtype=np.int64, count=len(sets))
    hashes = np.fromiter((value for values in sets for value in values), dtype=np.uint64, count=int(counts.sum()))
    return Shingles(_mix(hashes), np.concatenate(([0], np.cumsum(counts))).astype(np.int64))


class _Cached:
    """A function of each key, computed on first use."""

    def __init__(self, keys: Sequence[str], function: Callable[[str], frozenset[str]]) -> None:
        self._keys, self._function, self._values = keys, function, {}

    def __getitem__(self, index: int) -> frozenset[str]:
        if index not in self._values:
            self._values[index] = self._function(self._keys[index])
        return self._values[index]


# Semantic.

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


def _semantic_layer(corpus: Sequence[CorpusText], corpus_side: _Side, bench_texts: Sequence[BenchText],
                    bench_side: _Side, benches: int, claimed: Found, embed: Embed, options: ContaminationOptions,
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


# The report.

def assemble_hits(found: Found, corpus: Sequence[CorpusText], corpus_side: _Side, bench_texts: Sequence[BenchText],
                  bench_side: _Side, benches: Sequence[Bench]) -> list[Hit]:
    """One hit per (corpus text, bench): the strongest kind, then the highest score; repeated at every place
    the corpus text occurs."""
    best: dict[tuple[int, int], tuple[int, float, int, str | None]] = {}
    matched: dict[tuple[int, int], set[str]] = {}
    for (first, second), (kind, score, template) in found.items():
        for member in bench_side.members[second]:
            key = (first, bench_texts[member].bench)
            matched.setdefault(key, set()).add(bench_texts[member].item.id)
            candidate = (KINDS.index(kind), -score, member, template)
            if key not in best or candidate[:3] < best[key][:3]:
                best[key] = candidate
    hits = []
    for (first, bench), (rank, negative_score, member, template) in best.items():
        target = bench_texts[member]
        for position in corpus_side.members[first]:
            text = corpus[position]
            hits.append(Hit(kind=KINDS[rank], score=round(-negative_score, 4), corpus_path=text.path,
                            corpus_line=text.line, corpus_field=text.field, corpus_text=text.text,
                            bench=benches[bench].name, item_id=target.item.id, item_class=target.item.klass,
                            item_text=target.text, template=template,
                            also_matched=len(matched[(first, bench)]) - 1))
    return sorted(hits, key=lambda hit: (KINDS.index(hit.kind), hit.corpus_path, hit.corpus_line, hit.bench))


def _summaries(benches: Sequence[Bench], bench_texts: Sequence[BenchText]) -> list[BenchSummary]:
    return [BenchSummary(name=bench.name, digest=bench.digest, items=len(bench.items),
                         texts=sum(1 for text in bench_texts if text.bench == index))
            for index, bench in enumerate(benches)]


def _timed(timings: dict[str, float], layer: str, work: Callable[[], Any]) -> Any:
    """Run `work`, adding its wall time to the layer's."""
    started = time.perf_counter()
    try:
        return work()
    finally:
        timings[layer] = timings.get(layer, 0.0) + time.perf_counter() - started


def _numpy_missing() -> str | None:
    if importlib.util.find_spec("numpy") is None:
        return "numpy is not installed (it comes with the hf extra: pip install 'refcal[hf]')"
    return None
