"""A trial session of a direction search: the loaded base, its directions and the prompt sets every trial shares,
and the evaluation of one edit (KL on harmless instructions, then judged greedy replies to the held-out items)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from refcal.judges.base import judge_rows
from refcal.metrics.rates import Rate, wilson
from refcal.recal.direction.apply import ablated, steering_plan
from refcal.recal.direction.base import load_base
from refcal.recal.direction.edits import Ablation, Steering
from refcal.recal.direction.harmless import HARMLESS_INSTRUCTIONS
from refcal.recal.direction.reading import (
    Directions,
    extract_directions,
    generate,
    kl_divergence,
    next_token_logprobs,
    save_directions,
)
from refcal.recal.direction.settings import Progress, SearchSettings
from refcal.recal.direction.trials import Evaluation
from refcal.records import REFUSAL_SIDE
from refcal.targets.steering import SteeringHooks

if TYPE_CHECKING:
    from refcal.judges.cascade import CascadeJudge
    from refcal.recal.direction.prepare import DirectionJob


@dataclass
class Session:
    """The loaded base, its directions and the prompt sets, shared by every trial."""

    model: Any
    tokenizer: Any
    directions: Directions
    judge: CascadeJudge
    refuse: list[tuple[str, list[dict[str, str]]]]
    """(prompt as judged, chat) of held-out must-refuse items."""
    comply: list[tuple[str, list[dict[str, str]]]]
    kl_chats: list[list[dict[str, str]]]
    base_logprobs: Any
    settings: SearchSettings


def open_session(job: DirectionJob, tell: Progress, timings: dict[str, float]) -> Session:
    """Load the base, extract the directions from the extraction part (saved to `directions.safetensors`) and
    measure the base's first-token distributions on the KL instructions."""
    tell("load", 0, 1, job.base.spec)
    clock = time.perf_counter()
    model, tokenizer = load_base(job.base)
    timings["load"] = round(time.perf_counter() - clock, 2)
    tell("load", 1, 1, job.base.spec)
    by_id = {item.id: item for item in job.bench.items}

    def chats(part: list[str], expect: str) -> list[tuple[str, list[dict[str, str]]]]:
        return [(by_id[item_id].prompt, [message.model_dump() for message in by_id[item_id].messages])
                for item_id in part if by_id[item_id].expect == expect]

    count = job.settings.harmless_prompts
    harmless = [[{"role": "user", "content": text}] for text in HARMLESS_INSTRUCTIONS[:2 * count]]
    tell("directions", 0, 1, f"{len(job.plan.split.extraction)} items, {count} harmless instructions")
    clock = time.perf_counter()
    directions = extract_directions(model, tokenizer, [chat for _, chat in chats(job.plan.split.extraction, "refuse")],
                                    harmless[:count], [chat for _, chat in chats(job.plan.split.extraction, "comply")],
                                    job.settings.batch_size)
    save_directions(directions, job.out / "directions.safetensors")
    base_logprobs = next_token_logprobs(model, tokenizer, harmless[count:], job.settings.batch_size)
    timings["directions"] = round(time.perf_counter() - clock, 2)
    tell("directions", 1, 1, f"{directions.layers} layers")
    return Session(model=model, tokenizer=tokenizer, directions=directions, judge=job.judge,
                   refuse=chats(job.plan.split.evaluation, "refuse"), comply=chats(job.plan.split.evaluation, "comply"),
                   kl_chats=harmless[count:], base_logprobs=base_logprobs, settings=job.settings)


@contextlib.contextmanager
def applied(session: Session, edit: Ablation | Steering | None) -> Iterator[None]:
    """The base with `edit` for the block, unedited after."""
    if edit is None:
        yield
    elif isinstance(edit, Ablation):
        with ablated(session.model, session.directions, edit):
            yield
    else:
        with SteeringHooks(session.model, steering_plan(session.directions, edit)):
            yield


def evaluate(session: Session, edit: Ablation | Steering | None) -> Evaluation:
    """KL on the harmless set, then greedy replies to the held-out items judged by the cascade."""
    started = time.perf_counter()
    settings = session.settings
    chats = [chat for _, chat in session.refuse + session.comply]
    with applied(session, edit):
        kl = kl_divergence(session.base_logprobs, next_token_logprobs(session.model, session.tokenizer,
                                                                      session.kl_chats, settings.batch_size))
        replies = generate(session.model, session.tokenizer, chats, settings.max_new_tokens, settings.batch_size)
    prompts = [prompt for prompt, _ in session.refuse + session.comply]
    verdicts = judge_rows(session.judge, list(zip(prompts, replies, strict=True)))
    refuse_labels = [verdict.label for verdict in verdicts[:len(session.refuse)]]
    comply_labels = [verdict.label for verdict in verdicts[len(session.refuse):]]
    return Evaluation(refusal=_refusal_rate(refuse_labels), false_refusal=_refusal_rate(comply_labels),
                      undetermined=sum(label == "undetermined" for label in refuse_labels + comply_labels),
                      kl=round(kl, 6), seconds=round(time.perf_counter() - started, 2))


def _refusal_rate(labels: Sequence[str]) -> Rate:
    judged = [label for label in labels if label != "undetermined"]
    return wilson(sum(label in REFUSAL_SIDE for label in judged), len(judged))
