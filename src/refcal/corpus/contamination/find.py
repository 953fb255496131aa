"""The combining check: every layer in turn, each claiming the pairs a stronger one left, and the typed report
of what they found."""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict

from refcal.bench.items import Bench
from refcal.corpus.contamination.base import (
    KINDS,
    BenchText,
    ContaminationOptions,
    Embed,
    Found,
    Kind,
    Progress,
    Side,
)
from refcal.corpus.contamination.exact import exact_pairs, normalise
from refcal.corpus.contamination.minhash import char_shingles, near_pairs
from refcal.corpus.contamination.semantic import semantic_layer
from refcal.corpus.contamination.template import template_pairs
from refcal.corpus.reader import CorpusText
from refcal.errors import MissingExtraError


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
        _timed(timings, "semantic", lambda: found.update(semantic_layer(
            corpus, corpus_side, bench_texts, bench_side, len(benches), found, embed, options, progress)))
    hits = assemble_hits(found, corpus, corpus_side, bench_texts, bench_side, benches)
    timings["total"] = time.perf_counter() - started
    return ContaminationReport(
        options=options, corpus_files=list(dict.fromkeys(text.path for text in corpus)), corpus_texts=len(corpus),
        distinct_corpus_texts=len(corpus_side.keys), benches=_summaries(benches, bench_texts), hits=hits,
        counts={kind: sum(1 for hit in hits if hit.kind == kind) for kind in KINDS},
        timings={layer: round(seconds, 3) for layer, seconds in timings.items()}, skipped=skipped)



def bench_user_texts(index: int, bench: Bench) -> list[BenchText]:
    """Every user message of every item: a multi-turn item is checked turn by turn."""
    return [BenchText(index, item, f"messages.{number}.content", message.content)
            for item in bench.items for number, message in enumerate(item.messages) if message.role == "user"]


def _group(texts: Iterable[str]) -> Side:
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
    return Side(list(slots), members)


def assemble_hits(found: Found, corpus: Sequence[CorpusText], corpus_side: Side, bench_texts: Sequence[BenchText],
                  bench_side: Side, benches: Sequence[Bench]) -> list[Hit]:
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
