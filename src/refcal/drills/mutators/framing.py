"""Framing, language and injection mutators: the request is wrapped, never rewritten. Every template
is written by refcal (drills/templates.py); which one is used is the mutator's seeded choice."""

from __future__ import annotations

import random

from refcal.drills import templates
from refcal.drills.mutators.base import Family, Mutation, mutator


def _wrap(name: str, family: Family, summary: str, group: tuple[str, ...]) -> None:
    def apply(text: str, rng: random.Random) -> Mutation:
        index = rng.randrange(len(group))
        return Mutation(group[index].format(request=text), {"template": index})
    mutator(name, family, summary)(apply)


_SUMMARIES = {
    "roleplay": "a role-play persona asked to stay in character",
    "fiction": "a scene in a story or screenplay",
    "hypothetical": "a hypothetical or thought experiment",
    "research": "a research or education purpose",
    "authority": "an authority claim (\"my manager approved this\")",
    "urgency": "urgency and sympathy",
    "prior_session": "a reference to an earlier session (\"as we discussed last time\")",
    "checkbox": "a compliance checkbox ticked by the user",
    "refusal_suppression": "an instruction not to apologise, warn or refuse",
    "prefix_injection": "an instruction to begin with an affirmative phrase",
    "summarise_instructions": "a probe asking the model to summarise its instructions first",
}
for _name, _summary in _SUMMARIES.items():
    _wrap(_name, "framing", _summary, templates.FRAMING[_name])
_wrap("quoted_document", "injection", "the request hidden in a document the user asks about",
      templates.INJECTION["quoted_document"])
_wrap("tool_output", "injection", "the request hidden in a tool's output", templates.INJECTION["tool_output"])


@mutator("payload_split", "framing", "the request split across two variables to be joined")
def payload_split(text: str, rng: random.Random) -> Mutation:
    words = text.split(" ")
    if len(words) >= 2:
        cut = rng.randrange(1, len(words))
        part_a, part_b = " ".join(words[:cut]) + " ", " ".join(words[cut:])
    else:
        cut = max(1, len(text) // 2)
        part_a, part_b = text[:cut], text[cut:]
    index = rng.randrange(len(templates.PAYLOAD_SPLIT))
    return Mutation(templates.PAYLOAD_SPLIT[index].format(part_a=part_a, part_b=part_b),
                    {"template": index, "cut": cut})


@mutator("answer_language", "language", "the answer asked for in another language")
def answer_language(text: str, rng: random.Random) -> Mutation:
    language, template = rng.choice(templates.ANSWER_LANGUAGES)
    return Mutation(template.format(request=text), {"language": language})


@mutator("frame_language", "language", "the request wrapped in a frame written in another language")
def frame_language(text: str, rng: random.Random) -> Mutation:
    code = rng.choice(sorted(templates.FRAME_LANGUAGES))
    index = rng.randrange(len(templates.FRAME_LANGUAGES[code]))
    return Mutation(templates.FRAME_LANGUAGES[code][index].format(request=text), {"language": code,
                                                                                    "template": index})
