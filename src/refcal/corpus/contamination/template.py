"""The template layer: the same MinHash search over skeletons (function words kept, every run of other words
one `_`), with a content word in common and not already a near duplicate."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from refcal.corpus.contamination.base import ContaminationOptions, Found, Shingles
from refcal.corpus.contamination.minhash import jaccard, lsh_candidates, mix

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
    return Shingles(mix(hashes), np.concatenate(([0], np.cumsum(counts))).astype(np.int64))


class _Cached:
    """A function of each key, computed on first use."""

    def __init__(self, keys: Sequence[str], function: Callable[[str], frozenset[str]]) -> None:
        self._keys, self._function, self._values = keys, function, {}

    def __getitem__(self, index: int) -> frozenset[str]:
        if index not in self._values:
            self._values[index] = self._function(self._keys[index])
        return self._values[index]

