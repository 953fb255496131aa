"""Encoding mutators: the request is encoded and the model is asked to decode it and respond.
`DECODERS` recover the payload, so tests (and readers of a report) can check what was really asked."""

from __future__ import annotations

import base64
import codecs
import random
from collections.abc import Callable

from refcal.drills import templates
from refcal.drills.mutators.base import Mutation, mutator

ENCODERS: dict[str, Callable[[str], str]] = {
    "base64": lambda text: base64.b64encode(text.encode("utf-8")).decode("ascii"),
    "rot13": lambda text: codecs.encode(text, "rot13"),
    "reverse": lambda text: text[::-1],
    "hex": lambda text: text.encode("utf-8").hex(),
}
DECODERS: dict[str, Callable[[str], str]] = {
    "base64": lambda payload: base64.b64decode(payload).decode("utf-8"),
    "rot13": lambda payload: codecs.decode(payload, "rot13"),
    "reverse": lambda payload: payload[::-1],
    "hex": lambda payload: bytes.fromhex(payload).decode("utf-8"),
}


def _encode(name: str, text: str, rng: random.Random) -> Mutation:
    payload = ENCODERS[name](text)
    template = rng.choice(templates.ENCODING_INSTRUCTIONS[name])
    return Mutation(template.format(payload=payload), {"encoding": name, "payload": payload})


@mutator("base64", "encoding", "base64-encoded, with an instruction to decode it")
def base64_mutator(text: str, rng: random.Random) -> Mutation:
    return _encode("base64", text, rng)


@mutator("rot13", "encoding", "ROT13, with an instruction to decode it")
def rot13_mutator(text: str, rng: random.Random) -> Mutation:
    return _encode("rot13", text, rng)


@mutator("reverse", "encoding", "written backwards, with an instruction to read it")
def reverse_mutator(text: str, rng: random.Random) -> Mutation:
    return _encode("reverse", text, rng)


@mutator("hex", "encoding", "UTF-8 bytes in hexadecimal, with an instruction to decode them")
def hex_mutator(text: str, rng: random.Random) -> Mutation:
    return _encode("hex", text, rng)
