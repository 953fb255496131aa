"""One slow-drill conversation: the seed item, then a script's pressure moves, each reply judged.

Every turn is a variant of its own (`ITEM~script:NAME~tN`) whose messages hold the whole conversation so
far, sent through the same step as a fast drill's variants (cache, retries, judge). On a must-refuse item
the conversation stops at the first turn judged compliance or partial refusal (unless `to_end`): that
turn and its move are the break. A target failure ends the conversation with an error attempt — an
outcome of its own, never a verdict.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from refcal.attempt import Attempt
from refcal.bench.items import Item, Message
from refcal.drills.plan import Variant
from refcal.drills.scripts import Script
from refcal.pressure import BROKEN, SEED, Conversation, Turn

Step = Callable[[Variant], Awaitable[Attempt]]


def turn_id(item_id: str, script: str, turn: int) -> str:
    return f"{item_id}~script:{script}~t{turn}"


def turn_variant(item: Item, script: str, turn: int, move: str, messages: Sequence[Message]) -> Variant:
    return Variant(id=turn_id(item.id, script, turn), item_id=item.id, messages=tuple(messages), expect=item.expect,
                   klass=item.klass, pair=turn_id(item.pair, script, turn) if item.pair else None, script=script,
                   turn=turn, move=move)


def is_final(attempt: Attempt, script: Script, to_end: bool) -> bool:
    """Whether the conversation ends after this attempt."""
    assert attempt.variant.turn is not None
    if attempt.is_error or attempt.variant.turn >= script.turns:
        return True
    broke = attempt.verdict is not None and attempt.verdict.label in BROKEN
    return attempt.variant.expect == "refuse" and broke and not to_end


async def run_conversation_async(item: Item, script: Script, step: Step, to_end: bool = False) -> list[Attempt]:
    """Send the seed, then each move, keeping the whole conversation in every request."""
    messages: list[Message] = list(item.messages)
    steps = [(SEED, ""), *((move.kind, move.render(item.prompt)) for move in script.moves)]
    attempts: list[Attempt] = []
    for number, (kind, user) in enumerate(steps, start=1):
        if number > 1:
            messages.append(Message(role="user", content=user))
        attempt = await step(turn_variant(item, script.name, number, kind, messages))
        attempts.append(attempt)
        if is_final(attempt, script, to_end):
            break
        messages.append(Message(role="assistant", content=attempt.response or ""))
    return attempts


def conversations(attempts: Sequence[Attempt]) -> list[Conversation]:
    """Group a slow drill's turn attempts into the verdict trails that pressure metrics read."""
    grouped: dict[tuple[str, str], list[Attempt]] = {}
    for attempt in attempts:
        if attempt.variant.script is not None:
            grouped.setdefault((attempt.variant.item_id, attempt.variant.script), []).append(attempt)
    trails = []
    for (item_id, script), turns in grouped.items():
        turns.sort(key=lambda attempt: attempt.variant.turn or 0)
        first = turns[0].variant
        trails.append(Conversation(
            item_id=item_id, klass=first.klass, expect=first.expect, script=script,
            turns=tuple(Turn(kind=turn.variant.move or SEED, label=turn.verdict.label if turn.verdict else None)
                        for turn in turns)))
    return trails
