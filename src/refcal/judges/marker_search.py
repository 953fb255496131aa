"""The markers lane's fast path: one search for the literals its patterns need decides which patterns can match
a response at all, so a response in which no refusal phrase can occur skips the phrase search.

Every marker pattern declares, beside it in refcal.judges.markers, folded strings one of which any text it
matches contains (tests/test_markers.py reads them off the compiled patterns and checks the declarations). The
haystack is folded the same way: case-folded as `re.IGNORECASE` compares characters (lowercase, plus the few
characters re treats as equal to another, such as 'ſ' and 's'), whitespace runs collapsed (a run with a line
break to one "\\n", others to one space), with a line break before it, so a `^` (a sentence start in the
markers lane) is "a line break, or [.!?] and a space, before it".
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

FOLD = {0x131: 0x69, 0x17f: 0x73, 0x3b9: 0x345, 0x3bc: 0xb5, 0x3c3: 0x3c2, 0x3d0: 0x3b2, 0x3d1: 0x3b8, 0x3d5: 0x3c6,
        0x3d6: 0x3c0, 0x3f0: 0x3ba, 0x3f1: 0x3c1, 0x3f5: 0x3b5, 0x1c80: 0x432, 0x1c81: 0x434, 0x1c82: 0x43e,
        0x1c83: 0x441, 0x1c84: 0x442, 0x1c85: 0x442, 0x1c86: 0x44a, 0x1c87: 0x463, 0x1e9b: 0x1e61, 0x1fbe: 0x345,
        0x1fd3: 0x390, 0x1fe3: 0x3b0, 0xa64b: 0x1c88, 0xfb06: 0xfb05}
"""Lowercase characters re.IGNORECASE treats as equal to another → the smallest of their group (Python's
`re._casefix` table, written out; tests/test_markers.py checks it against the running Python's)."""
_FOLDED = re.compile("[" + "".join(re.escape(chr(code)) for code in FOLD) + "]")
_WORD = re.compile(r"\w")


@dataclass(frozen=True)
class Literals:
    """Strings one of which every match of a pattern contains (folded); `word_start`: each starts where the
    pattern has a `\\b` before a word character, so it is looked for only after a non-word character."""

    strings: frozenset[str]
    word_start: bool = False


def at_word_start(*strings: str) -> Literals:
    return Literals(frozenset(strings), True)


def anywhere(*strings: str) -> Literals:
    return Literals(frozenset(strings), False)


def fold(text: str) -> str:
    """Lowercase `text` the way re.IGNORECASE compares it, and collapse whitespace runs (see the module doc)."""
    if text.isascii():
        text = text.lower()
    else:
        # 'İ' lowercases to two characters with str.lower; re compares it as 'i'.
        text = text.replace("\u0130", "i").lower()
        if _FOLDED.search(text):
            text = text.translate(FOLD)
    if "\n" not in text:
        return " ".join(text.split())
    return "\n".join(filter(None, (" ".join(line.split()) for line in text.split("\n"))))


def inside(text: str, other: str, word_start: bool) -> bool:
    """`other` occurs in `text` (at a word start within it, when `other` is only looked for there)."""
    index = text.find(other)
    while index >= 0:
        if not word_start or index == 0 or not _WORD.match(text[index - 1]):
            return True
        index = text.find(other, index + 1)
    return False


def _trie(strings: Iterable[str]) -> str | None:
    """A regex for 'any of these strings' (none a prefix of another) as a trie: each position tries one branch
    per character instead of every string."""
    trie: dict[str, dict] = {}
    for text in strings:
        node = trie
        for char in text:
            node = node.setdefault(char, {})
        node[""] = {}

    def build(node: dict[str, dict]) -> str:
        if "" in node:
            return ""
        branches = [re.escape(char) + build(child) for char, child in sorted(node.items())]
        return branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"

    return build(trie) if trie else None


@dataclass(frozen=True)
class Search:
    """`first` finds whether any string occurs (fast: no capture); `every` finds every occurrence, overlapping
    ones included (a lookahead at each position), for when one does."""

    first: re.Pattern[str]
    every: re.Pattern[str]

    @classmethod
    def of(cls, strings: Iterable[str], word_start: bool) -> Search | None:
        trie = _trie(strings)
        if trie is None:
            return None
        # \W before a literal that starts with a word character is the `\b` it followed; the haystack starts
        # with a line break, so a literal at the very start is found too.
        before = r"\W" if word_start else ""
        return cls(re.compile(before + trie), re.compile(before + "(?=(" + trie + "))"))


@dataclass(frozen=True)
class Anchors:
    """Which of some patterns can match a text: each pattern's literals are reduced to a minimal set (a literal
    containing another kept one is found through it) and searched in one pass; those known to start a word
    only where a word starts (most positions of a text are inside words)."""

    patterns: tuple[re.Pattern[str], ...]
    searches: tuple[Search, ...]
    """One for the literals searched at word starts, one for those searched everywhere (when there are any)."""
    owners: dict[str, frozenset[int]]
    """A kept literal → indexes of the patterns that cannot match unless it occurs."""

    def possible(self, haystack: str) -> tuple[re.Pattern[str], ...]:
        """The patterns that may match somewhere in the text `haystack` was folded from."""
        if not any(search.first.search(haystack) for search in self.searches):
            return ()
        found = {match.group(1) for search in self.searches for match in search.every.finditer(haystack)}
        indexes = set().union(*(self.owners[literal] for literal in found))
        return tuple(self.patterns[index] for index in sorted(indexes))


def anchors(patterns: Sequence[re.Pattern[str]], literals: Sequence[Literals]) -> Anchors:
    """Anchors for `patterns`, each needing one of its `literals`."""
    kept: dict[bool, list[str]] = {False: [], True: []}  # word_start → kept literals, shortest first
    wanted = {(text, found.word_start) for found in literals for text in found.strings}
    for text, word_start in sorted(wanted, key=lambda pair: (len(pair[0]), pair)):
        if not _reductions(text, word_start, kept):
            kept[word_start].append(text)
    owners: dict[str, set[int]] = {text: set() for group in kept.values() for text in group}
    for index, found in enumerate(literals):
        for text in found.strings:
            for literal in _reductions(text, found.word_start, kept):
                owners[literal].add(index)
    searches = tuple(search for search in (Search.of(kept[True], True), Search.of(kept[False], False)) if search)
    return Anchors(tuple(patterns), searches, {literal: frozenset(indexes) for literal, indexes in owners.items()})


def _reductions(text: str, word_start: bool, kept: dict[bool, list[str]]) -> list[str]:
    """The kept literals whose occurrence an occurrence of `text` guarantees to be found."""
    found = [other for other in kept[False] if other in text]
    if word_start:
        found += [other for other in kept[True] if inside(text, other, True)]
    return found
