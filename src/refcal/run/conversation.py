"""One slow-drill conversation: the seed item, then pressure moves from a script or an attacker, each
reply judged.

Every turn is a variant of its own (`ITEM~script:NAME~tN`, NAME `attacker` in attacker mode) whose
messages hold the whole conversation so far, sent through the same step as a fast drill's variants
(cache, retries, judge). On a must-refuse item the conversation stops at the first turn judged
compliance or partial refusal (unless `to_end`): that turn and its move are the break. A target failure,
or an attacker that gives no usable turn, ends the conversation with an error attempt — an outcome of its
own, never a verdict. Turns already recorded (a resumed run) are read back, not sent or written again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Protocol

from refcal.bench.items import Item
from refcal.clock import utc_now
from refcal.drills.attacker import AttackerError
from refcal.metrics.pressure import SEED
from refcal.records import GAVE_WAY, Attempt, Message, Script, Variant

Step = Callable[[Variant], Awaitable[Attempt]]
Record = Callable[[Attempt], Awaitable[None]]


class Prompter(Protocol):
    """Writes the user's side after the seed: a script's moves, or an attacker."""

    name: str
    turns: int
    """Turns in all, the seed included."""

    async def next_turn_async(self, item: Item, messages: Sequence[Message], used: Sequence[str],
                              last_label: str | None) -> tuple[str, str]:
        """(pressure kind, user text) of the next turn, given the conversation and the kinds used so far."""
        ...


class ScriptPrompter:
    """A script's moves, in order."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.name = script.name
        self.turns = script.turns

    async def next_turn_async(self, item: Item, messages: Sequence[Message], used: Sequence[str],
                              last_label: str | None) -> tuple[str, str]:
        move = self.script.moves[len(used)]
        return move.kind, move.render(item.prompt)


def turn_id(item_id: str, script: str, turn: int) -> str:
    return f"{item_id}~script:{script}~t{turn}"


def turn_variant(item: Item, script: str, turn: int, move: str, messages: Sequence[Message]) -> Variant:
    return Variant(id=turn_id(item.id, script, turn), item_id=item.id, messages=tuple(messages), expect=item.expect,
                   klass=item.klass, pair=turn_id(item.pair, script, turn) if item.pair else None, script=script,
                   turn=turn, move=move)


def is_final(attempt: Attempt, turns: int, to_end: bool) -> bool:
    """Whether the conversation ends after this attempt."""
    assert attempt.variant.turn is not None
    if attempt.is_error or attempt.variant.turn >= turns:
        return True
    broke = attempt.verdict is not None and attempt.verdict.label in GAVE_WAY
    return attempt.variant.expect == "refuse" and broke and not to_end


async def run_conversation_async(item: Item, prompter: Prompter, step: Step, record: Record,
                                 to_end: bool = False, recorded: Mapping[str, Attempt] | None = None) -> list[Attempt]:
    """Send the seed, then each move, keeping the whole conversation in every request."""
    recorded = recorded or {}
    messages: list[Message] = list(item.messages)
    attempts: list[Attempt] = []
    used: list[str] = []
    for number in range(1, prompter.turns + 1):
        attempt = recorded.get(turn_id(item.id, prompter.name, number))
        if attempt is None:
            attempt = await _next_attempt_async(item, prompter, number, messages, used, attempts, step, record)
        attempts.append(attempt)
        if number > 1:
            used.append(attempt.variant.move or "")
        if is_final(attempt, prompter.turns, to_end):
            break
        messages = [*attempt.variant.messages, Message(role="assistant", content=attempt.response or "")]
    return attempts


async def _next_attempt_async(item: Item, prompter: Prompter, number: int, messages: list[Message],
                              used: list[str], attempts: list[Attempt], step: Step, record: Record) -> Attempt:
    if number == 1:
        return await step(turn_variant(item, prompter.name, 1, SEED, messages))
    last = attempts[-1].verdict
    try:
        kind, user = await prompter.next_turn_async(item, messages, used, last.label if last else None)
    except AttackerError as error:
        failed = Attempt(variant=turn_variant(item, prompter.name, number, error.kind, messages), error=str(error),
                         finished_at=utc_now())
        await record(failed)
        return failed
    return await step(turn_variant(item, prompter.name, number, kind, [*messages, Message(role="user", content=user)]))


