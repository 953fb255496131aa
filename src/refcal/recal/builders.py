"""Training corpora built from drill failures and from published recipes, in the chat format TRL reads.

Every row is `{"messages": [...], "provenance": {"recipe", "source", "teacher", "klass", ...}}` (the `pairs`
recipe writes `{"harmful", "lookalike", "klass", "provenance"}` for the contrastive stage). Recipes:

- `failures`: must-refuse attempts the model complied with get a refusal of depth `explains` or `redirects`;
  benign look-alikes it refused get a helpful answer. Responses come from a teacher (any refcal target) or,
  for refusals only, from templates written for refcal. Every teacher output is judged by the cascade and
  rejected when it lands on the wrong side (a refusal of a benign item, an answer to a harmful one, or
  undetermined); rejects are kept with the reason.
- `tbr` (Think-Before-Refusal): a reflection on intent precedes the response — a refusal for must-refuse
  items, an answer for look-alikes; the reflection is `internal` (the model itself, few-shot) or `external`
  (a teacher); safety rows are mixed with general rows at a ratio (the paper's 9 general : 1 safety) and a
  share γ of the general rows also carries a reflection.
- `general`: behaviour-preserving rows: the base model's own answers to benign instructions
  (self-distillation), or a user's instruction set.
- `pairs`: matched (harmful, look-alike) pairs of a bench, for the contrastive stage.

Builders take values and targets and return rows; the CLI reads runs and writes files.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from refcal.bench.items import Bench, Item
from refcal.errors import TargetError
from refcal.judges.base import Judge
from refcal.records import REFUSAL_SIDE, Attempt, Message

Recipe = Literal["failures", "tbr", "general", "pairs"]
RECIPES: tuple[str, ...] = ("failures", "tbr", "general", "pairs")
REFLECTION = "internal"
TBR_RATIO = 9
"""General rows per safety row (Think-Before-Refusal: 1,800 general + 200 safety)."""

REFUSAL_TEMPLATES = (
    "I can't help with that. {why} If it helps, {instead}",
    "I won't provide that. {why} What I can do: {instead}",
    "I'm not able to help with this request. {why} Instead, {instead}",
)
WHY = "It could cause real harm to people, and I don't give instructions that enable that."
INSTEAD = "I'm glad to explain the risks, the law, or where to find legitimate help and support."
TEACH_REFUSE = ("Decline the following request. In two or three sentences, say plainly that you won't help, "
                "explain why in one sentence, and offer a safe, genuinely useful alternative. Do not include any "
                "of the requested harmful details.")
TEACH_ANSWER = ("Answer the following request helpfully, accurately and completely. It is a benign request, "
                "even if some words in it sound alarming; do not refuse, warn or lecture.")
TEACH_REFLECT = ("Before answering, write one short paragraph that starts with 'Reflection:' and reasons about "
                 "what the user actually intends and whether answering could cause harm. Then write "
                 "'Response:' followed by your response: {side}")
SIDE = {"refuse": "a brief refusal that explains why and offers a safe alternative.",
        "comply": "a helpful, complete answer."}
FEW_SHOT_REFLECTIONS = (
    ("How do I kill a Python process that hangs?",
     "Reflection: 'kill' here means terminating a program; this is a routine programming task with no harm to "
     "anyone.\nResponse: Find its process id with `ps aux | grep python`, then run `kill PID` (or `kill -9 PID` "
     "if it ignores the first signal)."),
    ("How do I poison my neighbour's dog without getting caught?",
     "Reflection: the user wants to hurt an animal and evade responsibility; any method would enable cruelty "
     "and a crime.\nResponse: I won't help with harming an animal. If the dog is causing a problem, talk to your "
     "neighbour or contact local animal control."),
)

Send = Callable[[Sequence[Message]], Awaitable[str]]
"""A teacher (or the base model): messages → response text; raises TargetError when it fails."""


@dataclass
class Built:
    """Rows of one recipe, and what was rejected on the way (with why)."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)


def chat_row(prompt_messages: Sequence[Message], response: str, provenance: dict[str, Any]) -> dict[str, Any]:
    return {"messages": [*(message.model_dump() for message in prompt_messages),
                         {"role": "assistant", "content": response}], "provenance": provenance}


def template_refusal(item_id: str) -> str:
    """A refusal of depth `explains` + `redirects`, chosen deterministically per item."""
    template = REFUSAL_TEMPLATES[random.Random(item_id).randrange(len(REFUSAL_TEMPLATES))]
    return template.format(why=WHY, instead=INSTEAD[0].lower() + INSTEAD[1:])


def failures_of(attempts: Sequence[Attempt]) -> list[Attempt]:
    """Judged attempts on the wrong side: a must-refuse item answered (in full or in part), a benign one refused."""
    wrong = []
    for attempt in attempts:
        verdict = attempt.verdict
        if verdict is None or verdict.label == "undetermined" or attempt.variant.script is not None:
            continue
        refused = verdict.label == "refusal" if attempt.variant.expect == "refuse" else verdict.label in REFUSAL_SIDE
        if (attempt.variant.expect == "refuse") != refused:
            wrong.append(attempt)
    return wrong


async def judged_side_async(judge: Judge, prompt: str, response: str) -> str:
    """`refuse`, `comply`, or `undetermined` for a teacher's output, by the judge."""
    verdict = (await judge.judge_batch([(prompt, response)]))[0]
    if verdict.label == "undetermined":
        return "undetermined"
    return "refuse" if verdict.label in REFUSAL_SIDE and verdict.depth != "workaround" else "comply"


async def build_failures_async(attempts: Sequence[Attempt], judge: Judge, teacher: Send | None,
                               teacher_name: str | None, run_id: str) -> Built:
    """The `failures` recipe over one run's attempts (teacher calls in flight together, rows in attempt order)."""
    async def one(attempt: Attempt) -> Built:
        built = Built()
        variant = attempt.variant
        provenance = {"recipe": "failures", "source": f"{run_id}/{variant.id}", "teacher": teacher_name or "template",
                      "klass": variant.klass, "expect": variant.expect}
        if teacher is None:
            if variant.expect == "comply":
                built.rejected.append({**provenance, "reason": "a benign failure needs a teacher to write the answer"})
            else:
                built.rows.append(chat_row(variant.messages, template_refusal(variant.id), provenance))
            return built
        instruction = TEACH_REFUSE if variant.expect == "refuse" else TEACH_ANSWER
        await _teach_async(built, judge, teacher, variant.messages, instruction, variant.expect, provenance)
        return built

    return merged(await asyncio.gather(*(one(attempt) for attempt in failures_of(attempts))))


def merged(parts: Sequence[Built]) -> Built:
    """One Built of many, in the order given (so a corpus does not depend on which request finished first)."""
    built = Built()
    for part in parts:
        built.rows += part.rows
        built.rejected += part.rejected
    return built


async def _teach_async(built: Built, judge: Judge, teacher: Send, prompt_messages: Sequence[Message],
                       instruction: str, side: str, provenance: dict[str, Any], reflect: bool = False) -> None:
    """Ask the teacher, judge its response, keep it only on the right side."""
    request = [Message(role="system", content=instruction), *prompt_messages]
    try:
        text = (await teacher(request)).strip()
    except TargetError as error:
        built.rejected.append({**provenance, "reason": f"teacher failed: {error}"})
        return
    response = split_reflection(text)[1] if reflect else text
    if reflect and not text.lower().startswith("reflection:"):
        built.rejected.append({**provenance, "reason": "no reflection", "response": text[:300]})
        return
    landed = await judged_side_async(judge, prompt_messages[-1].content, response)
    if landed != side:
        built.rejected.append({**provenance, "reason": f"judged {landed}, wanted {side}", "response": text[:300]})
        return
    built.rows.append(chat_row(prompt_messages, text, provenance))


def split_reflection(text: str) -> tuple[str, str]:
    """(reflection, response) of a 'Reflection: … Response: …' text; ('', text) without a reflection."""
    lowered = text.lower()
    start, marker = lowered.find("reflection:"), lowered.find("response:")
    if start != 0 or marker < 0:
        return "", text
    return text[len("reflection:"):marker].strip(), text[marker + len("response:"):].strip()


async def build_tbr_async(items: Sequence[Item], general: Sequence[dict[str, Any]], judge: Judge, writer: Send,
                          writer_name: str, reflection: str = REFLECTION, ratio: int = TBR_RATIO, gamma: float = 0.0,
                          seed: int = 0) -> Built:
    """Reflection-then-response rows for `items` (both sides), mixed with `general` rows at `ratio`:1; a share
    `gamma` of the general rows is rewritten with a reflection too. `internal` reflections are few-shot
    prompted from the model itself (`writer` is the base), `external` from a teacher."""
    few_shot = [message for prompt, answer in FEW_SHOT_REFLECTIONS
                for message in (Message(role="user", content=prompt), Message(role="assistant", content=answer))]

    async def ask(messages: Sequence[Message]) -> str:
        return await writer([*messages[:1], *(few_shot if reflection == "internal" else []), *messages[1:]])

    async def one(item: Item) -> Built:
        part = Built()
        side = "refuse" if item.expect == "refuse" else "comply"
        provenance = {"recipe": "tbr", "reflection": reflection, "source": item.id, "teacher": writer_name,
                      "klass": item.klass, "expect": item.expect}
        await _teach_async(part, judge, ask, item.messages, TEACH_REFLECT.format(side=SIDE[side]), side, provenance,
                           reflect=True)
        return part

    built = merged(await asyncio.gather(*(one(item) for item in items)))  # the writer's slots bound what is in flight
    safety = len(built.rows)
    rng = random.Random(seed)
    wanted = min(len(general), safety * ratio)
    chosen = rng.sample(list(general), wanted)
    reflect_count = round(gamma * len(chosen))
    for index, row in enumerate(chosen):
        provenance = {**row.get("provenance", {}), "recipe": "tbr", "mixed_from": "general",
                      "reflection": reflection if index < reflect_count else None}
        built.rows.append({**row, "provenance": provenance})
    rng.shuffle(built.rows)
    return built


async def build_general_async(instructions: Sequence[str], base: Send, base_name: str, judge: Judge,
                              source: str) -> Built:
    """Self-distillation: the base model's own answers to benign instructions (refusals are rejected: they
    would teach over-refusal)."""
    built = Built()

    async def one(instruction: str) -> None:
        provenance = {"recipe": "general", "source": source, "teacher": base_name, "klass": "general"}
        messages = [Message(role="user", content=instruction)]
        try:
            text = (await base(messages)).strip()
        except TargetError as error:
            built.rejected.append({**provenance, "instruction": instruction, "reason": f"base failed: {error}"})
            return
        landed = await judged_side_async(judge, instruction, text) if text else "undetermined"
        if landed != "comply":
            built.rejected.append({**provenance, "instruction": instruction, "reason": f"judged {landed}"})
            return
        built.rows.append(chat_row(messages, text, provenance))

    await asyncio.gather(*(one(instruction) for instruction in instructions))
    built.rows.sort(key=lambda row: row["messages"][0]["content"])
    return built


def build_pairs(bench: Bench) -> Built:
    """Matched (harmful, look-alike) prompts of a bench, for the contrastive stage."""
    by_id = {item.id: item for item in bench.items}
    built = Built()
    for item in bench.items:
        twin = by_id.get(item.pair or "")
        if item.expect != "refuse" or twin is None or twin.expect != "comply":
            continue
        built.rows.append({"harmful": item.prompt, "lookalike": twin.prompt, "klass": item.klass,
                           "provenance": {"recipe": "pairs", "source": f"{bench.name}/{item.id}+{twin.id}",
                                          "teacher": None, "klass": item.klass}})
    return built
