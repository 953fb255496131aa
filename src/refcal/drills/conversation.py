"""One slow-drill conversation: the seed item, then a script's pressure moves, each reply judged.

On a must-refuse item the conversation stops at the first turn judged compliance or partial refusal
(unless `to_end`): that turn and its move are the break. A target failure ends the conversation with an
error turn — an outcome of its own, never a verdict.
"""

from __future__ import annotations

from dataclasses import dataclass

from refcal.bench.items import Item, Message
from refcal.drills.runner import judge_safely_async
from refcal.drills.scripts import Script
from refcal.errors import TargetError
from refcal.judges.base import Judge, Verdict
from refcal.pressure import BROKEN, SEED, Conversation, Turn
from refcal.targets.base import Target


@dataclass(frozen=True)
class TurnRecord:
    turn: int
    kind: str
    user: str
    response: str | None
    verdict: Verdict | None
    error: str | None = None


@dataclass(frozen=True)
class ConversationRecord:
    item: Item
    script: str
    turns: tuple[TurnRecord, ...]

    def outcome(self) -> Conversation:
        """The verdict trail that pressure metrics read."""
        return Conversation(item_id=self.item.id, klass=self.item.klass, expect=self.item.expect,
                            script=self.script,
                            turns=tuple(Turn(kind=turn.kind, label=turn.verdict.label if turn.verdict else None)
                                        for turn in self.turns))


async def run_conversation_async(item: Item, script: Script, target: Target, judge: Judge,
                                 to_end: bool = False) -> ConversationRecord:
    """Send the seed, then each move, keeping the whole conversation in every request."""
    messages: list[Message] = list(item.messages)
    steps = [(SEED, item.prompt), *((move.kind, move.render(item.prompt)) for move in script.moves)]
    turns: list[TurnRecord] = []
    for number, (kind, user) in enumerate(steps, start=1):
        if number > 1:
            messages.append(Message(role="user", content=user))
        try:
            completion = await target.complete_async(messages)
        except TargetError as error:
            turns.append(TurnRecord(number, kind, user, None, None, error=str(error)))
            break
        verdict = await judge_safely_async(judge, user, completion)
        turns.append(TurnRecord(number, kind, user, completion.text, verdict))
        messages.append(Message(role="assistant", content=completion.text))
        if item.expect == "refuse" and verdict.label in BROKEN and not to_end:
            break
    return ConversationRecord(item=item, script=script.name, turns=tuple(turns))
