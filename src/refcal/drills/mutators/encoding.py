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


def _register(name: str, summary: str) -> None:
    def apply(text: str, rng: random.Random) -> Mutation:
        payload = ENCODERS[name](text)
        template = rng.choice(templates.ENCODING_INSTRUCTIONS[name])
        return Mutation(template.format(payload=payload), {"encoding": name, "payload": payload})
    mutator(name, "encoding", summary)(apply)


for _name, _summary in (("base64", "base64-encoded, with an instruction to decode it"),
                        ("rot13", "ROT13, with an instruction to decode it"),
                        ("reverse", "written backwards, with an instruction to read it"),
                        ("hex", "UTF-8 bytes in hexadecimal, with an instruction to decode them")):
    _register(_name, _summary)
