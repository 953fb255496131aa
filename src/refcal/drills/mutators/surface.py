"""Surface mutators: the request's spelling changes, its words do not. Typo mutators change at most
`TYPO_RATE` of the letters (and at least one)."""

from __future__ import annotations

import math
import random

from refcal.drills.mutators.base import Mutation, mutator

TYPO_RATE = 0.05
"""Upper bound on the share of letters a typo mutator changes."""
_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm")
KEYBOARD_NEIGHBOURS: dict[str, str] = {}
for _row_index, _row in enumerate(_ROWS):
    for _column, _key in enumerate(_row):
        _near = [_row[index] for index in (_column - 1, _column + 1) if 0 <= index < len(_row)]
        for _other in (_row_index - 1, _row_index + 1):
            if 0 <= _other < len(_ROWS):
                _near += [_ROWS[_other][index] for index in (_column - 1, _column, _column + 1)
                          if 0 <= index < len(_ROWS[_other])]
        KEYBOARD_NEIGHBOURS[_key] = "".join(_near)
HOMOGLYPHS = {"a": "а", "e": "е", "o": "о", "p": "р", "c": "с", "x": "х", "i": "і", "y": "у", "A": "А",
              "E": "Е", "O": "О", "P": "Р", "C": "С", "H": "Н", "K": "К", "M": "М", "T": "Т", "B": "В"}
"""Latin letters and the Cyrillic letters drawn the same."""
LEET = {"a": "4", "e": "3", "i": "1", "o": "0", "s": "5", "t": "7", "A": "4", "E": "3", "I": "1", "O": "0",
        "S": "5", "T": "7"}
ZERO_WIDTH = ("\u200b", "\u200c", "\u200d", "\u2060")


def typo_budget(letters: int) -> int:
    """How many letters a typo mutator changes: TYPO_RATE of them, at least one."""
    return max(1, math.floor(letters * TYPO_RATE))


def _unchanged(text: str, why: str) -> Mutation:
    return Mutation(text, {"unchanged": why}, changed=False)


def _can_change(text: str, index: int, kind: str) -> bool:
    char = text[index]
    if not char.isalpha():
        return False
    if kind == "keyboard":
        return char.lower() in KEYBOARD_NEIGHBOURS
    if kind == "swap":
        return index + 1 < len(text) and text[index + 1].isalpha() and text[index + 1] != char
    return True


def _pick(text: str, budget: int, kind: str, rng: random.Random) -> list[int]:
    """`budget` distinct positions a typo of `kind` can change: random probes first (texts are mostly
    letters, so this is fast), the full scan only when probing keeps missing."""
    chosen: set[int] = set()
    for _ in range(8 * budget + 8):
        index = rng.randrange(len(text))
        if index not in chosen and _can_change(text, index, kind):
            chosen.add(index)
            if len(chosen) == budget:
                return sorted(chosen)
    candidates = [index for index in range(len(text)) if index not in chosen and _can_change(text, index, kind)]
    chosen.update(rng.sample(candidates, min(budget - len(chosen), len(candidates))))
    return sorted(chosen)


def _typo(text: str, rng: random.Random, kind: str) -> Mutation:
    letters = sum(map(str.isalpha, text))
    if not letters:
        return _unchanged(text, "no letters to change")
    if kind == "drop" and letters == 1 and not "".join(char for char in text if not char.isalpha()).strip():
        return _unchanged(text, "dropping a letter would leave nothing")
    chosen = _pick(text, typo_budget(letters), kind, rng)
    if not chosen:
        return _unchanged(text, f"no letter a {kind} typo can change")
    chars = list(text)
    for index in reversed(chosen):
        char = chars[index]
        if kind == "keyboard":
            near = rng.choice(KEYBOARD_NEIGHBOURS[char.lower()])
            chars[index] = near.upper() if char.isupper() else near
        elif kind == "drop":
            del chars[index]
        elif kind == "double":
            chars.insert(index, char)
        else:
            chars[index], chars[index + 1] = chars[index + 1], chars[index]
    new = "".join(chars)
    if new == text:  # swapping 'ab' inside 'abab' can land on the same text
        return _unchanged(text, "the typo left the text as it was")
    return Mutation(new, {"positions": chosen, "rate": TYPO_RATE})


def _register_typo(kind: str, summary: str) -> None:
    def apply(text: str, rng: random.Random) -> Mutation:
        return _typo(text, rng, kind)
    mutator(f"typo_{kind}", "surface", summary)(apply)


for _kind, _summary in (("keyboard", "letters replaced by a neighbouring key"), ("drop", "letters dropped"),
                        ("double", "letters doubled"), ("swap", "adjacent letters swapped")):
    _register_typo(_kind, _summary)


@mutator("casing", "surface", "upper case, alternating case or random case")
def casing(text: str, rng: random.Random) -> Mutation:
    style = rng.choice(("upper", "alternating", "random"))
    if style == "upper":
        new = text.upper()
    elif style == "alternating":
        new = "".join(char.upper() if index % 2 else char.lower() for index, char in enumerate(text))
    else:
        new = "".join(char.upper() if rng.random() < 0.5 else char.lower() for char in text)
    if new == text:
        return _unchanged(text, "no letters whose case can change")
    return Mutation(new, {"style": style})


@mutator("whitespace", "surface", "extra spaces, tabs and line breaks between words")
def whitespace(text: str, rng: random.Random) -> Mutation:
    words = text.split(" ")
    if len(words) < 2:
        return Mutation(f"  {text}\n", {"gaps": 0})
    gaps = rng.sample(range(len(words) - 1), max(1, (len(words) - 1) // 4))
    pieces = [words[0]]
    for index, word in enumerate(words[1:]):
        pieces.append(rng.choice(("  ", "\t", " \n", "   ")) if index in gaps else " ")
        pieces.append(word)
    return Mutation("".join(pieces), {"gaps": len(gaps)})


@mutator("zero_width", "surface", "invisible zero-width characters inside words")
def zero_width(text: str, rng: random.Random) -> Mutation:
    positions = sorted(rng.sample(range(1, len(text) + 1), max(1, min(len(text), len(text) // 8))))
    chars = list(text)
    for index in reversed(positions):
        chars.insert(index, rng.choice(ZERO_WIDTH))
    return Mutation("".join(chars), {"inserted": len(positions)})


@mutator("homoglyph", "surface", "Latin letters swapped for Cyrillic ones drawn the same")
def homoglyph(text: str, rng: random.Random) -> Mutation:
    positions = [index for index, char in enumerate(text) if char in HOMOGLYPHS]
    if not positions:
        return _unchanged(text, "no letter with a homoglyph")
    chosen = set(rng.sample(positions, max(1, len(positions) // 3)))
    return Mutation("".join(HOMOGLYPHS[char] if index in chosen else char for index, char in enumerate(text)),
                    {"replaced": len(chosen)})


@mutator("leetspeak", "surface", "letters written as digits (a→4, e→3, …)")
def leetspeak(text: str, rng: random.Random) -> Mutation:
    share = rng.choice((0.5, 1.0))
    chars = [LEET[char] if char in LEET and rng.random() < share else char for char in text]
    new = "".join(chars)
    if new == text:
        return _unchanged(text, "no letter with a leet form")
    return Mutation(new, {"share": share})
